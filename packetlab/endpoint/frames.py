"""Whole frames for the messages the endpoint sends most, packed with one struct call.

These are the hot paths (one per nsend, one per received chunk). Each builder's bytes are
checked against ``packetlab.wire.encode`` of the same message in the unit tests, so the
layout stays the one declared in ``packetlab.wire.messages``.
"""

from __future__ import annotations

import struct

from packetlab.wire.constants import MsgType

__all__ = [
    "RESULT_SUCCESS",
    "mdata",
    "ndata_tcp",
    "ndata_udp",
    "ndrop",
    "nstat_code",
    "nstat_established",
    "ntag",
    "result",
]

_T_RESULT = int(MsgType.RESULT) << 24
_T_MDATA = int(MsgType.MDATA) << 24
_T_NTAG = int(MsgType.NTAG) << 24
_T_NSTAT = int(MsgType.NSTAT) << 24
_T_NDATA = int(MsgType.NDATA) << 24
_T_NDROP = int(MsgType.NDROP) << 24

RESULT_SUCCESS = struct.pack(">I", _T_RESULT)
_RESULT = struct.Struct(">IH").pack
_MDATA = struct.Struct(">II").pack
_NTAG = struct.Struct(">IBHQ").pack
_NTAG_ERR = struct.Struct(">IBHQH").pack
_NSTAT_CODE = struct.Struct(">IBBBQB").pack
_NSTAT_HDR = struct.Struct(">IBBBQ").pack
_NDATA_HDR = struct.Struct(">IBBBQ").pack
_NDROP = struct.Struct(">IBBBQQII").pack
_PORT = struct.Struct(">H").pack


def result(errid: int) -> bytes:
    """``result``: empty body for SUCCESS, else the u16 errid."""
    return RESULT_SUCCESS if errid == 0 else _RESULT(_T_RESULT | 2, errid)


def mdata(addr: int, data: bytes) -> bytes:
    return _MDATA(_T_MDATA | (4 + len(data)), addr) + data


def ntag(sktid: int, tag: int, time: int, errid: int = 0) -> bytes:
    if errid == 0:
        return _NTAG(_T_NTAG | 11, sktid, tag, time)
    return _NTAG_ERR(_T_NTAG | 13, sktid, tag, time, errid)


def nstat_code(sktid: int, family: int, proto: int, time: int, code: int) -> bytes:
    return _NSTAT_CODE(_T_NSTAT | 12, sktid, family, proto, time, code)


def nstat_established(
    sktid: int, family: int, proto: int, time: int, raddr: bytes, rport: int
) -> bytes:
    return (
        _NSTAT_HDR(_T_NSTAT | (13 + len(raddr)), sktid, family, proto, time) + raddr + _PORT(rport)
    )


def ndata_tcp(sktid: int, family: int, proto: int, time: int, data: bytes) -> bytes:
    return _NDATA_HDR(_T_NDATA | (11 + len(data)), sktid, family, proto, time) + data


def ndata_udp(
    sktid: int, family: int, proto: int, time: int, raddr: bytes, rport: int, data: bytes
) -> bytes:
    n = 13 + len(raddr) + len(data)
    return _NDATA_HDR(_T_NDATA | n, sktid, family, proto, time) + raddr + _PORT(rport) + data


def ndrop(
    sktid: int, family: int, proto: int, tfirst: int, tlast: int, unitcnt: int, bytecnt: int
) -> bytes:
    return _NDROP(_T_NDROP | 27, sktid, family, proto, tfirst, tlast, unitcnt, bytecnt)
