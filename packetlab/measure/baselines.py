"""Native baselines of the throughput, DNS and HTTP measurements: iperf3, dig and curl
run on this host (optionally in a namespace), their output turned into the records the
PacketLab measurements produce, so the two compare field by field (C1-C3).

`native.py` does the same for traceroute, scamper and ping; this module shares its
runner (`NativeToolError` for a missing tool, a failure or a timeout).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from packetlab.measure.dns import DnsAnswer, DnsResult
from packetlab.measure.http import HttpResult
from packetlab.measure.native import NativeToolError, _address, _run
from packetlab.measure.throughput_figures import SKIP, ThroughputResult

__all__ = [
    "curl_argv",
    "dig_argv",
    "iperf3_argv",
    "parse_dig",
    "parse_iperf3_json",
    "run_curl",
    "run_dig",
    "run_iperf3",
    "skip_from_intervals",
]


# -- iperf3 -------------------------------------------------------------------------------------


#: iperf3's shortest report interval: the resolution of the native download's t0 and b.
IPERF3_INTERVAL = 0.1


def iperf3_argv(server: str, *, port: int = 5201, direction: str, nbytes: int) -> list[str]:
    # A download reports every 0.1 s, so the paper's first-MiB skip can be applied to it.
    extra = ["-R", "-i", str(IPERF3_INTERVAL)] if direction == "download" else []
    return ["iperf3", "-c", _address(server), "-p", str(port), "-n", str(nbytes), "-J", *extra]


def skip_from_intervals(
    intervals: list[dict[str, Any]], skip: int
) -> tuple[int, float, float, int]:
    """The paper's §5.2 figure from iperf3's receive reports: (b, t0, t1, total) with t0
    the end of the first report by which `skip` bytes were in (b of them) and t1 the end
    of the last. Raises ValueError when no report ends past the skip before the last."""
    cum, b, t0 = 0, None, None
    for it in intervals:
        got = it["sum"]
        cum += int(got["bytes"])
        if b is None and cum >= skip:
            b, t0 = cum, float(got["end"])
    t1 = float(intervals[-1]["sum"]["end"]) if intervals else 0.0
    if b is None or t0 is None or b >= cum or t1 <= t0:
        raise ValueError("no report past the skipped part")
    return b, t0, t1, cum


def parse_iperf3_json(
    text: str, *, direction: str, server: str, port: int, skip: int = SKIP
) -> ThroughputResult:
    """A download: 8 (N - b) / (t1 - t0) from the receive reports, the first `skip` bytes
    ignored as the paper's native client does (§5.2) and as our ndata-stamp figure does
    (`whole_mbit_s` keeps iperf3's own figure over the whole transfer, `end.sum_received`).
    An upload: the receiver's figure (`end.sum_received`), which is also ours (the same
    server's count of the same whole transfer)."""
    try:
        obj = json.loads(text)
        if "error" in obj:
            raise NativeToolError(f"iperf3: {obj['error']}")
        got = obj["end"]["sum_received"]
        nbytes, seconds, bps = (
            int(got["bytes"]),
            float(got["seconds"]),
            float(got["bits_per_second"]),
        )
        intervals = obj.get("intervals") or []
    except (ValueError, KeyError, TypeError) as e:
        raise NativeToolError(f"unparsable iperf3 JSON: {e!r}") from None
    result = ThroughputResult(
        direction,
        server,
        port,
        nbytes,
        seconds=seconds,
        mbit_s=bps / 1e6,
        skip=0,
        measured_bytes=nbytes,
        method="iperf3-native",
        whole_mbit_s=bps / 1e6,
    )
    if direction == "download":
        try:
            b, t0, t1, total = skip_from_intervals(intervals, skip)
        except (ValueError, KeyError, TypeError):
            return result  # too short for a report past the skip: the whole figure
        result.skip, result.measured_bytes, result.seconds = b, total - b, t1 - t0
        result.mbit_s = (total - b) * 8 / (t1 - t0) / 1e6
        result.method = "iperf3-intervals"
    return result


def run_iperf3(
    server: str,
    *,
    port: int = 5201,
    direction: str = "download",
    nbytes: int = 25 << 20,
    netns: str | None = None,
    timeout: float = 120,
) -> ThroughputResult:
    argv = iperf3_argv(server, port=port, direction=direction, nbytes=nbytes)
    try:
        out = _run(argv, netns=netns, timeout=timeout)
    except NativeToolError as e:  # -J puts the reason into the JSON on stdout
        raise NativeToolError(str(e)) from None
    return parse_iperf3_json(out, direction=direction, server=server, port=port)


# -- dig ----------------------------------------------------------------------------------------


def dig_argv(name: str, qtype: str, *, server: str, port: int = 53, tcp: bool = False) -> list[str]:
    return [
        "dig", "+noall", "+answer", "+comments", "-p", str(port), f"@{_address(server)}",
        *(["+tcp"] if tcp else []), name, qtype,
    ]  # fmt: skip


def parse_dig(text: str, *, qname: str, qtype: str, server: str, port: int, tcp: bool) -> DnsResult:
    """dig's `+noall +answer +comments` text: the status from the header comment and every
    answer line."""
    result = DnsResult(qname if qname.endswith(".") else qname + ".", qtype, server, port,
                       "tcp" if tcp else "udp")  # fmt: skip
    for line in text.splitlines():
        if line.startswith(";; ->>HEADER<<-"):
            result.rcode = line.split("status:", 1)[1].split(",", 1)[0].strip()
        elif line and not line.startswith(";"):
            name, ttl, _cls, rtype, data = line.split(None, 4)
            result.answers.append(DnsAnswer(name, rtype, int(ttl), data))
    if result.rcode is None:
        result.error = "no answer (dig printed no header)"
    return result


def run_dig(
    name: str,
    qtype: str = "A",
    *,
    server: str,
    port: int = 53,
    tcp: bool = False,
    netns: str | None = None,
    timeout: float = 30,
) -> DnsResult:
    try:
        out = _run(
            dig_argv(name, qtype, server=server, port=port, tcp=tcp), netns=netns, timeout=timeout
        )
    except NativeToolError as e:
        if e.returncode != 9:  # dig's "no reply from server": a result, as ours (a failure)
            raise
        out = ""
    result = parse_dig(out, qname=name, qtype=qtype, server=server, port=port, tcp=tcp)
    if not out:
        result.error = "no reply from the server (dig's exit status 9)"
    return result


# -- curl ---------------------------------------------------------------------------------------

_CURL_TIMES = "%{http_code} %{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}"


def curl_argv(url: str, body: Path, *, cacert: str | None = None, insecure: bool = False,
              connect_to: str | None = None) -> list[str]:  # fmt: skip
    argv = ["curl", "-sS", "--http1.1", "-o", str(body), "-w", _CURL_TIMES]
    if cacert is not None:
        argv += ["--cacert", cacert]
    if insecure:
        argv.append("-k")
    if connect_to is not None:  # every host:port of the URL to this address
        argv += ["--connect-to", f"::{_address(connect_to)}:"]
    return [*argv, url]


def run_curl(
    url: str,
    body: Path,
    *,
    cacert: str | None = None,
    insecure: bool = False,
    connect_to: str | None = None,
    netns: str | None = None,
    timeout: float = 60,
) -> HttpResult:
    """curl's status, body (written to `body`, hashed) and times (µs), or `error` with
    curl's message when it fails (an untrusted certificate, a refused connect)."""
    argv = curl_argv(url, body, cacert=cacert, insecure=insecure, connect_to=connect_to)
    try:
        out = _run(argv, netns=netns, timeout=timeout)
    except NativeToolError as e:
        if e.returncode is None and shutil.which(argv[0]) is None:
            raise  # no curl: an error of the run, not a fetch that failed
        # curl's own words ("curl: (6) Could not resolve host: x"), not the last word
        # after a colon ("x"), which was all that was kept
        text = str(e)
        return HttpResult(url, error=text.split(f" failed ({e.returncode}): ", 1)[-1])
    code, connect, app, start, total = out.split()
    data = body.read_bytes()
    us = [float(x) * 1e6 for x in (connect, app, start, total)]
    return HttpResult(
        url,
        status=int(code),
        body_len=len(data),
        body_sha256=hashlib.sha256(data).hexdigest(),
        connect_us=us[0],
        tls_us=us[1] or None,
        first_byte_us=us[2],
        total_us=us[3],
    )
