"""`pktlab run throughput`'s iperf3 output options over records (no endpoint): -T and
--timestamps byte for byte as native iperf3 3.12 prefixed its lines, --logfile, -J's one
document per test, -V's lines, --get-server-output's block, and the options refused or
checked in one line (--dscp, -L, --dont-fragment, -A, -F, --username, -4/-6, -B)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest

from packetlab.cli import run_throughput
from packetlab.cli.run import RunError
from packetlab.cli.run_command import parse_args

COOKIE = "s5uthllc6eut5d3ku7n4b7gqdamzghvhdkrp"
CONNECTED = {
    "type": "connected", "server": "127.0.0.1", "port": 15216, "direction": "upload",
    "protocol": "tcp", "cookie": COOKIE, "tcp_mss": 32768, "parallel": 1, "length": 131072,
    "omit": 0,
    "time": 1.0, "bytes_limit": None, "blocks": None, "bitrate": None,
    "streams": [{"id": 5, "local_host": "127.0.0.1", "local_port": 45150,
                 "remote_host": "127.0.0.1", "remote_port": 15216}],
}  # fmt: skip
SIDE = {"bytes": 2448883712, "seconds": 1.0, "mbit_s": 19591.1}
RESULT = {
    "type": "throughput", "direction": "upload", "server": "127.0.0.1", "port": 15216,
    "protocol": "tcp", "parallel": 1, "time": 1.0, "bytes": 2448883712, "interval": 1.0,
    "length": 131072, "seconds": 1.0, "endpoint": "sender",
    "streams": [{"id": 5, "sender": {**SIDE, "retransmits": 1}, "receiver": dict(SIDE)}],
    "sum": {"sender": {**SIDE, "retransmits": 1}, "receiver": dict(SIDE)},
    "server_info": {"congestion_used": "bbr"},
    "server_output_text": "Accepted connection from 127.0.0.1, port 45140\n",
}  # fmt: skip
INTERVAL = {
    "type": "interval", "direction": "upload", "protocol": "tcp", "sender": True,
    "start": 0.0, "end": 1.0, "seconds": 1.0,
    "streams": [{"id": 5, "bytes": 2448883712, "packets": 0, "retransmits": 1,
                 "snd_cwnd": 1835008, "bits_per_second": 1.9e10}],
    "sum": {"bytes": 2448883712, "packets": 0, "retransmits": 1},
}  # fmt: skip


def args_of(*argv: str) -> argparse.Namespace:
    return parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-p", "15216", *argv])


def lines(args: argparse.Namespace, *records: dict[str, Any]) -> list[str]:
    render = run_throughput.renderer(args)
    out: list[str] = []
    for r in records:
        text = render(r)
        if text is not None:
            out += text.split("\n")
    return out


@pytest.fixture
def at_native_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local time as native's --timestamps run printed it (Sat Dec  5 08:50:17 2026)."""
    monkeypatch.setattr(time, "localtime", lambda *a: time.gmtime(1796460617))


def test_title_and_timestamps_prefix_every_line_as_iperf3(at_native_time: None) -> None:
    # native: `iperf3 -c 127.0.0.1 -p 15216 -t 1 -T hi` and `... --timestamps`
    got = lines(args_of("-t", "1", "-T", "hi"), CONNECTED)
    assert got == [
        "hi:  Connecting to host 127.0.0.1, port 15216",
        "hi:  [  5] local 127.0.0.1 port 45150 connected to 127.0.0.1 port 15216",
    ]
    got = lines(args_of("-t", "1", "--timestamps"), CONNECTED)
    assert got[1] == ("Sat Dec  5 08:50:17 2026 [  5] local 127.0.0.1 port 45150 connected "
                      "to 127.0.0.1 port 15216")  # fmt: skip
    got = lines(args_of("-t", "1", "--timestamps=%H:%M"), CONNECTED)
    assert got[0] == "08:50Connecting to host 127.0.0.1, port 15216"  # no space, as native
    both = lines(args_of("-t", "1", "--timestamps", "-T", "hi"), RESULT)
    # the server's report is one printf in iperf3, prefixed once (session 26: this test
    # had every line of it prefixed, which native 3.12 does not print)
    server = both.index("Server output:")
    ours = both[:server] + both[server + 3 :]
    assert all(x.startswith("Sat Dec  5 08:50:17 2026 hi:  ") for x in ours), both
    assert "Sat Dec  5 08:50:17 2026 hi:  " in both  # the blank line too, as native's


