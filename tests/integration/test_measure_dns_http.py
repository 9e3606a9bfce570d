"""`pktlab run dns|http` end to end against real local services (a Twisted names server,
Twisted web over HTTP and HTTPS), through the in-process endpoint, with the native tools
(dig, curl) on the same servers: the answer sets and the bodies must be the same (the
paper's C3 = 1.0)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from childserver import serve_child

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit" / "measure"))

from web_pki import make_pki  # noqa: E402

RUN = [sys.executable, "-m", "packetlab", "run"]


def service(*args: str) -> Iterator[int]:
    with serve_child(str(HERE / "measure_services.py"), *args, what=f"service {args}") as port:
        yield port


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    yield from service("dns")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_port(pki: dict[str, Path]) -> Iterator[int]:
    yield from service("https", str(pki["server"]), str(pki["key"]))


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from service("http")


def pktlab(*args: str, timeout: float = 180) -> tuple[int, list[dict[str, Any]], str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        [*RUN, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )
    records = [json.loads(line) for line in got.stdout.splitlines() if line.startswith("{")]
    return got.returncode, records, got.stderr


def dig(port: int, name: str, qtype: str, *opts: str) -> set[tuple[str, str, str]]:
    out = subprocess.run(
        ["dig", "+noall", "+answer", "-p", str(port), "@127.0.0.1", *opts, name, qtype],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    got = set()
    for line in out.splitlines():
        name_, _ttl, _cls, rtype, data = line.split(None, 4)
        got.add((name_, rtype, data))
    return got


needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")

QUERIES = [
    ("a.test", "A"),
    ("v6.test", "AAAA"),
    ("www.test", "AAAA"),  # CNAME then AAAA
    ("mx.test", "MX"),
    ("big.test", "TXT"),  # more than 512 bytes
    ("nope.test", "A"),
]


@needs_dig
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dns_answers_match_dig(dns_port: int, tcp: bool) -> None:
    rc, records, err = pktlab(
        "dns", "--json", "--server", f"127.0.0.1:{dns_port}", *(["--tcp"] if tcp else []),
        "--wait", "10",  # a loaded machine: slow answers are not lost ones
        # each name's type after it (dig: one type a name; -t A -t AAAA ... before the
        # names was each type asked of each name before session 13)
        *(word for query in QUERIES for word in query),
    )  # fmt: skip
    assert rc == 0, err
    by_query = {(r["qname"], r["qtype"]): r for r in records if r["type"] == "dns"}
    for name, qtype in QUERIES:
        rec = by_query[(name + ".", qtype)]
        ours = {(a["name"], a["type"], a["data"]) for a in rec["answers"]}
        assert ours == dig(dns_port, name, qtype, *(["+tcp"] if tcp else [])), (name, qtype)
        assert rec["proto"] == ("tcp" if tcp else "udp")
        # TCP: an ntag stamped after the answer arrived (a loaded endpoint) gives no RTT
        assert rec["rtt_us"] > 0 if not tcp else rec["rtt_us"] is None or rec["rtt_us"] > 0
    assert by_query[("nope.test.", "A")]["rcode"] == "NXDOMAIN"
    assert by_query[("a.test.", "A")]["rcode"] == "NOERROR"
    summary = records[-1]
    assert summary["type"] == "summary" and summary["queries"] == len(QUERIES)


def test_dns_table_and_no_server(dns_port: int, tmp_path: Path) -> None:
    rc, _, _ = pktlab("dns", "--server", f"127.0.0.1:{dns_port}", "a.test")
    assert rc == 0
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        [*RUN, "dns", "--server", f"127.0.0.1:{dns_port}", "a.test"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert "a.test.\t\t\t300\tIN\tA\t192.0.2.1" in got.stdout  # dig's columns
    assert ";; ANSWER SECTION:" in got.stdout
    got = subprocess.run(
        [*RUN, "dns", "--compact", "--server", f"127.0.0.1:{dns_port}", "a.test"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert "a.test.\t300\tIN\tA\t192.0.2.1" in got.stdout  # the compact form
    # a closed port: an error record and exit status 1 (refused at once: the in-process
    # endpoint has raw sockets and sees the ICMP port unreachable)
    rc, records, _ = pktlab("dns", "--json", "--server", "127.0.0.1:9", "--wait", "0.3", "a.test")
    assert rc == 1 and records[0]["error_kind"] == "refused"


@needs_curl
def test_https_bodies_match_curl(https_port: int, pki: dict[str, Path]) -> None:
    paths = ["/page/1", "/page/2", "/page/33", "/chunked", "/close", "/empty", "/slow"]
    urls = [f"https://localhost:{https_port}{p}" for p in paths]
    rc, records, err = pktlab(
        "http", "--json", "--cacert", str(pki["ca"]), "--connect-to", "127.0.0.1", *urls
    )
    assert rc == 0, err
    got = [r for r in records if r["type"] == "http"]
    assert [r["url"] for r in got] == urls
    for r in got:
        curl = subprocess.run(
            ["curl", "-sS", "--cacert", str(pki["ca"]), "-o", "-", "-w", "%{http_code}", r["url"]],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        body, code = curl[:-3], int(curl[-3:])
        assert (r["status"], r["body_len"], r["body_sha256"]) == (
            code, len(body), hashlib.sha256(body).hexdigest(),
        ), r["url"]  # fmt: skip
        if r.get("reused"):  # over the connection kept from the URL before: no connect,
            # no handshake (curl's time_connect and time_appconnect: 0)
            assert r["connect_us"] == r["tls_us"] == 0 and r["connects"] == 0
            assert 0 < r["first_byte_us"] <= r["total_us"]
        else:
            assert 0 < r["connect_us"] <= r["tls_us"] <= r["first_byte_us"] <= r["total_us"]
        assert r["tls_version"] == "TLSv1.3"
    # one connection kept from URL to URL (as curl); /close ends its own
    assert [r.get("reused", False) for r in got] == [False, True, True, True, True, False, True]
    slow = got[-1]
    assert slow["total_us"] - slow["first_byte_us"] > 150_000  # 4 gaps of 50 ms


def test_https_untrusted_and_plain_http(
    https_port: int, http_port: int, pki: dict[str, Path]
) -> None:
    rc, records, _ = pktlab(
        "http", "--json", f"https://127.0.0.1:{https_port}/page/1",
        "--cacert", str(pki["other-ca"]),
    )  # fmt: skip
    assert rc == 1
    assert records[0]["error"].startswith(
        "TLS: certificate verify failed: unable to get local issuer certificate (the server's "
    )
    assert "status" not in records[0]
    rc, records, err = pktlab(
        "http",
        "--json",
        f"http://127.0.0.1:{http_port}/page/5",
        f"http://127.0.0.1:{http_port}/close",
    )
    assert rc == 0, err
    assert records[0]["status"] == 200 and records[1]["status"] == 200
    assert "tls_us" not in records[0]


@needs_dig
@needs_curl
def test_compare_end_to_end(dns_port: int, https_port: int, pki: dict[str, Path]) -> None:
    """`pktlab compare dns|http` on a small run: C3 = 1.0, verdicts in the JSON summary."""
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def compare(*args: str) -> tuple[int, list[dict[str, Any]]]:
        got = subprocess.run(
            [sys.executable, "-m", "packetlab", "compare", *args, "--runs", "2", "--json"],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )  # fmt: skip
        return got.returncode, [json.loads(x) for x in got.stdout.splitlines()]

    rc, records = compare("dns", "--server", f"127.0.0.1:{dns_port}", "a.test", "www.test",
                          "nope.test", "-t", "A", "-t", "AAAA")  # fmt: skip
    assert rc == 0, records
    runs, summary = records[:-1], records[-1]
    assert [r["impl"] for r in runs] == ["packetlab", "native", "native", "packetlab"]
    assert summary["type"] == "summary" and summary["c3"] == 1.0 and summary["c3_holds"] is True
    assert summary["c1"] is None and summary["c2_p"] is None
    rc, records = compare("http", "--cacert", str(pki["ca"]), "--connect-to", "127.0.0.1",
                          *(f"https://localhost:{https_port}/{p}" for p in ("page/4", "chunked",
                                                                             "close")))  # fmt: skip
    assert rc == 0, records
    assert records[-1]["c3"] == 1.0 and records[-1]["c3_holds"] is True
    import socket

    with socket.socket() as closed:  # bound, not listening: a connect is refused
        closed.bind(("127.0.0.1", 0))
        rc, records = compare("http", f"http://127.0.0.1:{closed.getsockname()[1]}/")
    # every fetch failed on both sides: once "C3 holds" (1.0 over the failure markers), exit 0
    summary = records[-1]
    assert rc == 1, records
    assert (summary["c3"], summary["c3_holds"], summary["c3_nothing"]) == (None, False, True)
    assert (summary["failed_items_pl"], summary["failed_items_nt"]) == (2, 2)
    assert summary["failure_nt"].startswith("curl: (7) Failed to connect"), summary
    assert "refused" in summary["failure_pl"], summary


def test_campaign_two_endpoints(dns_port: int) -> None:
    """`pktlab campaign dns --split` with two real endpoints that connect by themselves:
    the names are dealt out, every record is tagged with its endpoint's hostid."""
    import socket

    from packetlab.controller.local import twistd_command

    with socket.socket() as s:  # a free port for the controller
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    names = ["a.test", "v6.test", "mx.test", "www.test", "nope.test"]
    ctl = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "campaign", "dns", "--listen", f"127.0.0.1:{port}",
         "--endpoints", "2", "--split", "--insecure-plaintext", "--json", "--timeout", "150",
         "--server", f"127.0.0.1:{dns_port}", *names],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert ctl.stderr is not None
    assert "waiting for 2 endpoints" in ctl.stderr.readline()
    eps = [
        subprocess.Popen(
            [
                *twistd_command(),
                "-n",
                "--pidfile=",
                "pktendpoint",
                "--insecure-plaintext",
                "--config",
                os.devnull,
                "--host-id",
                f"ep{i}",
                "--reconnect-delay",
                "30",
                f"127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        for i in (1, 2)
    ]
    try:
        out, err = ctl.communicate(timeout=180)
    finally:
        for p in eps:
            p.terminate()
            p.wait(10)
    assert ctl.returncode == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    got = [r for r in records if r["type"] == "dns"]
    assert sorted(r["qname"] for r in got) == sorted(n + "." for n in names)
    assert {r["endpoint"] for r in got} == {"ep1", "ep2"}
    summary = records[-1]
    assert summary["type"] == "summary" and summary["endpoints"] == 2
    assert sorted(summary["per_endpoint"].values()) == [2, 3]


def test_ctrl_c_prints_what_was_gathered_and_the_summary() -> None:
    """The first Ctrl-C in `pktlab run dns`: no new query, the one in flight cut after a
    short grace, the answers gathered and the summary printed, exit status 130."""
    import signal
    import socket

    from conftest import readline

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # a DNS server that never answers
    env = dict(os.environ, PYTHONPATH=str(REPO))
    names = ["a.test", "v6.test", *(f"n{i}.test" for i in range(20))]
    proc = subprocess.Popen(
        [*RUN, "dns", "--json", "--wait", "1", "--tries", "1", "--server",
         f"127.0.0.1:{silent.getsockname()[1]}", *names],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(readline(proc.stdout))  # streamed as soon as a.test gave up
        assert first["qname"] == "a.test." and "no answer" in first["error"]
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        silent.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    records = [first, *(json.loads(line) for line in rest.splitlines())]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "INTERRUPTED"
    assert summary["queries"] == len(records) - 1 < len(names)
    assert "Traceback" not in err and "stopping" in err


@needs_dig
def test_dig_words_and_short_output_match_dig(dns_port: int) -> None:
    """The same command line as dig's (`@SERVER -p PORT +short NAME [TYPE] ...`) prints
    the same lines."""
    words = ["@127.0.0.1", "-p", str(dns_port), "+short", "a.test", "www.test", "AAAA",
             "mx.test", "MX", "nx.test"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ours = subprocess.run(
        [*RUN, "dns", *words], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )
    theirs = subprocess.run(["dig", *words], capture_output=True, text=True, timeout=30)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout and ours.stdout.count("\n") == 5


@pytest.fixture(scope="module")
def hostile_port() -> Iterator[int]:
    yield from service("hostile-http")


def test_hostile_http_servers_through_the_cli(hostile_port: int) -> None:
    """Each hostile URL one error line naming the server, the good URLs after each still
    fetched, exit 1, no traceback, in bounded time. Before, the 64 MiB after a complete
    response on a kept connection (and the flood after the header error) filled the
    socket's queue, which paused the session's reads: the run hung on the next URL."""
    base = f"http://127.0.0.1:{hostile_port}"
    server = f"127.0.0.1:{hostile_port}"
    urls = ["/flood-after", "/ok", "/flood-header", "/ok", "/1xx", "/ok", "/trickle", "/ok",
            "/cookies", "/ok"]  # fmt: skip
    # --max-time 10: /1xx's 12,000 interim responses take ~0.3 s quiet, over 4 s at load 15
    rc, records, err = pktlab("http", "--json", "--max-time", "10", *[base + u for u in urls],
                              timeout=120)  # fmt: skip
    assert rc == 1 and "Traceback" not in err, err
    byurl = [r for r in records if r.get("type") == "http"]
    assert len(byurl) == len(urls)
    for u, r in zip(urls, byurl, strict=True):
        if u in ("/ok", "/flood-after", "/cookies"):
            assert (r.get("status"), r.get("error")) == (200, None), (u, r)
    assert byurl[1].get("reused") is None  # the flooded connection was not reused
    assert byurl[2]["error"] == (  # curl 7.88.1's 27 for a line over 100 KiB
        f"Out of memory (a header line from {server} over curl's 102399 bytes)"
    )
    assert byurl[4]["error"].startswith("Too large response headers: ")  # curl's 56
    assert byurl[6]["exitcode"] == 28 and byurl[6]["error"].startswith(
        f"timed out: no complete response from {server} within 10 s of the connect ("
    )
