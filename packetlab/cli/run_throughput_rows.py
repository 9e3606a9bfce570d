"""`pktlab run throughput`'s text: iperf3 3.12's lines for each record (the connected
streams, each -i interval, the sender/receiver totals), and the fixed-size transfer's one
row. Loaded with the first record shown (not for `--help`)."""

from __future__ import annotations

from typing import Any

from packetlab.cli.run_command import Record
from packetlab.measure import iperf3

__all__ = ["connected_rows", "interval_rows", "row", "timed_rows"]


#: The text warns when more than this share of the timed sends left over 1 ms late.
LATE_SHARE = 0.05


def _tail(side: dict[str, Any], udp: bool, sender: bool) -> str:
    if not udp:
        return ""
    if sender:
        return iperf3.udp_tail(0.0, 0, side.get("packets", 0))
    return iperf3.udp_tail(side.get("jitter_ms", 0.0) / 1e3, side.get("lost", 0),
                           side.get("packets", 0))  # fmt: skip


def _tcp_tail(x: Record, sender: bool, cwnd: bool) -> str:
    """A TCP line's Retr (and Cwnd) columns, blank without the figures (a receiver)."""
    if not sender or "retransmits" not in x:
        return iperf3.NO_RETR
    return iperf3.retr_tail(x["retransmits"], x.get("snd_cwnd") if cwnd else None)


BIDIR_NOTE = ("# TX-C: sender the endpoint's stamps, receiver the iperf3 server's; "
              "RX-C: receiver the endpoint's stamps, sender the iperf3 server's")  # fmt: skip


def _roles(r: Record) -> list[tuple[str | None, list[Record]]]:
    """The streams of a record by role: --bidir's TX-C (the endpoint sends) then RX-C
    (it receives), as iperf3 lists them; otherwise one group without a role."""
    if r.get("direction") != "bidir" and not r.get("bidir"):
        return [(None, list(r["streams"]))]
    return [(role, [s for s in r["streams"] if s.get("role") == role]) for role in ("TX-C", "RX-C")]


def _label(ident: int | str, role: str | None) -> int | str:
    """iperf3's `[  5]`, with --bidir `[  5][TX-C]` (report_line adds the outer brackets)."""
    if role is None:
        return ident
    text = f"{ident:>3}" if isinstance(ident, int) else ident
    return f"{text}][{role}"


def _header(text: str, r: Record) -> str:
    return (
        text.replace("[ ID]", "[ ID][Role]")
        if r.get("direction") == "bidir" or r.get("bidir")
        else text
    )


def interval_rows(r: Record, fmt: str = "a") -> str:
    """iperf3's -i lines: one per stream, [SUM] with several, a header before the first
    (--bidir: the sending streams, then the receiving ones, each line with its role).
    TCP: Retr and Cwnd for a sender whose endpoint samples TCP_INFO (--bidir: the TX-C
    lines, the RX-C ones blank, as iperf3 3.12); when receiving (-R) iperf3 3.12 leaves
    their 18 columns blank under a header without them."""
    udp, lines = r["protocol"] == "udp", []
    bidir = r.get("direction") == "bidir" or bool(r.get("bidir"))
    sampled = any("retransmits" in s for s in r["streams"])
    # a TCP upload (or --bidir) from an endpoint without SKT_TCPINFO: no columns
    cols = not udp and (sampled if bidir else not r["sender"] or sampled)
    if r["start"] == 0 and (r.get("omitted") or not r.get("after_omit")):
        head = iperf3.UDP_SENDER_HEADER if r["sender"] else iperf3.UDP_HEADER
        # -R: the receiver's header, but over a line shown after the server's results
        # (the only one) a sender's with Retr and Cwnd when it has them, as 3.12 prints
        retr = r["sender"] or bidir or r.get("sender_has_retransmits") == 1
        tcp = iperf3.TCP_HEADER if cols and retr else iperf3.HEADER
        lines.append(_header(head if udp else tcp, r))
    several = False
    for role, streams in _roles(r):
        omitted = ""  # iperf3 marks -O's pre-test intervals, after its columns' padding
        sends = r["sender"] if role is None else role == "TX-C"
        # a UDP sender's count: under --bidir's Jitter columns 10 spaces further right
        pad = " " * 10 if bidir else ""
        for s in streams:
            tail = f"  {pad}{s['packets']}  " if udp else ""
            if cols:
                tail = _tcp_tail(s, sends, cwnd=True)
            if "jitter_ms" in s:  # iperf3 3.12: two spaces after, as before "receiver"
                tail = iperf3.udp_tail(s["jitter_ms"] / 1e3, s["lost"], s["total"]) + "  "
            if r.get("omitted"):
                omitted = ("" if tail.endswith("  ") else "  " if udp else " " * 18) + "(omitted)"
            lines.append(iperf3.report_line(_label(s["id"], role), r["start"], r["end"],
                                            s["bytes"], r["seconds"], tail + omitted,
                                            fmt))  # fmt: skip
        if len(streams) > 1:
            several = True
            tail = f"  {pad}{sum(s['packets'] for s in streams)}  " if udp else ""
            if cols:
                total = r["sum"]
                if role is not None:  # --bidir: the role's streams (the record's sum is all)
                    got = [s["retransmits"] for s in streams if "retransmits" in s]
                    total = {"retransmits": sum(got)} if len(got) == len(streams) else {}
                tail = _tcp_tail(total, sends, cwnd=False)
            if udp and "jitter_ms" in streams[0]:  # iperf3: the streams' mean jitter
                jitter = sum(s["jitter_ms"] for s in streams) / len(streams) / 1e3
                tail = iperf3.udp_tail(jitter, sum(s["lost"] for s in streams),
                                       sum(s["total"] for s in streams)) + "  "  # fmt: skip
            lines.append(iperf3.report_line(_label("SUM", role), r["start"], r["end"],
                                            sum(s["bytes"] for s in streams), r["seconds"],
                                            tail + omitted, fmt))  # fmt: skip
    if several:
        lines.append(iperf3.SEPARATOR)
    return "\n".join(lines)


