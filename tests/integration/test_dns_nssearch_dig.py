"""`pktlab run dns +nssearch` side by side with dig 9.18 against dns_nssearch_server.py
(three name servers, one of them closed): the same lines but for the query times, in
any order (dig asks the servers in parallel and prints each reply as it comes; we ask
them in the order of the NS records), the same exit status but for dig's 9 (ours 1)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child
from test_dns_dig import RUN, with_hosts

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dns_nssearch_server import HOSTS  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


@pytest.fixture(scope="module")
def nssearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The servers, and an /etc/hosts naming them (dig resolves NS names on its host)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (a mount namespace for dig's /etc/hosts)")
    hosts = tmp_path_factory.mktemp("nssearch") / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + HOSTS)
    with serve_child(str(HERE / "dns_nssearch_server.py")) as port:
        yield port, hosts


def lines_of(text: str) -> list[str]:
    return sorted(re.sub(r" in \d+ ms\.$", " in T ms.", line) for line in text.splitlines())


def test_nssearch_as_dig(nssearch: tuple[int, Path]) -> None:
    port, hosts = nssearch
    at = ["-p", str(port), "@127.0.0.21", "+time=1", "+tries=1"]
    for words in (["multi.test", "+nssearch"], ["+nssearch", "+nocookie", "multi.test"],
                  ["+nss", "+noall", "multi.test"], ["+nss", "+noall", "+ans", "multi.test"],
                  ["+nssearch", "+tcp", "multi.test"]):  # fmt: skip
        a, b = with_hosts(hosts, [*RUN, *at, *words]), with_hosts(hosts, ["dig", *at, *words])
        assert lines_of(a.stdout + a.stderr) == lines_of(b.stdout + b.stderr), words
        assert (a.returncode, b.returncode) in ((0, 0), (1, 9)), words
    a = with_hosts(hosts, [*RUN, *at, "+nssearch", "multi.test"])
    assert lines_of(a.stdout) == [
        f";; communications error to 127.0.0.23#{port}: connection refused",
        "SOA ns1.multi.test. h.multi.test. 10 1800 900 604800 60 from server 127.0.0.21 in T ms.",
        "SOA ns1.multi.test. h.multi.test. 11 1800 900 604800 60 from server 127.0.0.22 in T ms.",
    ]
    assert a.stderr == "" and a.returncode == 0


def test_nssearch_of_a_zone_of_one_server(nssearch: tuple[int, Path]) -> None:
    """dig 9.18.49 says `NS servers could not be reached` (exit 9) for a zone of one name
    server that answers (it decides when the query is sent, before the reply: a dig
    bug); ours prints the SOA, as for a zone of several."""
    port, hosts = nssearch
    at = ["-p", str(port), "@127.0.0.21", "+time=1", "+tries=1", "+nssearch", "one.test"]
    b = with_hosts(hosts, ["dig", *at])
    assert (b.returncode, b.stdout + b.stderr) == (9, ";; NS servers could not be reached\n")
    a = with_hosts(hosts, [*RUN, *at])
    assert a.returncode == 0 and lines_of(a.stdout) == [
        "SOA ns1.multi.test. h.multi.test. 10 1800 900 604800 60 from server 127.0.0.21 in T ms."
    ]
