"""`pktlab campaign` over two endpoints on two clocks: each endpoint's run takes the times
a native tool there takes from its host's clock (a TSIG signature, curl's --trace-time)
from that endpoint's clock, and with --json the summary gives each run's times on its
endpoint's clock (`endpoint_clocks`); the campaign's own stay on ours (session 36,
clock36; before, all were on ours: the TSIG refused, both `Trying` lines 600 s off).

Each endpoint's clock is shifted (libfaketime preloaded into it, see faketime_pair): a
campaign has one controller and several clocks, so only the endpoints can differ. Under
libfaketime only TIME moves, not the kernel's packet stamps, so nothing here checks a
stamp; where the endpoint's clock must be the real one (a server checks the TSIG time),
our clock is the one shifted and one endpoint is left on the real clock."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from childserver import serve_child
from conftest import readline, stop_process, twistd
from faketime_pair import ENV, REPO, libfaketime, needs_faketime
from httpserve import serve_http
from test_throughput_iperf3_output import auth_server  # noqa: F401 (its fixture, asked below)

HERE = Path(__file__).resolve().parent
pytestmark = needs_faketime
CONF = "BufMax 8388608\nTransprotoSup tcp,udp\nVMemLocalAddrStrIPv4 127.0.0.1/8\n"
SECRET = "c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM="  # dns_zone_server's tk.test.
SLACK_S = 2.0  # whole seconds printed, start-up: far below the 600 s shifts


def faked(shift: str | None) -> dict[str, str]:
    return libfaketime(shift, FAKETIME_DONT_FAKE_MONOTONIC="1") if shift else {}


def campaign(tmp_path: Path, ours: str | None, theirs: list[str | None], *argv: str,
             **env: str) -> tuple[float, float, str, str]:  # fmt: skip
    """`pktlab campaign ARGV --endpoints N` (`env` in its environment), our clock `ours`
    (a libfaketime FAKETIME, None: the real one) and endpoint `ep<i>`'s `theirs[i]`: the
    real time before and after it, its stdout and stderr (it must end with status 0)."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(CONF)
    ctl = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "campaign", *argv, "--listen", "127.0.0.1:0",
         "--endpoints", str(len(theirs)), "--insecure-plaintext", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**ENV, **faked(ours), **env}, cwd=REPO,
    )  # fmt: skip
    eps: list[subprocess.Popen[bytes]] = []
    try:
        assert ctl.stderr is not None
        said = readline(ctl.stderr)
        port = re.search(r"127\.0\.0\.1:(\d+)", said)
        assert port, said
        for i, shift in enumerate(theirs):
            eps.append(subprocess.Popen(
                [*twistd(), "-n", "--pidfile=", "pktendpoint", "--insecure-plaintext",
                 "--config", str(conf), "--host-id", f"ep{i}", "--reconnect-delay", "60",
                 f"127.0.0.1:{port[1]}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**ENV, **faked(shift)}, cwd=REPO,
            ))  # fmt: skip
        before = time.time()
        out, err = ctl.communicate(timeout=120)
    finally:
        for p in [ctl, *eps]:
            stop_process(p)
    assert ctl.returncode == 0, (out, err)
    return before, time.time(), out.decode(), err.decode()


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with serve_child(str(HERE / "dns_zone_server.py"), "127.0.0.1") as port:
        yield port


def test_each_endpoints_run_has_its_summary_times_on_its_clock(
    tmp_path: Path, dns_port: int
) -> None:
    # before: the summary's times and offset ours alone ("clock": "controller"), nothing
    # of the endpoints' clocks, 600 s ahead and behind
    _, _, out, _ = campaign(tmp_path, None, ["+600s", "-600s"], "dns", "@127.0.0.1", "-p",
                            str(dns_port), "a.test", "--json")  # fmt: skip
    records = [json.loads(x) for x in out.splitlines()]
    (summary,) = [r for r in records if r["type"] == "summary"]
    assert summary["clock"] == "controller" and summary["clock_offset_us"] is None
    clocks = summary["endpoint_clocks"]
    assert sorted(clocks) == ["ep0", "ep1"], summary
    for name, shift_s in (("ep0", 600), ("ep1", -600)):
        c = clocks[name]
        assert c["clock"] == "endpoint", c
        # faked reads of a clock take a few µs more than a real one: 1 ms to spare
        assert abs(c["clock_offset_us"] - shift_s * 1e6) <= c["clock_error_us"] + 1e3, c
        assert summary["start_time"] + shift_s - SLACK_S <= c["start_time"] <= c["stop_time"]
        assert c["stop_time"] <= summary["stop_time"] + shift_s + SLACK_S, (c, summary)


def test_a_tsig_query_is_signed_on_each_endpoints_clock(tmp_path: Path, dns_port: int) -> None:
    # our clock 600 s behind; ep0 on the real clock (the server's), ep1 with ours: ep0's
    # query signed at its time is taken, ep1's refused (BADTIME: dig there gets the same).
    # Before: both signed at ours, both NOTAUTH.
    _, _, out, _ = campaign(tmp_path, "-600s", [None, "-600s"], "dns", "@127.0.0.1", "-p",
                            str(dns_port), "-y", f"hmac-sha256:tk.test:{SECRET}", "a.test",
                            "--json")  # fmt: skip
    rcodes = {r["endpoint"]: r["rcode"] for r in map(json.loads, out.splitlines())
              if r["type"] == "dns"}  # fmt: skip
    assert rcodes == {"ep0": "NOERROR", "ep1": "NOTAUTH"}, out


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def off_s(shown: str, real: float) -> float:
    """How far the time of day `shown` (HH:MM:SS, local) is from the time `real`, in s
    (-12 h to 12 h: a run across midnight too)."""
    h, m, sec = map(int, shown.split(":"))
    t = time.localtime(real)
    d = (h * 3600 + m * 60 + sec) - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec)
    return (d + 43200) % 86400 - 43200


def test_curls_trace_time_is_each_endpoints(tmp_path: Path) -> None:
    # our clock 600 s behind, ep0 on the real clock, ep1 with ours. Before: both
    # `Trying` lines at ours (`22:06:26.346992 *   Trying ...` twice, 600 s behind)
    with serve_http(_Hello) as port:
        before, after, out, err = campaign(tmp_path, "-600s", [None, "-600s"], "http",
                                           "--trace-time", "-v",
                                           f"http://127.0.0.1:{port}/")  # fmt: skip
    shown = re.findall(r"^(\d\d:\d\d:\d\d)\.\d+ \*   Trying ", out + err, re.M)
    assert len(shown) == 2, (out, err)
    offs = sorted(off_s(t, before) for t in shown)
    # one 600 s behind the real clock (ours), one on it: whole seconds, start-up
    slack = after - before + SLACK_S
    assert abs(offs[0] + 600) <= slack and abs(offs[1]) <= slack, (offs, out, err)


def test_an_iperf3_token_is_on_its_endpoints_clock(
    tmp_path: Path,
    auth_server: tuple[int, Path],  # noqa: F811 (the fixture)
) -> None:
    # our clock 600 s behind, the endpoint (and the server) on the real one. Before: the
    # token made at ours, refused (`error - test authorization failed`, status 1)
    port, public = auth_server
    _, _, out, err = campaign(tmp_path, "-600s", [None], "throughput", "-c", "127.0.0.1",
                              "-p", str(port), "-t", "1", "--username", "alice",
                              "--rsa-public-key-path", str(public),
                              IPERF3_PASSWORD="s3cret")  # fmt: skip
    assert "authorization failed" not in out + err and "0 errors" in out, (out, err)