def test_format_letter_in_the_lines() -> None:
    got = lines(args_of("-f", "m"), INTERVAL, RESULT)
    assert got[1].startswith("[  5]   0.00-1.00   sec  2.28 GBytes  19591 Mbits/sec")
    assert any(
        x.startswith("[  5]   0.00-1.00   sec  2.28 GBytes  19591 Mbits/sec    1") for x in got
    )
    with pytest.raises(SystemExit):
        args_of("-f", "a")  # iperf3 3.12 takes kmgtKMGT only


def test_verbose_lines_as_iperf3(at_native_time: None) -> None:
    got = lines(args_of("-t", "1", "-V"), CONNECTED, INTERVAL, RESULT)
    assert got[0] == "Control connection MSS 32768"
    assert got[1].startswith("Time: ") and got[1].endswith(" GMT")
    # native `iperf3 -c 127.0.0.1 -p 15216 -t 1 -V`
    assert got[2:7] == [
        "Connecting to host 127.0.0.1, port 15216",
        f"      Cookie: {COOKIE}",
        "      TCP MSS: 32768 (default)",
        "[  5] local 127.0.0.1 port 45150 connected to 127.0.0.1 port 15216",
        "Starting Test: protocol: TCP, 1 streams, 131072 byte blocks, omitting 0 seconds, "
        "1 second test, tos 0",
    ]
    sep = got.index("- - - - - - - - - - - - - - - - - - - - - - - - -")
    assert got[sep + 1 : sep + 3] == [
        "Test Complete. Summary Results:",
        "[ ID] Interval           Transfer     Bitrate         Retr",
    ]
    assert "rcv_tcp_congestion bbr" in got
    udp = {**CONNECTED, "protocol": "udp", "length": 32768, "bitrate": 5e6, "blocks": 50,
           "time": None}  # fmt: skip
    got = lines(args_of("-V"), udp)
    assert "      Target Bitrate: 5000000" in got and "      TCP MSS: 32768 (default)" not in got
    assert not any(line.startswith("Setting UDP") for line in got)  # -l given
    # native `iperf3 -c 127.0.0.1 -u -t 1 -V` (no -l): 3.12 says the block it took from
    # the control connection's MSS, right after that (session 28; was missing)
    got = lines(args_of("-V"), {**udp, "udp_block_chosen": True})
    assert got[:2] == ["Control connection MSS 32768", "Setting UDP block size to 32768"]
    assert got[-1] == ("Starting Test: protocol: UDP, 1 streams, 32768 byte blocks, omitting 0 "
                       "seconds, 50 blocks to send, tos 0")  # fmt: skip


def test_server_output_after_the_results() -> None:
    got = lines(args_of("-t", "1", "--get-server-output"), RESULT)
    at = got.index("Server output:")
    assert got[at - 1] == "" and got[at + 1] == "Accepted connection from 127.0.0.1, port 45140"
    assert got[at - 2].endswith("receiver")  # right after the totals, as iperf3's (session
    assert got[-1].startswith("# sender: ")  # 19: our note came between them)
    hostile = {**RESULT, "server_output_text": "a\x1b]0;pwned\x07\tb\n"}
    got = lines(args_of("-t", "1", "--get-server-output"), hostile)
    assert got[-3:-1] == ["a\\x1b]0;pwned\\x07\tb", ""]  # no escape reaches the terminal


def test_logfile_appends_and_prints_nothing(tmp_path: Path) -> None:
    log = tmp_path / "iperf.log"
    log.write_text("before\n")
    args = args_of("-t", "1", "--logfile", str(log), "-T", "x")
    assert lines(args, CONNECTED, RESULT) == []
    text = log.read_text().splitlines()
    assert text[0] == "before" and text[1] == "x:  Connecting to host 127.0.0.1, port 15216"
    assert (
        "x:  [  5]   0.00-1.00   sec  2.28 GBytes  19.6 Gbits/sec    1             sender" in text
    )


