"""Two `twistd pktbroker --store redis://...` processes sharing a real redis-server started
by the test: a publication at broker B reaches a subscriber of broker A within 1 s, ends
everywhere when its publisher goes, and the delivery record holds across brokers."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_world import BrokerProcess, Identity, RawClient, free_port
from conftest import stop_process
from tls_world import pktlab_init

from packetlab import wire
from packetlab.ppks import PktlabHome, key_id, raw_public_key

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed (apt redis-server)"
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/3"
    stop_process(proc)


@pytest.fixture
def home(tmp_path: Path) -> PktlabHome:
    return pktlab_init(tmp_path / "home")


@pytest.fixture
def brokers(home: PktlabHome, tmp_path: Path, redis_url: str) -> Iterator[list[BrokerProcess]]:
    out = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        out.append(BrokerProcess(home, tmp_path / name, "--store", redis_url))
    for b in out:
        b.wait_log("shared state in redis://")
    yield out
    for b in out:
        b.stop()


def publish(home: PktlabHome, broker: BrokerProcess, xdescr: bytes) -> RawClient:
    p = RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
    for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):
        p.send(wire.Xcert(home.certificate(name).der))
        assert p.recv() == wire.Result(0)
    eop = home.public_key("k_eop")
    p.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xdescr))
    assert p.recv() == wire.Result(0)
    return p


def test_publication_at_b_reaches_a_within_1s_and_ends_everywhere(
    home: PktlabHome, brokers: list[BrokerProcess], tmp_path: Path
) -> None:
    a, b = brokers
    ep = Identity(home, tmp_path, "ep")
    sub = ep.subscribe(a.sub_port)
    xd = b"controller_addr=127.0.0.1:20600;sni_key=cross;"
    t0 = time.monotonic()
    pub = publish(home, b, xd)
    assert sub.recv(timeout=1.0) == wire.Xnotify(ep.channel, xd)
    took = time.monotonic() - t0
    assert took < 1.0
    # the same endpoint reconnecting to the other broker is not sent it again
    sub.close()
    again = ep.subscribe(b.sub_port)
    assert again.quiet(0.5) == []
    again.close()
    # a late subscriber at A gets the live publication
    late = Identity(home, tmp_path, "late").subscribe(a.sub_port)
    assert late.recv(timeout=2.0) == wire.Xnotify(ep.channel, xd)
    late.close()
    # the publisher goes: it ends at A too
    mark = len(a.output())
    pub.close()
    a.wait_log("publisher gone at another broker", since=mark)
    after = Identity(home, tmp_path, "after").subscribe(a.sub_port)
    assert after.quiet(0.5) == []
    after.close()


def test_publications_of_a_killed_broker_expire(
    home: PktlabHome, brokers: list[BrokerProcess], tmp_path: Path
) -> None:
    a, b = brokers
    pub = publish(home, b, b"controller_addr=127.0.0.1:20601;sni_key=dead;")
    a.wait_log("from another broker")
    mark = len(a.output())
    assert b.proc is not None
    b.proc.kill()  # no goodbye: its keys expire
    b.proc.wait(5)
    a.wait_log("its broker stopped refreshing it", timeout=20, since=mark)
    pub.close()
