"""`pktlab run ping|traceroute|dns|http --listen` against a reference-like endpoint
(session 23, ctlaudit23): `reference_like.ReferenceLike` in front of a real twistd
pktendpoint answers as pktendpt 1.1.0 does (one message per wake-up, header and body in
two TLS records with the body held back, no nstat after a failed connect, no ndrop, gaps
and LADDR/LPORT as the reference has them). Each run must finish with the right answers,
round trips from the endpoint's stamps (far below the held-back answers' delay), and one
TLS record per request.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from conftest import EndpointProcess
from reference_like import ReferenceLike, udp_responder
from testkit.poll import wait_tcp_listening
from tls_world import home_fixture

from packetlab.wire import vmem

REPO = Path(__file__).resolve().parents[2]
PKTLAB = [sys.executable, "-m", "packetlab"]
BODY_DELAY = 0.08

CONFIG = """\
BufMax 8388608
TransprotoSup raw,tcp,udp
VMemLocalAddrStrIPv4 127.0.0.1/8
HostID reference-like
NoSubMode 1
"""


def env(home: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    e["PKTLAB_HOME"] = str(home)
    return e


home = home_fixture(scope="function", root=True)


def run_listening(
    tmp_path: Path, home: Path, args: list[str], target: str, body_delay: float = BODY_DELAY
) -> tuple[subprocess.CompletedProcess[str], ReferenceLike]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [*PKTLAB, "run", *args, "--listen", f"127.0.0.1:{port}", target]
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env(home), cwd=REPO)  # fmt: skip
    ep = EndpointProcess(tmp_path, CONFIG)
    shim = None
    try:
        wait_tcp_listening(port, timeout=30)
        ep.listener.settimeout(15)
        backend, _ = ep.listener.accept()
        shim = ReferenceLike(port, backend, home, body_delay=body_delay)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        if shim is not None:
            shim.stop()
        ep.stop()
    assert shim is not None and shim.error is None, shim and shim.error
    return subprocess.CompletedProcess(argv, run.returncode, out, err), shim


def one_record_per_request(shim: ReferenceLike) -> None:
    assert set(shim.records) == {1}, shim.records
    assert shim.stalls == 0


def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets for ping and traceroute")


@pytest.mark.root
def test_ping(tmp_path: Path, home: Path) -> None:
    root()
    got, shim = run_listening(tmp_path, home, ["ping", "--json", "-c", "3", "-i", "0.05"],
                              "127.0.0.1")  # fmt: skip
    assert got.returncode == 0, got.stderr
    lines = [json.loads(x) for x in got.stdout.splitlines()]
    replies = lines[:-1]
    assert [(r["seq"], r["addr"]) for r in replies] == [(1, "127.0.0.1"), (2, "127.0.0.1"),
                                                        (3, "127.0.0.1")], got.stdout  # fmt: skip
    rtts = [r["rtt_us"] for r in replies]
    assert all(0 <= r < BODY_DELAY * 1e6 / 4 for r in rtts), rtts  # endpoint stamps
    one_record_per_request(shim)


@pytest.mark.root
def test_traceroute(tmp_path: Path, home: Path) -> None:
    root()
    got, shim = run_listening(tmp_path, home, ["traceroute", "-n", "-q", "1", "-m", "3"],
                              "127.0.0.1")  # fmt: skip
    assert got.returncode == 0, got.stderr
    hops = [x for x in got.stdout.splitlines() if x.lstrip()[:1].isdigit()]
    assert hops and "127.0.0.1" in hops[0], got.stdout
    ms = float(hops[0].split()[2])
    assert 0 <= ms < BODY_DELAY * 1000 / 4, got.stdout
    one_record_per_request(shim)


def _a_record(address: str, only_a: bool = False) -> Callable[[bytes], bytes]:
    """A DNS server's answer: `address` as the A record of the question's name (`only_a`:
    no answer record for any other type, as for an AAAA question)."""

    def answer(data: bytes) -> bytes:
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        if not only_a or q.question[0].rdtype == 1:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", address))
        return r.to_wire()

    return answer


@pytest.fixture
def dns_server() -> Iterator[int]:
    with udp_responder(_a_record("192.0.2.7")) as port:
        yield port


def test_dns(tmp_path: Path, home: Path, dns_server: int) -> None:
    got, shim = run_listening(tmp_path, home, ["dns", "--json", "--server",
                              f"127.0.0.1:{dns_server}"], "a.test")  # fmt: skip
    assert got.returncode == 0, got.stderr
    recs = [json.loads(x) for x in got.stdout.splitlines()]
    answers = [r for r in recs if r.get("type") == "dns"]
    assert answers and "192.0.2.7" in json.dumps(answers[0]), got.stdout
    # ntag of the query -> ndata of the answer, not when the held answers arrived
    assert 0 < answers[0]["rtt_us"] < BODY_DELAY * 1e6 / 4, answers[0]
    one_record_per_request(shim)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[int]:
    root_dir = tmp_path / "www"
    root_dir.mkdir()
    (root_dir / "index.html").write_bytes(b"<html>reference-like</html>\n" * 2000)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    t.join(5)


def test_http(tmp_path: Path, home: Path, web: int) -> None:
    got, shim = run_listening(tmp_path, home, ["http", "-s", "-o", str(tmp_path / "got.html")],
                              f"http://127.0.0.1:{web}/index.html")  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got.html").read_bytes() == b"<html>reference-like</html>\n" * 2000
    one_record_per_request(shim)


@pytest.fixture
def keepalive_web(tmp_path: Path) -> Iterator[int]:
    """HTTP/1.1 with keep-alive, so a second URL reuses the connection."""
    www = tmp_path / "kwww"
    www.mkdir()
    (www / "a").write_bytes(b"x" * 100)

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    t.join(5)


WRITE_OUT = "%{num_connects} %{time_namelookup} %{time_connect} %{time_starttransfer}\\n"


def _write_outs(stdout: str) -> list[list[float]]:
    return [[float(x) for x in line.split()] for line in stdout.splitlines()]


def test_http_reused_connection_times_leave_out_the_time_read(
    tmp_path: Path, home: Path, keepalive_web: int
) -> None:
    """ctlaudit23: a reused connection's hop started with an awaited TIME read, so its
    request left one controller round trip later and time_starttransfer counted that
    trip (+80 ms here, as the reference holds the mdata's body back; ~40 ms against the
    real one, and the whole RTT to a remote endpoint against ours). Now the read is
    pipelined with the request."""
    url = f"http://127.0.0.1:{keepalive_web}/a"
    got, shim = run_listening(tmp_path, home, ["http", "-s", "-o", "/dev/null", "-o",
                              "/dev/null", "-w", WRITE_OUT, url], url)  # fmt: skip
    assert got.returncode == 0, got.stderr
    first, second = _write_outs(got.stdout)
    assert (first[0], second[0]) == (1, 0), got.stdout  # the second reused the connection
    assert 0 < second[3] < BODY_DELAY / 4, got.stdout
    one_record_per_request(shim)


DNS_ADDR = "127.77.0.53"  # the endpoint's resolver (port 53): no other test uses it


@pytest.fixture
def resolver_on_53() -> Iterator[None]:
    try:
        with udp_responder(_a_record("127.0.0.1", only_a=True), (DNS_ADDR, 53)):
            yield
    except OSError as e:
        pytest.skip(f"cannot bind {DNS_ADDR}:53: {e}")


def test_http_name_lookup_time_leaves_out_the_time_read(
    tmp_path: Path, home: Path, keepalive_web: int, resolver_on_53: None
) -> None:
    """ctlaudit23: the hop's start was an awaited TIME read before the lookup, so
    time_namelookup (and every later time) counted one controller round trip more."""
    global CONFIG
    url = f"http://web.test:{keepalive_web}/a"
    saved = CONFIG
    CONFIG = saved + f"VMemLocalDNSAddrStrIPv4 {DNS_ADDR}\n"
    try:
        got, shim = run_listening(tmp_path, home, ["http", "-s", "-o", "/dev/null", "-w",
                                  WRITE_OUT], url)  # fmt: skip
    finally:
        CONFIG = saved
    assert got.returncode == 0, got.stderr
    [(connects, lookup, connect, _)] = _write_outs(got.stdout)
    assert connects == 1 and 0 < lookup and connect - lookup < BODY_DELAY * 1.5, got.stdout
    # The hop's start (the first TIME read) went with the lookup's first request (a read
    # of the system block for the DNS server), not one held answer before it.
    trace = [(t, what, m) for t, what, m in shim.trace if what != "E>C"]
    start = next(i for i, (_, w, m) in enumerate(trace) if m == f"Mread@{vmem.TIME.addr:#x}")
    assert trace[start + 1][1:] == ("C>E", f"Mread@{vmem.IP4NO.addr:#x}"), trace[:12]
    # Session 24: the ICMP watch takes the system block and TIME read with the DNS server
    # (was a second batch of reads, one more held answer: 80 ms here, ~40 ms against the
    # reference), and the query's UDP nopen goes with the watch's raw nopen.
    sent = [m for _, w, m in trace if w == "C>E"]
    first_nopen, query = sent.index("Nopen"), sent.index("Nsend")
    assert not [m for m in sent[first_nopen:query] if m.startswith("Mread")], sent[:query]
    nopen = next(i for i, (_, w, m) in enumerate(trace) if m == "Nopen")
    assert [m for _, w, m in trace[nopen : nopen + 2]] == ["Nopen", "Nopen"], trace[:30]
    one_record_per_request(shim)


@pytest.mark.parametrize("kind", ["python", "c"])
def test_mlet_under_xpmgr(tmp_path: Path, home: Path, web: int, kind: str) -> None:
    """`pktlab xpmgr` (passive, TLS) runs examples/http_get.py (the controller API in
    the mlet runner) or examples/mlets/http_get.c (raw frames on the mlet pipe) against
    the reference-like endpoint: its relay writes each of the mlet's requests as a
    record of its own, and the mlet gets the whole page."""
    from pxworld import XpmgrProc, compile_c_mlet

    if kind == "python":
        mlet = [str(REPO / "examples/http_get.py"), f"http://127.0.0.1:{web}/index.html"]
    else:
        mlet = [str(compile_c_mlet(tmp_path)), "127.0.0.1", str(web), "/index.html"]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", mlet, "-n", "1")
    ep = EndpointProcess(tmp_path, CONFIG)
    shim = None
    try:
        port = xp.port()
        ep.listener.settimeout(15)
        backend, _ = ep.listener.accept()
        shim = ReferenceLike(port, backend, home, body_delay=BODY_DELAY)
        assert xp.wait_exit(60) == 0, xp.text()
    finally:
        if shim is not None:
            shim.stop()
        ep.stop()
        xp.stop()
    assert shim.error is None, shim.error
    [r] = xp.result_lines()
    assert r["status"] == "done" and r["exit_code"] == 0, r
    assert "HTTP/1.0 200 OK" in r["output"], r["output"]
    assert "reference-like" in r["output"], r["output"]  # the HostID read from its memory
    if kind == "python":
        assert "body 56000)" in r["output"], r["output"]
    else:
        assert "HTTP/1.0 200 OK (56188 bytes)" in r["output"], r["output"]
    one_record_per_request(shim)


def test_http_refused_connect_is_read_from_stat(tmp_path: Path, home: Path) -> None:
    """The reference sends no nstat for a failed connect: `pktlab run http` learns the
    refusal from STAT (the run's table says so), in well under its connect timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got, shim = run_listening(tmp_path, home, ["http", "--connect-timeout", "20"],
                              f"http://127.0.0.1:{port}/")  # fmt: skip
    assert got.returncode == 1, (got.returncode, got.stdout, got.stderr)
    assert f"connect to 127.0.0.1:{port}: connection refused" in got.stdout, got.stdout
    assert any(m == "Nstat" for _, w, m in shim.trace if w == "E>C")  # ours sent it ...
    assert any(type(m).__name__ == "Nstat" for m in shim.dropped)  # ... the shim hid it
    one_record_per_request(shim)


@pytest.mark.root
def test_ping_short_wait_counts_the_last_request(tmp_path: Path, home: Path) -> None:
    """-W shorter than the hold: the last request's ntag comes a hold after its send, yet
    it counts as sent and answered. Ping's local schedule starts when the (equally held)
    TIME read's answer came, so the deadline it keeps after the last request (50 ms lead
    + the linger) trails the endpoint by the same hold: only a hold that varies by more
    than that slack could cut the last ntag off (seen once in ~10 loaded runs at 80 ms)."""
    root()
    got, shim = run_listening(tmp_path, home, ["ping", "-c", "3", "-i", "0.2", "-W", "0.03"],
                              "127.0.0.1", body_delay=0.15)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "3 packets transmitted, 3 received, 0% packet loss" in got.stdout, got.stdout
    one_record_per_request(shim)
