"""Result records for traceroute and ping, JSON-serialisable, and traceroute-style text.

The same records hold PacketLab results and native-tool results (`packetlab.measure.native`),
so the two can be compared field by field. Every result says where its timestamps came from
(``send_stamp``/``recv_stamp``, see `Stamp`), because an RTT from user-space clocks and one
from kernel timestamps are not the same measurement.

Addresses are strings (JSON-friendly); RTTs are microseconds as floats; absolute times are
``CLOCK_REALTIME`` nanoseconds, like every time in the PacketLab protocol.

The records live in modules of their own, all importable from here: `records_fields`
(`Stamp`, `RecordError`), `records_traceroute`, `records_ping`.
"""

from __future__ import annotations

from packetlab.measure.records_fields import RecordError, Stamp, rtt_us_between
from packetlab.measure.records_ping import (
    PING_TIMING_MIN_SIZE,
    PingError,
    PingReply,
    PingResult,
    RttStats,
    format_ping,
    ping_line,
    ping_pipe,
    ping_statistics,
    ping_time,
)
from packetlab.measure.records_traceroute import (
    Hop,
    TracerouteResult,
    back_hops,
    format_traceroute,
    hop_annotation,
    hops_by_ttl,
    path_jaccard,
    tcp_flag_names,
    traceroute_header,
    traceroute_jsonl,
    traceroute_line,
)

__all__ = [
    "PING_TIMING_MIN_SIZE",
    "Hop",
    "PingError",
    "PingReply",
    "PingResult",
    "RecordError",
    "RttStats",
    "Stamp",
    "TracerouteResult",
    "back_hops",
    "format_ping",
    "format_traceroute",
    "hop_annotation",
    "hops_by_ttl",
    "path_jaccard",
    "ping_line",
    "ping_pipe",
    "ping_statistics",
    "ping_time",
    "rtt_us_between",
    "tcp_flag_names",
    "traceroute_header",
    "traceroute_jsonl",
    "traceroute_line",
]