def test_json_document_once_per_test_with_the_title() -> None:
    args = args_of("-J", "-T", "hi", "--timestamps")
    render = run_throughput.renderer(args)
    assert render(CONNECTED) is None and render(INTERVAL) is None
    doc = json.loads(render(RESULT) or "")
    assert list(doc) == ["start", "intervals", "end", "title", "server_output_text"]
    assert doc["title"] == "hi" and len(doc["intervals"]) == 1
    assert doc["start"]["cookie"] == COOKIE and doc["end"]["sum_sent"]["retransmits"] == 1
    assert render({"type": "summary", "runs": 1, "ok": 1}) is None  # iperf3: the document only
    assert run_throughput.timed(args_of("-J"))  # -J alone: iperf3's test (-t 10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dscp", "46"], "--dscp 46: not supported: iperf3 sets IP_TOS (IPV6_TCLASS) to the "
         "DSCP on its sockets, and PacketLab cannot set it on the endpoint's sockets"),
        (["-L", "7"], "-L 7: not supported: iperf3 sets IPV6_FLOWLABEL_MGR and "
         "IPV6_FLOWINFO_SEND on its sockets"),
        (["--dont-fragment", "--direction", "upload"], "--dont-fragment: not supported: iperf3 "
         "sets IP_MTU_DISCOVER (IP_PMTUDISC_DO) on its sockets"),  # -R: told (session 27)
        (["-A", "1"], "-A 1: not supported: iperf3 pins its own process to a CPU "
         "(sched_setaffinity), and PacketLab has no request that places the endpoint's"),
        (["-F", "f.bin", "--bidir"], "-F with --bidir is not built: iperf3 3.12 opens"),
        (["--username", "u"], "--username needs a username, a password ($IPERF3_PASSWORD, "
         "or asked on a terminal) and --rsa-public-key-path, as iperf3"),
        (["--username", "u", "--rsa-public-key-path", "/nonexistent.pem"],
         "--rsa-public-key-path /nonexistent.pem: not a valid RSA public key"),
        (["-B", "127.0.0.1%lo"], "-B 127.0.0.1%lo: the %lo part is iperf3's --bind-dev"),
        (["-B", "::1"], "-B ::1: an IPv6 address, but the server 127.0.0.1 is IPv4"),
        (["-J", "--json"], "-J and --json: choose one"),
        (["--logfile", "x", "--json"], "--logfile goes with the text or -J"),
        (["--connect-timeout", "0"], "--connect-timeout must be 1..3600000 ms, got 0"),
        # session 21: a negative value is read as one, not as an option (-4/-6 had argparse
        # say `argument -t/--time: expected one argument`)
        (["-t", "-1"], "-t must be 0 (until Ctrl-C, as iperf3) or 0 < T <= 86400 s, got -1"),
        (["-O", "-1"], "-O must be 0..60 s (iperf3's bound), got -1"),
        (["-P", "-2"], "-P must be 1..128 (iperf3's maximum), got -2"),
        (["-l", "-1"], "-l -1: block size too large (maximum = 1048576 bytes), as iperf3"),
        (["-l", "2M"], "-l 2097152: block size too large (maximum = 1048576 bytes)"),
    ],
)  # fmt: skip
def test_refused_in_one_line(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IPERF3_PASSWORD", raising=False)
    if "/nonexistent.pem" in argv:
        monkeypatch.setenv("IPERF3_PASSWORD", "pw")
    args = args_of("-t", "1", *argv)
    with pytest.raises(RunError) as e:
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "argv", [["-S", "0"], ["-S", "0x0"], ["-S", "00"], ["--dscp", "0"], ["--dscp", "CS0"]]
)
def test_a_zero_tos_is_iperf3s_default(argv: list[str]) -> None:
    """-S 0, --dscp 0/cs0: native 3.12 sets no IP_TOS then and tells its server none (its
    -J's `tos` 0), so they run as without them (session 28; were refused); -S 16 is."""
    assert run_throughput.refused(args_of("-t", "1", *argv)) is None
    assert run_throughput.refused(args_of("-t", "1", argv[0], "16")) is not None


