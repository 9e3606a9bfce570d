"""scamper's warts binary format for a traceroute, an MDA run (tracelb), a ping and an
alias run (dealias): sans-IO, pure functions over the records.

Researchers process traceroute data with scamper's tools (``sc_warts2json``,
``sc_warts2text``, ``sc_wartsdump``, ``sc_analysis_dump``...), so `pktlab run traceroute
--warts FILE` writes what ``scamper -O warts`` writes for one ``trace``: a list record, a
cycle start, the trace object, a cycle stop.

The layout, as scamper writes it (all integers big-endian):

* every object: ``uint16 magic 0x1205``, ``uint16 type``, ``uint32 length`` of the body;
* a set of optional fields: flag bytes (7 flags each, low bit first, the high bit set when
  another flag byte follows; a lone 0 byte for none), then ``uint16`` length of the fields,
  then each field whose flag is set, in flag order;
* an address: ``uint8 length``, ``uint8 type`` (1 IPv4, 2 IPv6), the bytes; or, for one
  already written in the same object, ``0`` and a ``uint32`` index (0 the first written);
* a trace: its fields, ``uint16`` count of hop records, each hop's fields, and a ``uint16``
  0 that ends the (absent) optional sections (PMTUD, last-ditch, doubletree);
* a tracelb: its fields (the node and link counts among them), each node's fields, then
  each link's fields followed by its ``hopc`` probe sets (a count, then each probe's
  fields followed by its replies' fields);
* a dealias: its fields (the probe count among them), the method's fields (radargun: the
  probe definition count), each probe definition's fields, then each probe's fields
  followed by its replies' fields. No counts outside the fields.

Unanswered probes have no hop record (as in scamper): the TTLs without one are the ``*``
lines of ``sc_warts2text``. `read_warts` reads what these modules write (and scamper's
traces), for tests and for checking a file without scamper's tools.

This module names them all; each record kind is a module of its own: `warts_format`
(the framing every record shares, the list and cycle records), `warts_trace`,
`warts_tracelb`, `warts_ping`, `warts_dealias`, and `warts_read` (the reader).
"""

from __future__ import annotations

from packetlab.measure.warts_dealias import (
    PrefixScan,
    alias_warts,
    dealias_object,
    prefixscan_object,
)
from packetlab.measure.warts_format import (
    OBJ_CYCLE_START,
    OBJ_CYCLE_STOP,
    OBJ_DEALIAS,
    OBJ_LIST,
    OBJ_PING,
    OBJ_TRACE,
    OBJ_TRACELB,
    WARTS_MAGIC,
    WartsError,
    cycle_start_object,
    cycle_stop_object,
    list_object,
)
from packetlab.measure.warts_ping import ping_object, ping_warts
from packetlab.measure.warts_read import WartsObject, read_warts
from packetlab.measure.warts_trace import (
    STOP_REASONS,
    TRACE_TYPES,
    trace_object,
    traceroute_warts,
)
from packetlab.measure.warts_tracelb import tracelb_object, tracelb_warts

__all__ = [
    "OBJ_CYCLE_START",
    "OBJ_CYCLE_STOP",
    "OBJ_DEALIAS",
    "OBJ_LIST",
    "OBJ_PING",
    "OBJ_TRACE",
    "OBJ_TRACELB",
    "STOP_REASONS",
    "TRACE_TYPES",
    "WARTS_MAGIC",
    "PrefixScan",
    "WartsError",
    "WartsObject",
    "alias_warts",
    "cycle_start_object",
    "cycle_stop_object",
    "dealias_object",
    "list_object",
    "ping_object",
    "ping_warts",
    "prefixscan_object",
    "read_warts",
    "trace_object",
    "tracelb_object",
    "tracelb_warts",
    "traceroute_warts",
]
