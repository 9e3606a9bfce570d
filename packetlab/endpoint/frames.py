"""Whole frames for the messages the endpoint sends most, one `struct` call each.

These are the hot paths (one per nsend, one per received chunk). Each packer is generated
from the message's declaration in ``packetlab.wire.messages`` by
``packetlab.wire.codegen.derive_packer`` (header folded into the first `struct` call, no
checks: the session passes values it made), so there is no second layout to keep in step;
the unit tests compare every packer with ``packetlab.wire.encode`` of the same message.
"""

from __future__ import annotations

from packetlab.wire.codegen import derive_packer
from packetlab.wire.messages import Mdata, Ndata, Ndrop, Nstat, Ntag, Result

__all__ = [
    "RESULT_SUCCESS",
    "mdata",
    "ndata_tcp",
    "ndata_udp",
    "ndrop",
    "nstat_code",
    "nstat_established",
    "ntag",
    "ntag_error",
    "result",
]

_HEAD = ("sktid", "family", "proto")

RESULT_SUCCESS: bytes = derive_packer(Result)()
_result_error = derive_packer(Result, "errid")

#: mdata(addr, data)
mdata = derive_packer(Mdata, "addr", "data")
#: ntag(sktid, tag, time): sent; ntag_error(sktid, tag, time, errid): not sent
ntag = derive_packer(Ntag, "sktid", "tag", "time")
ntag_error = derive_packer(Ntag, "sktid", "tag", "time", "errid")
#: nstat_code(sktid, family, proto, time, code)
nstat_code = derive_packer(Nstat, *_HEAD, "time", "code")
#: nstat_established(sktid, family, proto, time, raddr, rport)
nstat_established = derive_packer(Nstat, *_HEAD, "time", "raddr", "rport")
#: ndata_tcp(sktid, family, proto, time, data): TCP and captured packets (no address)
ndata_tcp = derive_packer(Ndata, *_HEAD, "time", "data")
#: ndata_udp(sktid, family, proto, time, raddr, rport, data)
ndata_udp = derive_packer(Ndata, *_HEAD, "time", "raddr", "rport", "data")
#: ndrop(sktid, family, proto, tfirst, tlast, unitcnt, bytecnt)
ndrop = derive_packer(Ndrop, *_HEAD, "tfirst", "tlast", "unitcnt", "bytecnt")


def result(errid: int) -> bytes:
    """``result``: empty body for SUCCESS, else the u16 errid (the session keeps one per
    status, so this is not a hot path)."""
    return RESULT_SUCCESS if errid == 0 else _result_error(errid)