def test_help_documents_every_new_option() -> None:
    p = argparse.ArgumentParser(prog="t", formatter_class=argparse.RawDescriptionHelpFormatter)
    run_throughput.configure(p)
    text = p.format_help() + run_throughput.EPILOG
    for opt in ("-J", "--format", "--title", "--timestamps", "--forceflush", "--logfile",
                "--get-server-output", "--extra-data", "--connect-timeout", "--version4",
                "--version6", "--bind", "--repeating-payload", "--dscp", "--flowlabel",
                "--dont-fragment", "--affinity", "--file", "--username",
                "--rsa-public-key-path", "-V"):  # fmt: skip
        assert opt in text, opt


@pytest.mark.parametrize(("n", "want"), [("300000", 300000), ("1M", 1 << 20), ("100K", 102400)])
def test_small_n_runs_iperf3s_test(n: str, want: int) -> None:
    """-n below 2M (iperf3 takes any): iperf3's test and lines, as with -P (was: `size must
    be 2M..4G`, exit 2: the paper's transfer does not time its first MiB)."""
    args = args_of("-n", n)
    assert args.bytes == want and run_throughput.timed(args)
    assert not run_throughput.timed(args_of("-n", "2M"))


@pytest.mark.parametrize("n", ["5G", "-1"])
def test_n_out_of_range_is_one_line(n: str, capsys: pytest.CaptureFixture[str]) -> None:
    """(`-n 0` was a case here until session 29: iperf3 3.12 runs it as no -n.)"""
    with pytest.raises(SystemExit) as e:
        args_of("-n", n)
    assert e.value.code == 2
    assert f"-n must be 0..4G bytes (0: none), got {n}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("words", "seconds"), [(["-n", "0"], 10), (["-k", "0"], 10), (["-n", "0", "-t", "1"], 1)]
)
def test_a_zero_count_is_no_count_as_iperf3(
    words: list[str], seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """iperf3 3.12 reads `-n 0` and `-k 0` as no limit: its test runs -t's default 10 s,
    and `-n 0 -t 1` one second, no second end condition (measured: exit 0, 10 and 1
    intervals). Ours refused both (`-n must be 1..4G bytes`, `-k must be positive`)."""
    from packetlab.measure import throughput_timed

    specs: list[Any] = []

    class Seen(throughput_timed.TimedSpec):
        def check(self) -> None:
            super().check()
            specs.append(self)

    monkeypatch.setattr(throughput_timed, "TimedSpec", Seen)
    args = args_of(*words)
    assert run_throughput.timed(args)
    run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    (spec,) = specs
    assert (spec.nbytes, spec.blocks, spec.seconds) == (None, None, seconds)


def test_udp_block_over_the_mss_is_iperf3s_warning() -> None:
    """A UDP test's -l over the control connection's MSS: iperf3 3.12's line (native's
    on loopback, -u -l 40000); none at or below the MSS, over TCP, or with the MSS not
    known (an endpoint without SKT_TCPINFO: iperf3's 0)."""
    udp = {**CONNECTED, "protocol": "udp", "length": 40000}
    assert run_throughput.udp_mss_warning(udp) == (
        "warning: UDP block size 40000 exceeds TCP MSS 32768, may result in fragmentation / drops"
    )
    assert run_throughput.udp_mss_warning({**udp, "length": 32768}) is None
    assert run_throughput.udp_mss_warning({**udp, "tcp_mss": 0}) is None
    assert run_throughput.udp_mss_warning({**udp, "protocol": "tcp"}) is None


def test_the_host_as_typed() -> None:
    """`-c localhost`: iperf3 3.12 prints `Connecting to host localhost, port 5201`,
    `Reverse mode, remote host localhost is sending` and -J's `connecting_to` the name
    (session 19; ours printed the address it resolved to)."""
    assert [run_throughput.typed_host(t) for t in
            ("localhost", "localhost:5202", "[::1]:5202", "::1", "10.0.0.1")] == [
        "localhost", "localhost", "::1", "::1", "10.0.0.1"]  # fmt: skip
    named = {**CONNECTED, "host": "localhost", "direction": "download"}
    got = lines(args_of("-t", "1"), named)
    assert got[:2] == ["Connecting to host localhost, port 15216",
                       "Reverse mode, remote host localhost is sending"]  # fmt: skip
    doc = json.loads("\n".join(lines(args_of("-J"), named, {**RESULT, "host": "localhost"})))
    assert doc["start"]["connecting_to"] == {"host": "localhost", "port": 15216}
