"""iperf3's `-J` document (3.12: `start`, `intervals`, `end`, with its keys and nesting)
from the records of one `timed_test`: its `connected` record, its intervals and its
result (`TimedResult.to_dict()`). The values are ours (endpoint stamps); what PacketLab
cannot know of the endpoint (its CPU load, socket buffers, congestion control) is 0
or "unknown", the keys are kept so that a parser of
native `iperf3 -J` finds every one it reads. `pktlab run throughput -J` prints it.
"""

from __future__ import annotations

import email.utils
import platform
from typing import Any

__all__ = ["BUFFER_KEYS", "document", "printed"]

#: 3.12 adds these to `start` as each data connection connects
BUFFER_KEYS = ("sock_bufsize", "sndbuf_actual", "rcvbuf_actual")

Record = dict[str, Any]

_TCP_INTERVAL = ("retransmits", "snd_cwnd", "snd_wnd", "rtt", "rttvar", "pmtu")
_TCP_SENDER = ("retransmits", "max_snd_cwnd", "max_snd_wnd", "max_rtt", "min_rtt", "mean_rtt")


def _span(start: float, end: float, seconds: float, nbytes: int) -> Record:
    return {"start": start, "end": end, "seconds": seconds, "bytes": nbytes,
            "bits_per_second": nbytes * 8 / seconds if seconds > 0 else 0.0}  # fmt: skip


def _udp_figures(jitter_ms: float, lost: int, packets: int) -> Record:
    pct = 100.0 * lost / packets if packets else 0
    return {"jitter_ms": jitter_ms, "lost_packets": lost, "packets": packets, "lost_percent": pct}


def _sender(role: str | None, r: Record) -> bool:
    """The client's (the endpoint's) side sends this stream: iperf3's "sender" flag."""
    if role is not None:
        return role == "TX-C"
    return r.get("direction") == "upload"


def _interval_stream(st: Record, rec: Record, udp: bool) -> Record:
    sends = _sender(st.get("role"), rec)
    out = {"socket": st["id"], **_span(rec["start"], rec["end"], rec["seconds"], st["bytes"])}
    if udp and "jitter_ms" in st:
        out.update(_udp_figures(st["jitter_ms"], st["lost"], st["total"]))
    elif udp:
        out["packets"] = st["packets"]
    elif sends:
        out.update({k: st.get(k, 0) for k in _TCP_INTERVAL})
    out.update(omitted=bool(rec.get("omitted")), sender=sends)
    return out


def _interval_sum(streams: list[Record], rec: Record, udp: bool, sends: bool) -> Record:
    nbytes = sum(s["bytes"] for s in streams)
    out = _span(rec["start"], rec["end"], rec["seconds"], nbytes)
    if udp and streams and "jitter_ms" in streams[0]:
        jitter = sum(s["jitter_ms"] for s in streams) / len(streams)
        out.update(_udp_figures(jitter, sum(s["lost_packets"] for s in streams),
                                sum(s["packets"] for s in streams)))  # fmt: skip
    elif udp:
        out["packets"] = sum(s["packets"] for s in streams)
    elif sends:
        out["retransmits"] = sum(s["retransmits"] for s in streams)
    out.update(omitted=bool(rec.get("omitted")), sender=sends)
    return out


def interval(rec: Record) -> Record:
    """One `intervals[]` entry: `streams` and `sum` (--bidir: `sum` the sending streams',
    `sum_bidir_reverse` the receiving ones')."""
    udp = rec["protocol"] == "udp"
    streams = [_interval_stream(st, rec, udp) for st in rec["streams"]]
    if rec.get("direction") != "bidir":
        return {"streams": streams, "sum": _interval_sum(streams, rec, udp, _sender(None, rec))}
    tx = [s for s in streams if s["sender"]]
    rx = [s for s in streams if not s["sender"]]
    return {"streams": streams, "sum": _interval_sum(tx, rec, udp, True),
            "sum_bidir_reverse": _interval_sum(rx, rec, udp, False)}  # fmt: skip