def timed_rows(r: Record, fmt: str = "a", verbose: bool = False) -> str:
    """iperf3's closing block: sender and receiver lines per stream and [SUM], and which
    of them are the endpoint's (--bidir: the sending streams' block, then the receiving
    ones'); `fmt` iperf3's -f, `verbose` its -V lines."""
    udp = r["protocol"] == "udp"
    shown = r["parallel"] > 1  # the intervals (one with -i 0) ended with a separator
    lines = [] if shown else [iperf3.SEPARATOR]
    if verbose:
        lines.append("Test Complete. Summary Results:")
    retr = not udp and any("retransmits" in s["sender"] for s in r["streams"])
    lines.append(
        _header(iperf3.UDP_HEADER if udp else iperf3.TCP_TOTAL_HEADER if retr else iperf3.HEADER, r)
    )

    def two(label: int | str, s: Record) -> None:
        for side in ("sender", "receiver"):
            x = s[side]
            if udp:
                tail = _tail(x, udp, side == "sender") + f"  {side}"
            else:
                tail = _tcp_tail(x, side == "sender", cwnd=False) + side
            # each side's own span ends its line, as 3.12 prints sender_time and
            # receiver_time (the server's end_time from its results): a server stalled
            # past T shows `0.00-9.52 sec` and the rate over it, not the test's 4.00
            end = x["seconds"] or r["seconds"] or 0.0
            lines.append(iperf3.report_line(label, 0.0, end, x["bytes"],
                                            x["seconds"] or 0.0, tail, fmt))  # fmt: skip

    for role, streams in _roles(r):
        for s in streams:
            two(_label(s["id"], role), s)
        if len(streams) > 1:
            two(_label("SUM", role), r["sum_reverse"] if role == "RX-C" else r["sum"])
    if verbose:
        lines += verbose_congestion(r)
    if r.get("bidir"):
        lines.append(BIDIR_NOTE)
    else:
        theirs = "sender" if r["endpoint"] == "receiver" else "receiver"
        lines.append(f"# {r['endpoint']}: the endpoint's stamps; {theirs}: the iperf3 server's")
    # (not when the rate was not met at all: pace_warning's stderr line says why, and this
    # note's cause and advice are wrong then: `-b 30M` through a 20 Mbit/s link, session 29)
    if r.get("late_sends", 0) > LATE_SHARE * r.get("tagged_sends", 0) and not pace_warning(r):
        lines.append(
            f"# warning: {r['late_sends']} of {r['tagged_sends']} timed sends left over 1 ms "
            f"late (up to {r['late_max_ms']:g} ms): the sends did not reach the endpoint in "
            "time for -b; a larger -l needs fewer of them"
        )
    return "\n".join(lines)


def verbose_congestion(r: Record) -> list[str]:
    """iperf3 -V's `snd_tcp_congestion`/`rcv_tcp_congestion` lines: only the server's (the
    endpoint's congestion control is not reported through PacketLab), as iperf3 prints
    only the ones it knows."""
    cc = r.get("server_info", {}).get("congestion_used")
    if r["protocol"] != "tcp" or cc is None or r.get("direction") == "bidir":
        return []
    return [f"{'rcv' if r['direction'] == 'upload' else 'snd'}_tcp_congestion {cc}"]


