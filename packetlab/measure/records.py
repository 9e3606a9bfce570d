"""Result records for traceroute and ping, JSON-serialisable, and traceroute-style text.

The same records hold PacketLab results and native-tool results (`packetlab.measure.native`),
so the two can be compared field by field. Every result says where its timestamps came from
(``send_stamp``/``recv_stamp``, see `Stamp`), because an RTT from user-space clocks and one
from kernel timestamps are not the same measurement.

Addresses are strings (JSON-friendly); RTTs are microseconds as floats; absolute times are
``CLOCK_REALTIME`` nanoseconds, like every time in the PacketLab protocol.

This module is the records' documented import path (docs/measure.md's Records,
docs/traceroute.md's Library) and only that: the records live in modules of their own,
`records_fields` (`Stamp`, `RecordError`), `records_traceroute` and `records_ping`, and
every name of theirs (their `__all__`) is importable from here. Code in this package
imports from those modules, so that a ping does not load traceroute's records nor a
traceroute ping's.
"""

from __future__ import annotations

from packetlab.measure import records_fields, records_ping, records_traceroute
from packetlab.measure.records_fields import *  # noqa: F403
from packetlab.measure.records_ping import *  # noqa: F403
from packetlab.measure.records_traceroute import *  # noqa: F403

__all__ = [*records_fields.__all__, *records_ping.__all__, *records_traceroute.__all__]
