"""`pktlab run dns` side by side with dig (BIND 9.18) on the same command lines, against
dns_zone_server.py (DNSSEC records, EDNS, referrals, misbehaving names) on loopback,
through the in-process endpoint (which has raw sockets: a closed UDP port is seen).

The outputs must be the same bytes but for what differs by nature: the banner's program
name, the message ID, the query time (+trace: each step's) and WHEN."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN = [sys.executable, "-m", "packetlab", "run", "dns"]

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


def zone_server(addr: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "dns_zone_server.py"), addr],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            proc.kill()
            pytest.fail(f"dns_zone_server did not start: {line} {proc.communicate()[1]}")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


@pytest.fixture(scope="module")
def port6() -> Iterator[int]:
    yield from zone_server("::1")


def ours(*words: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*RUN, *words], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def dig(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dig", *words], capture_output=True, text=True, timeout=60)


NATURE = [
    (re.compile(r"^; <<>> .*? <<>> ", re.M), "; <<>> PROGRAM <<>> "),
    (re.compile(r"(->>HEADER<<- opcode: \w+, status: \w+, id: )\d+"), r"\1ID"),
    (re.compile(r"^;; Query time: \d+ msec$", re.M), ";; Query time: T msec"),
    (re.compile(r"^;; WHEN: .*$", re.M), ";; WHEN: W"),
    (re.compile(r"^(;; Received \d+ bytes from \S+) in \d+ ms$", re.M), r"\1 in T ms"),
    (re.compile(r"( from server \S+) in \d+ ms\.$", re.M), r"\1 in T ms."),
]


def normal(text: str) -> str:
    for pattern, repl in NATURE:
        text = pattern.sub(repl, text)
    return text


def side_by_side(*words: str) -> str:
    a, b = ours(*words), dig(*words)
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
    return a.stdout


def test_default_sections_and_dnssec_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(
        *at, "+dnssec", "a.test", "test", "DNSKEY", "sub.test", "DS", "nope.test",
        "mx.test", "MX", "_443._tcp.www.test", "TLSA", "ssh.test", "SSHFP",
        "a-rather-long-label-for-the-columns.test", "txt.test", "TXT", "x.sub.test",
        "refused.test", "www.test", "AAAA",
    )  # fmt: skip
    for part in (";; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags: do; udp: 1232",
                 "IN\tRRSIG\tDNSKEY 13 1 3600", ";; AUTHORITY SECTION:",
                 ";; ADDITIONAL SECTION:", "status: REFUSED", "status: NXDOMAIN"):  # fmt: skip
        assert part in out
    side_by_side(*at, "a.test", "v6.test", "AAAA")  # without +dnssec: no RRSIG, no do
    out = side_by_side(*at, "+tcp", "+norec", "-t", "MX", "mx.test")
    assert "(TCP)" in out and "flags: qr aa;" in out
    assert "1.2.0.192.in-addr.arpa.\t\tIN\tPTR" in side_by_side(*at, "-x", "192.0.2.1")


def test_edns_switches_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+noedns", "+nocmd", "v6.test", "AAAA", "big.test", "TXT")
    assert "OPT PSEUDOSECTION" not in out and ";; Truncated, retrying in TCP mode." in out
    out = side_by_side(*at, "+bufsize=512", "+dnssec", "keys.test", "DNSKEY", "a.test")
    assert out.count(";; Truncated, retrying in TCP mode.") == 1 and "(TCP)" in out
    out = side_by_side(*at, "+dnssec", "keys.test", "DNSKEY")  # 1232: no truncation
    assert "Truncated" not in out and "(UDP)" in out
    side_by_side(*at, "+edns=1", "+nocmd", "a.test")  # BADVERS, asked again with version 0


def test_display_switches_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    for switches in (["+noall", "+answer"], ["+nocomments"], ["+nostats", "+nocmd"],
                     ["+noquestion", "+noadditional"], ["+noauthority", "+nocmd"],
                     ["+noall", "+answer", "+stats"], ["+noall", "+comments"],
                     ["+short"]):  # fmt: skip
        side_by_side(*at, *switches, "+dnssec", "mx.test", "MX", "nope.test")


def test_ipv6_only(port6: int) -> None:
    out = side_by_side("-6", "@::1", "-p", str(port6), "v6.test", "AAAA")
    assert ";; SERVER: ::1#" in out
    got = ours("-4", "@::1", "-p", str(port6), "v6.test")
    assert got.returncode == 2 and got.stderr.strip().endswith(
        "-4: the server ::1 is not an IPv4 address"
    )  # fmt: skip


def test_closed_udp_port_is_connection_refused_at_once(port: int) -> None:
    """dig sees the ICMP port unreachable on its connected socket; we capture it with
    the endpoint's raw socket. Both say so at once (not after the tries' waits)."""
    import socket

    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()  # a port nothing listens on
    words = ["@127.0.0.1", "-p", str(free), "+tries=1", "+time=5", "a.test"]
    t0 = time.monotonic()
    a = ours(*words)
    took = time.monotonic() - t0
    b = dig(*words)
    assert normal(a.stdout) == normal(b.stdout) and "connection refused" in a.stdout
    assert took < 5, took  # not the 5 s wait
    assert (a.returncode, b.returncode) == (1, 9)  # ours: 1 some query unanswered


def test_timeout_and_malformed_replies(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    side_by_side(*at, "+time=1", "+tries=1", "silent.test")
    for name in ("garbage.test", "badopt.test"):  # dig prints what it could; we: one line
        got = ours(*at, name)
        assert got.returncode == 1 and "Traceback" not in got.stderr
        assert got.stdout.startswith(f";; Got bad packet: malformed reply from 127.0.0.1#{port}")
        assert got.stdout.count("\n") == 1


def test_trace_as_dig(port: int) -> None:
    """+trace from @SERVER: the server's root zone names localhost. as the root server
    (dig finds its address on this host, we in the glue), which answers for test. itself."""
    at = ["-4", "+trace", "@127.0.0.1", "-p", str(port)]
    for words in (["a.test"], ["nope.test"], ["www.test", "AAAA"], ["test", "DNSKEY"],
                  ["+nodnssec", "a.test"]):  # fmt: skip
        out = side_by_side(*at, *words)
        assert out.count(";; Received ") == 2 and "(localhost) in " in out
    out = side_by_side(*at, "+short", "www.test", "AAAA")
    assert "CNAME v6.test. from server 127.0.0.1 in " in out
    # sub.test.'s server is ns.sub.test. at 127.0.0.1 (glue), this same server: it refers
    # to sub.test. again. dig cannot find ns.sub.test on this host; we stop at the loop.
    got = ours(*at, "x.sub.test")
    assert got.returncode == 1 and got.stdout.count(";; Received ") == 2
    assert got.stdout.endswith(
        ";; referral to sub.test. from sub.test. goes no deeper (a lame delegation)\n"
    )


@pytest.mark.skipif(
    shutil.which("capsh") is None or os.geteuid() != 0, reason="needs root and capsh"
)
def test_without_raw_sockets_a_closed_port_is_no_answer_saying_why() -> None:
    """The in-process endpoint without CAP_NET_RAW: the query still works, a closed port
    is `timed out` after the try, and the line after says why it cannot tell."""
    import shlex
    import socket

    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    cmd = shlex.join([*RUN, "@127.0.0.1", "-p", str(free), "+tries=1", "+time=1", "a.test"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        ["capsh", "--drop=cap_net_raw", "--", "-c", cmd],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert got.stdout.startswith(f";; communications error to 127.0.0.1#{free}: timed out\n")
    assert got.stdout.rstrip().endswith(
        "a closed port cannot be told from a silent server: the endpoint's UDP sockets report "
        "no ICMP port unreachable, and none could be captured: nopen failed: EUNKFAULT "
        "(0xffff): failure on the endpoint (e.g. a raw socket could not be opened))"
    )


def test_hostile_servers_through_the_cli(port: int) -> None:
    """TC over UDP, then 64 KiB of garbage over TCP: one line naming the server, exit 1.
    An endless referral chain (each answer one label deeper, to the same server): +trace
    gives up after its step limit, one line, exit 1, in bounded time."""
    at = ["@127.0.0.1", "-p", str(port)]
    got = ours(*at, "+nocmd", "tcgarbage.test")
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert got.stdout.splitlines() == [
        ";; Truncated, retrying in TCP mode.",
        f";; Got bad packet: malformed reply from 127.0.0.1#{port} over TCP: "
        + got.stdout.split(" over TCP: ", 1)[1].splitlines()[0],
    ]
    assert got.stdout.rstrip().endswith("(65535 bytes)")
    deep = ".".join(["x"] * 40) + ".deep.test"
    t0 = time.monotonic()
    got = ours("-4", "+trace", *at, deep)
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert got.stdout.count(";; Received ") == 17  # the root's NS, then the 16 referrals
    assert got.stdout.rstrip().splitlines()[-1] == (
        ";; gave up after 16 referrals (the last to " + ".".join(["x"] * 15)
        + ".deep.test. from 127.0.0.1): too deep a delegation or a referral loop"
    )  # fmt: skip
    assert time.monotonic() - t0 < 60
