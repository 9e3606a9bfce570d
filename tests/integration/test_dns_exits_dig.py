"""`pktlab run dns --dig-exit-codes` side by side with dig 9.18: the same exit status in
each case (an answer, NXDOMAIN, SERVFAIL, a bad packet, an unanswered UDP query, a
refused TCP connection, the last lookup's status of several, a `-f` batch with a line
unanswered, usage errors, `+nssearch` with no server reached, failed and cut transfers),
the same output but for what differs by nature; without the option ours (0, 1, 2)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child
from ports import closed_udp_port
from test_dns_dig import (  # noqa: F401
    RUN,
    both,
    dig,
    normal,
    ours,
    pytestmark,
    with_hosts,
    zone_server,
)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


def closed_port() -> int:
    return closed_udp_port()  # (over TCP too: nothing listens there)


def same_status(*words: str) -> int:
    """Both tools' status (ours with --dig-exit-codes) must be the same; their stdout
    too (test_dns_dig's `normal`)."""
    a, b = both(["--dig-exit-codes", *words], words)
    assert "Traceback" not in a.stderr, a.stderr
    assert (a.returncode, words) == (b.returncode, words), (a.stderr, b.stderr)
    if b.stdout and "Got bad packet" not in b.stdout:  # (its hex dump holds the ID)
        mine = a.stdout.replace("--dig-exit-codes ", "")  # (dig's banner repeats the words)
        assert normal(mine) == normal(b.stdout), words
    return b.returncode


def test_queries_exit_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    quick = ["+time=1", "+tries=1"]
    for words, status in (
        (["a.test"], 0), (["nope.test"], 0), (["servfail.test"], 0), (["refused.test"], 0),
        (["garbage.test"], 0), (["badptr.test"], 0),  # a bad packet: dig's 0
        ([*quick, "silent.test"], 9),
        ([*quick, "silent.test", "a.test"], 0),  # the last lookup's status, as dig
        ([*quick, "a.test", "silent.test"], 9),
        ([*quick, "silent.test", "garbage.test"], 0),
    ):  # fmt: skip
        assert same_status(*at, *words) == status, words
    closed = ["@127.0.0.1", "-p", str(closed_port()), "+tries=1"]
    assert same_status(*closed, "a.test") == 9  # UDP: refused (ICMP)
    assert same_status(*closed, "+tcp", "a.test") == 9  # TCP: connection refused
    # without the option: ours
    assert ours(*at, *quick, "silent.test").returncode == 1
    assert ours(*at, "garbage.test").returncode == 1


def test_a_batch_exits_as_dig(port: int, tmp_path: Path) -> None:
    at = ["@127.0.0.1", "-p", str(port), "+time=1", "+tries=1"]
    middle, last = tmp_path / "middle.txt", tmp_path / "last.txt"
    middle.write_text("a.test\nsilent.test\nb.test\n")
    last.write_text("a.test\nsilent.test\n")
    assert same_status(*at, "-f", str(middle)) == 0
    assert same_status(*at, "-f", str(last)) == 9
    assert ours(*at, "-f", str(middle)).returncode == 1  # ours: one unanswered


def test_usage_errors_exit_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    for words, status in (
        (["+bogus", "a.test"], 1), (["+tim", "a.test"], 1), (["-Z", "a.test"], 1),
        (["-p", "abc", "a.test"], 1), (["+subnet=bogus", "a.test"], 1),
        (["+cookie=zz", "a.test"], 1), (["a.test", "IXFR=abc"], 1),
        (["+bufsize=99999", "a.test"], 10), (["+tries=abc", "a.test"], 10),
        (["+qid=abc", "a.test"], 10), (["+padding=9999", "a.test"], 10),
        (["a..test"], 10), (["-f", "/nonexistent/batch"], 8),
    ):  # fmt: skip
        got = ours("--dig-exit-codes", *at, *words)
        assert (got.returncode, words) == (status, words), got.stderr
        assert dig(*at, *words).returncode == status, words
        assert "Traceback" not in got.stderr
        assert got.stderr.splitlines()[-1].startswith("pktlab run dns: "), got.stderr
        assert ours(*at, *words).returncode == 2  # ours without the option


@pytest.fixture(scope="module")
def nssearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (a mount namespace for dig's /etc/hosts)")
    from dns_nssearch_server import HOSTS

    hosts = tmp_path_factory.mktemp("exits") / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + HOSTS)
    with serve_child(str(HERE / "dns_nssearch_server.py")) as p:
        yield p, hosts


def test_nssearch_with_no_server_reached_exits_as_dig(nssearch: tuple[int, Path]) -> None:
    port, hosts = nssearch
    at = ["-p", str(port), "@127.0.0.21", "+time=1", "+tries=1", "+nssearch"]
    for zone, status in (("gone.test", 9), ("multi.test", 0)):  # none reached; one of three
        a = with_hosts(hosts, [*RUN, "--dig-exit-codes", *at, zone])
        b = with_hosts(hosts, ["dig", *at, zone])
        assert (a.returncode, b.returncode) == (status, status), (zone, a.stderr, b.stdout)
    a = with_hosts(hosts, ["dig", *at, "gone.test"])
    assert a.stdout.endswith(";; NS servers could not be reached\n")


@pytest.fixture(scope="module")
def xfr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("xfr") / "queries.log"
    with serve_child(str(HERE / "dns_xfr_server.py"), "127.0.0.1", str(log)) as p:
        yield p


def test_transfers_exit_as_dig(xfr: int) -> None:
    at = ["@127.0.0.1", "-p", str(xfr)]
    for words, status in (
        (["one.xfr", "AXFR"], 0), (["refused.xfr", "AXFR"], 0),  # `; Transfer failed.`
        (["garbage.xfr", "AXFR"], 0), (["badid.xfr", "AXFR"], 0),  # a bad packet, an ID
        (["cut.xfr", "AXFR", "+tries=1"], 9),  # closed mid-transfer
    ):  # fmt: skip
        a, b = both(["--dig-exit-codes", *at, *words], [*at, *words])
        assert (a.returncode, b.returncode, words) == (status, status, words), a.stderr
    closed = ["@127.0.0.1", "-p", str(closed_port()), "+tries=1"]
    a, b = both(["--dig-exit-codes", *closed, "one.xfr", "AXFR"], [*closed, "one.xfr", "AXFR"])
    assert (a.returncode, b.returncode) == (9, 9)


def test_what_a_dig_user_trips_over_next(port: int) -> None:
    """`dig @SERVER` without a name asks the root's NS (ours: an error); `+short +cmd`
    keeps dig's banner before `no servers could be reached` (ours: none), `+nssearch`'s
    says `+short +cmd` (ours: `+cmd`)."""
    from test_dns_dig import side_by_side

    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at)
    assert ";.\t\t\t\tIN\tNS" in out and ".\t\t\t86400\tIN\tNS\tlocalhost." in out
    for words in ([], ["+short"], ["-t", "MX"], ["+noall", "+answer", "-c", "CH"]):
        side_by_side(*at, *words)
    quick = ["+time=1", "+tries=1"]
    for words in (["+short", "+cmd"], ["+cmd", "+short"], ["+nssearch"], ["+short"]):
        out = side_by_side(*at, *quick, *words, "silent.test")
        assert out.endswith(";; no servers could be reached\n")
    assert ";; global options: +short +cmd\n" in side_by_side(*at, *quick, "+nssearch",
                                                              "silent.test")  # fmt: skip
