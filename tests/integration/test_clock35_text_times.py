"""The times `pktlab run dns`, `run throughput` and `run http` print where dig, iperf3 and
curl print their host's clock are the endpoint's (the vantage point's), with our clock 10
min off it either way (libfaketime preloaded into `pktlab run`, the endpoint on the real
clock: see faketime_pair). Each printed time must fall within the real time around the
run, not 600 s away (session 35, clock35; before, each was 600 s off); so must iperf3's
--username token's and a TSIG's time signed, which their servers check (before:
refused)."""

from __future__ import annotations

import calendar
import json
import re
import shutil
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from childserver import serve_child
from faketime_pair import RAW_CONF, Pair, libfaketime, needs_faketime
from httpserve import serve_http
from test_throughput_iperf3_output import auth_server  # noqa: F401 (its fixture, asked below)

HERE = Path(__file__).resolve().parent
pytestmark = needs_faketime
SLACK_S = 2.0  # whole seconds printed, a run's start-up: far below the 600 s shift


def run_skewed(
    tmp_path: Path, shift_s: int, *argv: str, **env: str
) -> tuple[float, float, str, str]:
    """`pktlab run ARGV` (`env` in its environment) with our clock `shift_s` off the
    endpoint's: the real time before and after it, its stdout and stderr (it must end
    with status 0)."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(RAW_CONF)
    fake = {**libfaketime(f"{shift_s:+d}s", FAKETIME_DONT_FAKE_MONOTONIC="1"), **env}
    before = time.time()
    rc, out, err = Pair(*argv, fake=fake, faked="controller", config=conf).finish()
    assert rc == 0, (out, err)
    return before, time.time(), out, err


def assert_within(printed: float, before: float, after: float) -> None:
    assert before - SLACK_S <= printed <= after + SLACK_S, (printed, before, after)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with serve_child(str(HERE / "dns_zone_server.py"), "127.0.0.1") as port:
        yield port


@pytest.mark.parametrize("shift_s", [-600, 600])
def test_digs_when_is_the_endpoints(tmp_path: Path, dns_port: int, shift_s: int) -> None:
    # before (ours 600 s behind): `;; WHEN: Mon Dec 07 19:08:49 UTC 2026`, 600.4 s before
    before, after, out, _ = run_skewed(tmp_path, shift_s, "dns", "@127.0.0.1", "-p",
                                       str(dns_port), "a.test")  # fmt: skip
    when = re.search(r"^;; WHEN: (.*)$", out, re.M)
    assert when, out
    assert_within(time.mktime(time.strptime(when[1], "%a %b %d %H:%M:%S %Z %Y")), before, after)


@pytest.mark.parametrize("shift_s", [-600, 600])
def test_a_tsig_signed_query_is_signed_on_the_endpoints_clock(
    tmp_path: Path, dns_port: int, shift_s: int
) -> None:
    # the server refuses a time signed 300 s off its clock (the endpoint's here). Before:
    # `status: NOTAUTH`, its TSIG `BADTIME`, `;; Couldn't verify signature: clocks are
    # unsynchronized`
    secret = "c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM="  # dns_zone_server's tk.test.
    _, _, out, _ = run_skewed(tmp_path, shift_s, "dns", "@127.0.0.1", "-p", str(dns_port),
                              "-y", f"hmac-sha256:tk.test:{secret}", "a.test")  # fmt: skip
    assert "status: NOERROR" in out and "Couldn't verify" not in out, out
    assert re.search(r"\tTSIG\thmac-sha256\. \d+ 300 32 \S+ \d+ NOERROR 0 ", out), out


def test_digs_yaml_times_are_the_endpoints(tmp_path: Path, dns_port: int) -> None:
    before, after, out, _ = run_skewed(tmp_path, -600, "dns", "@127.0.0.1", "-p",
                                       str(dns_port), "a.test", "+yaml")  # fmt: skip
    stamps = re.findall(r"_time: !!timestamp (\S+)Z$", out, re.M)
    assert len(stamps) == 2, out  # query_time, response_time (UTC)
    for s in stamps:
        whole, _, ms = s.partition(".")
        printed = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1e3
        assert_within(printed, before, after)


@pytest.fixture
def iperf3_port() -> Iterator[int]:
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 missing")
    from iperf3_beside import own_server

    with own_server() as (port, _server):
        yield port


def test_iperf3_json_start_timestamp_is_the_endpoints(tmp_path: Path, iperf3_port: int) -> None:
    # before (ours 600 s ahead): `"timesecs": 1796671745`, 600.1 s after the run's start
    before, after, out, _ = run_skewed(tmp_path, 600, "throughput", "-c", "127.0.0.1", "-p",
                                       str(iperf3_port), "-t", "1", "-J")  # fmt: skip
    stamp = json.loads(out[: out.rindex("}") + 1])["start"]["timestamp"]
    assert_within(stamp["timesecs"], before, after)
    assert stamp["time"] == time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                          time.gmtime(stamp["timesecs"]))  # fmt: skip


def test_iperf3_timestamps_are_the_endpoints(tmp_path: Path, iperf3_port: int) -> None:
    before, after, out, _ = run_skewed(tmp_path, -600, "throughput", "-c", "127.0.0.1", "-p",
                                       str(iperf3_port), "-t", "1", "--timestamps=%s ")  # fmt: skip
    lines = out.splitlines()
    assert lines and lines[0].endswith(f"Connecting to host 127.0.0.1, port {iperf3_port}")
    for line in lines:
        if line.strip():
            assert_within(int(line.split(" ", 1)[0]), before, after)


@pytest.mark.parametrize("shift_s", [-600, 600])
def test_iperf3_username_token_is_on_the_endpoints_clock(
    tmp_path: Path, request: pytest.FixtureRequest, shift_s: int
) -> None:
    # the server refuses a token 10 s off its clock (the endpoint's here). Before: exit 1,
    # `pktlab run throughput: error - test authorization failed`
    port, public = request.getfixturevalue("auth_server")
    _, _, out, _ = run_skewed(tmp_path, shift_s, "throughput", "-c", "127.0.0.1", "-p", str(port),
                              "-t", "1", "--username", "alice", "--rsa-public-key-path",
                              str(public), IPERF3_PASSWORD="s3cret")  # fmt: skip
    assert out.rstrip().splitlines()[-1].startswith("# 1 of 1 runs"), out


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    with serve_http(_Hello) as port:
        yield port


@pytest.mark.parametrize("shift_s", [-600, 600])
def test_curls_trace_time_is_the_endpoints(tmp_path: Path, http_port: int, shift_s: int) -> None:
    # before (ours 600 s behind): `19:08:59.511598 *   Trying 127.0.0.1:18081...`
    url = f"http://127.0.0.1:{http_port}/"
    before, after, _, err = run_skewed(tmp_path, shift_s, "http", "--trace-time", "-v", "-o",
                                       str(tmp_path / "body"), url)  # fmt: skip
    stamps = re.findall(r"^(\d\d):(\d\d):(\d\d\.\d{6}) [*<>{}] ", err, re.M)
    assert len(stamps) >= 5, err  # Trying, Connected, the request, the response's lines
    day = time.localtime(before)
    midnight = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
    for h, m, s in stamps:
        printed = midnight + int(h) * 3600 + int(m) * 60 + float(s)
        if printed < before - 43200:  # (the run crossed midnight)
            printed += 86400
        assert_within(printed, before, after)
