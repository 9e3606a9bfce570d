"""`pktlab broker status --url` at a real broker's TLS port, and https:// at its plain
HTTP status page: one line saying what answered there, exit 1 (session 31, bstat31;
before: `Remote end closed connection without response`, and a 5 s handshake timeout)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_world import BrokerProcess, pythonpath_env
from tls_world import pktlab_init

from packetlab.ppks import PktlabHome


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    home = pktlab_init(tmp_path_factory.mktemp("bstat31_home"))
    b = BrokerProcess(home, tmp_path_factory.mktemp("bstat31_broker"))
    yield b
    b.stop()


def status(broker: BrokerProcess, conf: str, url: str, tmp_path: Path) -> tuple[int, str]:
    """`pktlab broker status --url URL` with a home whose broker.conf is `conf`."""
    (tmp_path / "broker.conf").write_text(conf)
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", "broker", "status", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env=pythonpath_env(PktlabHome.at(tmp_path)),
    )
    assert proc.stdout == ""
    return proc.returncode, proc.stderr


def naming(broker: BrokerProcess) -> str:
    """A broker.conf that names this broker's publish port and status page."""
    return (
        f"PublishListen tcp:{broker.pub_port}:interface=127.0.0.1\n"
        f"StatusListen tcp:{broker.status_port}:interface=127.0.0.1\n"
    )


def test_http_at_the_tls_port_names_the_status_page(broker: BrokerProcess, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{broker.pub_port}/"
    page = f"http://127.0.0.1:{broker.status_port}/"
    assert status(broker, naming(broker), url, tmp_path) == (
        1,
        f"pktlab broker status: {url}: a TLS port (PublishListen of the home's "
        f"broker.conf), not the status page; the status page is {page}\n",
    )
    # a home whose broker.conf does not name the port, nor a page
    url = f"http://127.0.0.1:{broker.sub_port}/"
    assert status(broker, "ErrorDelay 0\n", url, tmp_path) == (
        1,
        f"pktlab broker status: {url}: a TLS port, not the status page; StatusListen is "
        "not set in the home's broker.conf: the broker serves no page\n",
    )


def test_https_at_the_status_page_says_it_is_plain_http(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{broker.status_port}/"
    assert status(broker, "", url, tmp_path) == (
        1,
        f"pktlab broker status: {url}: a plain HTTP server answered the TLS hello (the "
        f"status page serves HTTP: http://127.0.0.1:{broker.status_port}/)\n",
    )


def test_https_at_the_tls_port_names_the_status_page(broker: BrokerProcess, tmp_path: Path) -> None:
    """Was `[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local
    issuer certificate (_ssl.c:1006) (is twistd pktbroker running ...?)` (session 32)."""
    url = f"https://127.0.0.1:{broker.pub_port}/"
    assert status(broker, naming(broker), url, tmp_path) == (
        1,
        f"pktlab broker status: {url}: a TLS port (PublishListen of the home's broker.conf), "
        f"not the status page; the status page is http://127.0.0.1:{broker.status_port}/\n",
    )