def _side(x: Record, sid: int, sends: bool, tcp_sender: bool) -> Record:
    seconds = x.get("seconds") or 0.0
    out = {"socket": sid, **_span(0, seconds, seconds, x["bytes"])}
    if tcp_sender:
        out.update({k: max(x.get(k, 0), 0) for k in _TCP_SENDER})
    out["sender"] = sends
    return out


def _udp_stream(st: Record, sends: bool) -> Record:
    """iperf3's `end.streams[].udp`: our side's bytes, the receiver's loss and jitter."""
    mine, rx = (st["sender"], st["receiver"]) if sends else (st["receiver"], st["receiver"])
    out = {"socket": st["id"], **_span(0, mine["seconds"] or 0.0, mine["seconds"] or 0.0,
                                       mine["bytes"])}  # fmt: skip
    out.update(_udp_figures(rx.get("jitter_ms", 0.0), rx.get("lost", 0), rx.get("packets", 0)))
    out.update(out_of_order=rx.get("out_of_order", 0), sender=sends)
    return out


def _sum(sides: list[Record], udp: bool, sends: bool, *, retr: bool, jitter: bool) -> Record:
    seconds = max((s["seconds"] for s in sides), default=0.0)
    out = _span(0, seconds, seconds, sum(s["bytes"] for s in sides))
    if udp:
        js: list[float] = [s.get("jitter_ms", 0.0) for s in sides]
        lost: int = sum(int(s.get("lost", 0)) for s in sides)
        packets: int = sum(int(s.get("packets", 0)) for s in sides)
        out.update(_udp_figures(sum(js) / len(js) if jitter and js else 0, lost, packets))
    elif retr:
        out["retransmits"] = sum(max(s.get("retransmits", 0), 0) for s in sides)
    out["sender"] = sends
    return out


def end(r: Record) -> Record:
    """`end`: per stream sender/receiver (UDP: `udp`), `sum_sent`, `sum_received` (UDP also
    `sum`; --bidir the `_bidir_reverse` pair), CPU and congestion control."""
    udp = r["protocol"] == "udp"
    bidir = r.get("direction") == "bidir"
    streams: list[Record] = []
    groups: dict[bool, list[Record]] = {True: [], False: []}
    for st in r["streams"]:
        sends = _sender(st.get("role"), r)
        groups[sends].append(st)
        if udp:
            streams.append({"udp": _udp_stream(st, sends)})
            continue
        streams.append({"sender": _side(st["sender"], st["id"], sends, True),
                        "receiver": _side(st["receiver"], st["id"], sends, False)})  # fmt: skip
    out: Record = {"streams": streams}
    # --bidir: the sending streams' sums, then the receiving ones' (iperf3's _bidir_reverse)
    parts: list[tuple[list[Record], bool, str]] = (
        [(groups[True], True, ""), (groups[False], False, "_bidir_reverse")]
        if bidir
        else [(r["streams"], _sender(None, r), "")]
    )
    for group, flag, suffix in parts:
        tx = [s["sender"] for s in group]
        rx = [s["receiver"] for s in group]
        if udp:  # iperf3's UDP `sum` (the receiver's loss and jitter), first of each group
            out["sum" + suffix] = _sum(rx, udp, flag, retr=False, jitter=True)
        # iperf3 3.12 flags UDP's sum_sent as sent and sum_received as not (both ways)
        out["sum_sent" + suffix] = _sum(tx, udp, flag or udp, retr=True, jitter=False)
        out["sum_received" + suffix] = _sum(rx, udp, flag and not udp, retr=False, jitter=True)
    info = r.get("server_info", {})
    out["cpu_utilization_percent"] = {
        "host_total": 0, "host_user": 0, "host_system": 0,  # the endpoint's: not known
        "remote_total": info.get("cpu_util_total", 0),
        "remote_user": info.get("cpu_util_user", 0),
        "remote_system": info.get("cpu_util_system", 0),
    }  # fmt: skip
    if not udp:
        theirs = info.get("congestion_used", "unknown")
        ours = "unknown"  # PacketLab does not report the endpoint's congestion control
        upload = r.get("direction") in ("upload", "bidir")
        out["sender_tcp_congestion"] = ours if upload else theirs
        out["receiver_tcp_congestion"] = theirs if upload else ours
    return out


