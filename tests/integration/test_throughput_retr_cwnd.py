"""iperf3's TCP sender columns, Retr and Cwnd, from the endpoint's SKT_TCPINFO sample
(issue 13): `pktlab run throughput` uploading to a real `iperf3 -s`, with the in-process
endpoint as the CLI runs it.

* Loopback: the lines parse as iperf3 3.12's (header, interval and sender lines), the
  figures are plausible for the connection (a window, an RTT, retransmits no more than the
  segments sent).
* The offsets read in struct tcp_info, against `ss -ti` for one idle loopback connection.
* A namespace link shaped by tbf with a 2 ms queue, which drops what TCP bursts past it
  (netem is not available on this kernel): the endpoint's retransmits are not zero, and
  within the namespace's own kernel count (`Tcp: RetransSegs`, /proc/net/snmp), of which
  our data streams are nearly all the senders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_throughput_iperf3_options import pktlab, port  # noqa: F401  (the fixture)

from packetlab.testbed import Shape, Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 missing")

REPO = Path(__file__).resolve().parents[2]
INTERVAL = re.compile(
    r"^\[  5\]\s+\d+\.\d\d-\d+\.\d\d\s+sec\s+\S+ \S*Bytes\s+\S+ \S*bits/sec"
    r"  ( *\d+)   (.{4} [KMG]?Bytes)       $"
)
SENDER = re.compile(r"^\[  5\]\s+0\.00-\S+\s+sec .*/sec  ( *\d+)             sender$")


def test_upload_lines_have_retr_and_cwnd_as_iperf3(port: int) -> None:  # noqa: F811
    rc, out, err = pktlab(port, "-t", "1", "-i", "0.5", "--direction", "upload",
                          json_out=False)  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    head = lines.index("[ ID] Interval           Transfer     Bitrate         Retr  Cwnd")
    rows = [m for line in lines[head + 1 :] if (m := INTERVAL.match(line))]
    assert len(rows) == 2, out
    for m in rows:
        assert len(m.group(1)) == 3 and int(m.group(1)) >= 0
        assert re.fullmatch(r"[ \d.]{4} [KMG]?Bytes", m.group(2)), m.group(2)
    assert "[ ID] Interval           Transfer     Bitrate         Retr" in lines
    assert any(SENDER.match(line) for line in lines), out
    assert any(line.endswith(" " * 18 + "receiver") for line in lines), out


def test_upload_json_figures_are_the_connections(port: int) -> None:  # noqa: F811
    rc, records, err = pktlab(port, "-t", "1", "-i", "0.5", "--direction", "upload")
    assert rc == 0, err
    intervals = [r for r in records if r["type"] == "interval"]
    (result,) = [r for r in records if r["type"] == "throughput"]
    assert "error" not in result, result
    for i in intervals:
        (s,) = i["streams"]
        assert s["snd_cwnd"] > 0 and s["pmtu"] > 0
        assert 0 < s["rtt"] < 1_000_000  # µs: loopback, well under a second
        assert s["retransmits"] >= 0 and i["sum"]["retransmits"] == s["retransmits"]
    sender = result["streams"][0]["sender"]
    # the last interval and the totals share the sample taken as the test ended
    assert sender["retransmits"] == sum(i["streams"][0]["retransmits"] for i in intervals)
    assert sender["retransmits"] <= sender["bytes"] // 1000  # at most every segment sent
    assert result["sum"]["sender"]["retransmits"] == sender["retransmits"]


def test_reverse_has_the_servers_retransmits(port: int) -> None:  # noqa: F811
    """-R: iperf3's layout (the columns blank on the receiving side); the sender line
    with the server's own count, from its results."""
    rc, records, err = pktlab(port, "-t", "1", "-i", "0.5")
    assert rc == 0, err
    (result,) = [r for r in records if r["type"] == "throughput"]
    assert result["streams"][0]["sender"]["retransmits"] >= 0
    assert "retransmits" not in result["streams"][0]["receiver"]


def _retrans_segs(tb: Testbed, node: str) -> int:
    text = subprocess.run(["ip", "netns", "exec", tb.netns_name(node), "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    head, values = [line.split() for line in text.splitlines() if line.startswith("Tcp:")][:2]
    return int(values[head.index("RetransSegs")])


@pytest.mark.root
def test_losses_on_a_shaped_link_show_as_retransmits(
    testbed_factory: Callable[..., Testbed],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    tb = testbed_factory(chain(1, shape={2: Shape(20_000_000, latency_ms=2.0)}))
    tb.popen("tg", ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL)
    tb.wait_listening("tg", 5201)
    before = _retrans_segs(tb, "ep")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        ["ip", "netns", "exec", tb.netns_name("ep"), sys.executable, "-m", "packetlab", "run",
         "throughput", "-c", str(tb.addr("tg")), "--insecure-plaintext", "--json",
         "--direction", "upload", "-t", "2", "-i", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    kernel = _retrans_segs(tb, "ep") - before
    records: list[dict[str, Any]] = [json.loads(x) for x in got.stdout.splitlines()]
    (result,) = [r for r in records if r["type"] == "throughput"]
    assert "error" not in result, result
    assert "retransmits" in result["streams"][0]["sender"], got.stdout
    ours = result["streams"][0]["sender"]["retransmits"]
    print(f"retransmits: endpoint {ours}, namespace kernel {kernel}")
    assert ours > 0  # the 2 ms queue drops: TCP retransmits
    intervals = [r for r in records if r["type"] == "interval"]
    assert ours == sum(i["sum"]["retransmits"] for i in intervals)
    assert ours <= kernel  # the namespace's count includes ours (and any after our sample)
    assert ours >= kernel // 2  # and ours are nearly all of it


def test_the_region_is_the_kernels_tcp_info_as_ss_shows_it() -> None:
    """The offsets `tcp_info_region` reads in Linux's struct tcp_info, checked against
    `ss -ti` for the same idle loopback connection (nothing changes between the two)."""
    import socket
    import time

    from packetlab.controller import decode_tcp_info
    from packetlab.endpoint.memory import tcp_info_region

    if shutil.which("ss") is None:
        pytest.skip("ss missing")
    with socket.create_server(("127.0.0.1", 0)) as srv:
        conn = socket.create_connection(srv.getsockname())
        peer, _ = srv.accept()
        with conn, peer:
            conn.sendall(bytes(1 << 20))
            got = 0
            while got < 1 << 20:
                got += len(peer.recv(1 << 20))
            time.sleep(0.3)  # every segment acknowledged: the connection idle
            info = decode_tcp_info(tcp_info_region(
                conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)))  # fmt: skip
            lport = conn.getsockname()[1]
            ss = subprocess.run(["ss", "-tin", "state", "established", "sport", f"= :{lport}"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert info is not None and info.state == 1  # ESTABLISHED
    fields = dict(re.findall(r"\b(mss|cwnd|pmtu|snd_wnd|retrans):([\d/]+)", ss))
    assert int(fields["mss"]) == info.snd_mss
    assert int(fields["cwnd"]) == info.snd_cwnd
    assert int(fields["pmtu"]) == info.pmtu
    if "snd_wnd" in fields:
        assert int(fields["snd_wnd"]) == info.snd_wnd
    total = int(fields.get("retrans", "0/0").split("/")[-1])
    assert total == info.total_retrans
    rtt = re.search(r"\brtt:([\d.]+)/([\d.]+)", ss)
    assert rtt is not None
    assert info.rtt == round(float(rtt.group(1)) * 1000)  # ss shows ms, TCP_INFO µs
    assert info.rttvar == round(float(rtt.group(2)) * 1000)