def starting_test(spec: Record) -> str:
    """iperf3 -V's `Starting Test: ...` line (iperf_locale.c's test_start_time, _bytes,
    _blocks), from the parameters in the result record or the options."""
    head = (
        f"Starting Test: protocol: {spec['protocol'].upper()}, {spec['parallel']} streams, "
        f"{spec['length']} byte blocks, omitting {spec.get('omit', 0)} seconds, "
    )
    if spec.get("bytes_limit"):
        return head + f"{spec['bytes_limit']} bytes to send, tos 0"
    if spec.get("blocks"):
        return head + f"{spec['blocks']} blocks to send, tos 0"
    t = spec.get("time")
    seconds = 10 if t is None else max(1, int(t + 0.999)) if t else 0  # -t 0: "0 second"
    return head + f"{seconds} second test, tos 0"


def connected_rows(r: Record, verbose: bool = False) -> str:
    """iperf3's opening lines (the local side is the endpoint's); `verbose`: iperf3 -V's
    too (Control connection MSS, Setting UDP block size, Time, Cookie, TCP MSS, Target
    Bitrate, Starting Test: the record has the parameters)."""
    lines = [f"Connecting to host {r.get('host', r['server'])}, port {r['port']}"]
    if verbose:
        import email.utils

        lines.insert(0, f"Time: {email.utils.formatdate(usegmt=True)}")
        if r.get("udp_block_chosen"):  # UDP without -l: 3.12 says what it took
            lines.insert(0, f"Setting UDP block size to {r['length']}")
        if r.get("tcp_mss"):  # the endpoint's TCP_INFO of the control connection
            lines.insert(0, f"Control connection MSS {r['tcp_mss']}")
    if r["direction"] == "download":
        lines.append(f"Reverse mode, remote host {r.get('host', r['server'])} is sending")
    if verbose:
        lines.append(f"      Cookie: {r.get('cookie', '')}")
        if r["protocol"] == "tcp" and r.get("tcp_mss"):
            lines.append(f"      TCP MSS: {r['tcp_mss']} (default)")
        if r.get("bitrate"):
            lines.append(f"      Target Bitrate: {int(r['bitrate'])}")
    for s in r["streams"]:
        lines.append(
            f"[{s['id']:>3}] local {s['local_host']} port {s['local_port']} connected to "
            f"{s['remote_host']} port {s['remote_port']}"
        )
    if verbose:
        lines.append(starting_test(r))
    return "\n".join(lines)


def row(r: Record) -> str | None:
    if r["type"] == "connected":
        return connected_rows(r)
    if r["type"] == "interval":
        return interval_rows(r)
    if r["type"] == "throughput" and "protocol" in r and "error" not in r:
        return timed_rows(r)
    if r["type"] == "summary":
        mean = r.get("mbit_s_mean")
        return (
            f"# {r['ok']} of {r['runs']} runs, mean {mean:.1f} Mbit/s"
            if mean
            else f"# {r['ok']} of {r['runs']} runs"
        )
    if "error" in r:
        size = (r["bytes"] if r["bytes"] is not None
                else f"{r['blocks']} blocks" if r.get("blocks") is not None
                else f"{r['time'] or 10:g} s")  # fmt: skip
        return f"{r['direction']:<9} {size:>10}  error: {r['error']}"
    extra = f"  (sender {r['sender_mbit_s']:.1f})" if r.get("sender_mbit_s") else ""
    return (
        f"{r['direction']:<9} {r['bytes']:>10}  {r['seconds']:>8.4f} s  "
        f"{r['mbit_s']:>10.1f} Mbit/s  [{r['method']}; "
        f"iperf3 server {r['server_mbit_s']:.1f}]{extra}"
    )


#: A sending stream below this share of -b's rate fell behind (on time it sends at least
#: the rate: its first block goes at 0, and each next one at most one gap later).
PACE_SHARE = 0.9


def pace_warning(r: Record) -> str | None:
    """A paced upload (-b, UDP; --bidir's TX-C) whose endpoint sent below the rate asked:
    its sends fell behind their schedule, the endpoint (its CPU, or a TCP socket the path
    fills: `-b 30M` through a 20 Mbit/s link) cannot send that fast (native
    iperf3 sends what its socket takes, as ours then does, and says nothing; the figures
    say it, the warning says why). One line for stderr with the slowest stream's rate; a
    failed or stopped test has none."""
    asked = r.get("bitrate")
    if not asked or r.get("error") or r.get("stopped"):
        return None
    upload = r.get("direction") == "upload"
    sent = [
        s["sender"]["bytes"] * 8 / s["sender"]["seconds"]
        for s in r.get("streams", [])
        if (upload or s.get("role") == "TX-C") and s["sender"].get("seconds")
    ]
    if not sent or min(sent) >= PACE_SHARE * asked:
        return None
    each = " a stream" if r.get("parallel", 1) > 1 else ""
    want, got = iperf3.unit(asked, "bits").strip(), iperf3.unit(min(sent), "bits").strip()
    return (
        f"warning: -b {want}/sec{each} was not met: the endpoint sent {got}/sec{each} "
        f"({min(sent) / asked:.0%}; its sends fell behind their schedule: its socket or the "
        "path took them no faster)"
    )