def start(connected: Record | None, r: Record, started: float, version: str) -> Record:
    """`start`: the streams' addresses, the test's parameters (as iperf3 sent them)."""
    udp = r["protocol"] == "udp"
    rate = int(r.get("bitrate") or 0)
    streams = connected["streams"] if connected else []
    system = f"PacketLab endpoint (controller: {' '.join(platform.uname()[:3])})"
    if connected is None:  # never connected: 3.12 adds the rest once it is
        return {"connected": [], "version": version, "system_info": system}
    out: Record = {
        "connected": [
            {
                "socket": s["id"],
                "local_host": s["local_host"],
                "local_port": s["local_port"],
                "remote_host": s["remote_host"],
                "remote_port": s["remote_port"],
            }
            for s in streams
        ],
        "version": version,
        "system_info": system,
        "timestamp": {
            "time": email.utils.formatdate(started, usegmt=True),
            "timesecs": int(started),
        },
        "connecting_to": {"host": r.get("host", r["server"]), "port": r["port"]},
        "cookie": connected.get("cookie", ""),
    }
    if not udp:
        # the control connection's MSS from the endpoint's TCP_INFO (0 without it)
        out["tcp_mss_default"] = connected.get("tcp_mss", 0)
    out.update(target_bitrate=rate, sock_bufsize=0, sndbuf_actual=0, rcvbuf_actual=0)
    seconds = r.get("time")
    out["test_start"] = {
        "protocol": "UDP" if udp else "TCP",
        "num_streams": r["parallel"],
        "blksize": r.get("length") or 0,
        "omit": r.get("omit", 0),
        "duration": 0 if not seconds else max(1, int(seconds + 0.999)),  # -t 0: 0
        "bytes": r.get("bytes_limit") or 0,
        "blocks": r.get("blocks") or 0,
        "reverse": int(r.get("direction") == "download"),
        "tos": 0,
        "target_bitrate": rate,
    }
    return out


def document(
    connected: Record | None,
    intervals: list[Record],
    r: Record,
    started: float,
    version: str,
    title: str | None = None,
) -> Record:
    """The whole `-J` document of one test (`r`: its result record; with an `error`, iperf3's
    document of a failed test: what was known, and `error`); `title` -T's, as iperf3
    3.12 puts it after `end`."""
    doc: Record = {"start": start(connected, r, started, version)}
    doc["intervals"] = [interval(i) for i in intervals]
    doc["end"] = {} if "error" in r else end(r)
    # the error before the title and the rest: 3.12's iperf_errexit adds it, then
    # iperf_json_finish the title, extra_data and the server's output (a Ctrl-C too)
    if "error" in r:  # iperf3's words for it, where it has its own
        doc["error"] = r.get("iperf3_error", r["error"])
    elif r.get("stopped"):  # Ctrl-C: as 3.12's document of an interrupted test
        from packetlab.measure.iperf3 import INTERRUPTED

        doc["error"] = INTERRUPTED
    if title is not None:
        doc["title"] = title
    if "extra_data" in r:
        doc["extra_data"] = r["extra_data"]
    for key in ("server_output_text", "server_output_json"):
        if key in r:
            doc[key] = r[key]
    return doc


def printed(doc: Record) -> str:
    """`doc` as iperf3 3.12 prints it (cJSON's layout), `start` with `sock_bufsize`,
    `sndbuf_actual`, `rcvbuf_actual` once per data connection, as 3.12 adds them as
    each connects (`-P 3`: three times; a parser keeps one)."""
    from packetlab.measure.throughput_cjson import Pairs, dumps

    head = doc.get("start", {})
    again = max(0, len(head.get("connected", [])) - 1)
    items: list[tuple[str, Any]] = []
    for k, v in head.items():
        items.append((k, v))
        if k == "rcvbuf_actual":
            items += [(b, head[b]) for _ in range(again) for b in BUFFER_KEYS]
    return dumps({**doc, "start": Pairs(items)})
