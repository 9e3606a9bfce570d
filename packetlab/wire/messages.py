"""Every PacketLab 1.1 message (PROTOCOL.md §1.2): a dataclass and its construct body.

The construct `Struct` next to each class is the declaration of the body layout; field
names are the spec's and equal the dataclass attribute names. `packetlab.wire.codec`
derives the fast encoder/decoder from these declarations; construct's own parse/build of
the same declarations is kept as the reference the fast path is tested against.

Addresses and other byte strings are `bytes`; ports, times and counters are `int`.
Optional parts (the UDP address of nsend/ndata, result's error fields, ...) are `None`
when absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import construct as c
from construct import this

from packetlab.wire.constants import (
    CHANNEL_MAX,
    KEYID_LEN,
    SNIKEY_MAX,
    MsgType,
    Proto,
    Status,
)
from packetlab.wire.nodes import BODYLEN, Addr, ChannelList, Cond, Rule

u8, u16, u32, u64 = c.Int8ub, c.Int16ub, c.Int32ub, c.Int64ub
UDP = int(Proto.UDP)
_SNIKEY_RE = re.compile(rb"[a-z0-9]{1,%d}\Z" % SNIKEY_MAX)


class Message:
    """Base of all messages. `TYPE` is the type code, `BODY` the construct declaration."""

    __slots__ = ()
    TYPE: ClassVar[MsgType]
    NAME: ClassVar[str]
    BODY: ClassVar[Any]

    def fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}  # type: ignore[attr-defined]


# The socket head most socket messages start with, and the UDP peer nsend/ndata carry.
_SKT_HEAD = ("sktid" / u8, "family" / u8, "proto" / u8)
_UDP_PEER = ("raddr" / c.If(this.proto == UDP, Addr), "rport" / c.If(this.proto == UDP, u16))


def _family_ok(family: int) -> bool:
    return family in (4, 6)


_FAMILY_RULE = Rule(_family_ok, "family must be 4 (IPv4) or 6 (IPv6)")


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class Cdata(Message):
    hint: bytes
    data: bytes
    TYPE = MsgType.CDATA
    BODY = c.Struct("hint" / c.Prefixed(u8, c.GreedyBytes), "data" / c.GreedyBytes)


@dataclass(slots=True)
class Start(Message):
    TYPE = MsgType.START
    BODY = c.Struct(c.Terminated)


@dataclass(slots=True)
class End(Message):
    TYPE = MsgType.END
    BODY = c.Struct(c.Terminated)


@dataclass(slots=True)
class Yield(Message):
    rhint: int
    TYPE = MsgType.YIELD
    BODY = c.Struct("rhint" / u64, c.Terminated)


@dataclass(slots=True)
class Cont(Message):
    TYPE = MsgType.CONT
    BODY = c.Struct(c.Terminated)


@dataclass(slots=True)
class Mread(Message):
    addr: int
    len: int
    TYPE = MsgType.MREAD
    BODY = c.Struct(
        "addr" / u32,
        "len" / u16,
        c.Terminated,
        Rule(lambda len: len > 0, "mread len must be > 0"),
        Rule(lambda addr, len: addr + len <= 1 << 32, "mread addr+len must be <= 2^32"),
    )


@dataclass(slots=True)
class Mwrite(Message):
    addr: int
    data: bytes
    TYPE = MsgType.MWRITE
    BODY = c.Struct(
        "addr" / u32,
        "data" / c.GreedyBytes,
        Rule(lambda addr, data: addr + len(data) <= 1 << 32, "mwrite addr+len must be <= 2^32"),
    )


def _nopen_len_ok(proto: int, family: int, bodylen: int) -> bool:
    alen = 4 if family == 4 else 16
    if proto == 0:
        return bodylen == 7 + alen
    if proto == UDP:
        return bodylen == 9 + alen
    return bodylen in (9 + alen, 7 + 2 * (alen + 2))  # TCP listen or connect


@dataclass(slots=True)
class Nopen(Message):
    """Open socket `sktid`. RAW: laddr; UDP and TCP listen: laddr, lport;
    TCP connect: laddr, lport, raddr, rport."""

    sktid: int
    family: int
    proto: int
    rbufsz: int
    laddr: bytes
    lport: int | None = None
    raddr: bytes | None = None
    rport: int | None = None
    TYPE = MsgType.NOPEN
    BODY = c.Struct(
        *_SKT_HEAD,
        "rbufsz" / u32,
        _FAMILY_RULE,
        Rule(lambda proto: proto in (0, 6, 17), "proto must be 0 (raw), 6 (TCP) or 17 (UDP)"),
        Rule(
            _nopen_len_ok,
            "nopen length must be 7+addr (raw), 7+addr+2 (UDP, TCP listen) "
            "or 7+2*(addr+2) (TCP connect)",
            on_build=False,
        ),
        "laddr" / Addr,
        "lport" / Cond(BODYLEN > 7 + 4 + 12 * (this.family == 6), this.proto != 0, u16),
        "raddr" / Cond(BODYLEN > 9 + 4 + 12 * (this.family == 6), this.raddr != None, Addr),  # noqa: E711
        "rport" / Cond(BODYLEN > 9 + 4 + 12 * (this.family == 6), this.raddr != None, u16),  # noqa: E711
        c.Terminated,
        Rule(lambda proto, lport: proto == 0 or lport is not None, "UDP/TCP nopen needs lport"),
        Rule(lambda proto, raddr: proto == 6 or raddr is None, "only TCP nopen has raddr"),
        Rule(lambda raddr, rport: (raddr is None) == (rport is None), "raddr needs rport"),
        Rule(
            lambda proto, lport: proto != 0 or lport is None,
            "raw nopen has no lport",
            on_parse=False,
        ),
    )


@dataclass(slots=True)
class Nclose(Message):
    sktid: int
    TYPE = MsgType.NCLOSE
    BODY = c.Struct("sktid" / u8, c.Terminated)


def _udp_addr_ok(proto: int, raddr: bytes | None, rport: int | None) -> bool:
    udp = proto == UDP
    return udp == (raddr is not None) == (rport is not None)


# Encode-only: the layout writes raddr/rport for UDP alone, so a stray one would vanish.
_UDP_ADDR_RULE = Rule(
    _udp_addr_ok, "UDP needs raddr and rport; other protos carry neither", on_parse=False
)


@dataclass(slots=True)
class Nsend(Message):
    sktid: int
    family: int
    proto: int
    time: int
    tag: int
    data: bytes
    raddr: bytes | None = None
    rport: int | None = None
    TYPE = MsgType.NSEND
    BODY = c.Struct(
        _UDP_ADDR_RULE,
        *_SKT_HEAD,
        "time" / u64,
        "tag" / u16,
        *_UDP_PEER,
        "data" / c.GreedyBytes,
    )


@dataclass(slots=True)
class Ncap(Message):
    sktid: int
    family: int
    proto: int
    endtime: int
    filter: bytes
    TYPE = MsgType.NCAP
    BODY = c.Struct(
        *_SKT_HEAD,
        "endtime" / u64,
        "filter" / c.GreedyBytes,
        Rule(lambda filter: len(filter) >= 1, "ncap needs a filter program (length >= 12)"),
    )


@dataclass(slots=True)
class Nctl(Message):
    sktid: int
    family: int
    proto: int
    time: int
    command: int
    TYPE = MsgType.NCTL
    BODY = c.Struct(
        *_SKT_HEAD,
        "time" / u64,
        Rule(lambda proto: proto == 6, "nctl proto must be TCP (6)"),
        "command" / u8,
        c.Terminated,
    )


@dataclass(slots=True)
class Xcert(Message):
    cert: bytes
    TYPE = MsgType.XCERT
    BODY = c.Struct(
        "cert" / c.GreedyBytes, Rule(lambda cert: len(cert) >= 1, "xcert needs a certificate")
    )


@dataclass(slots=True)
class Xpub(Message):
    chlist: list[bytes]
    eopkey: bytes
    xdescr: bytes = b""
    TYPE = MsgType.XPUB
    BODY = c.Struct(
        "chlist" / ChannelList(), "eopkey" / c.Bytes(KEYID_LEN), "xdescr" / c.GreedyBytes
    )


@dataclass(slots=True)
class Xsub(Message):
    chlist: list[bytes]
    eopkey: bytes
    dattr: bytes = b""
    TYPE = MsgType.XSUB
    BODY = c.Struct(
        "chlist" / ChannelList(), "eopkey" / c.Bytes(KEYID_LEN), "dattr" / c.GreedyBytes
    )


# ------------------------------------------------------------------------- responses


_MONREJ = int(Status.ECTLMONREJ)
_MONUKN = int(Status.ECTLMONUKN)


@dataclass(slots=True)
class Result(Message):
    """errid 0 (SUCCESS) is sent as an empty body; ECTLMONREJ carries monindx and
    monerrid, ECTLMONUKN carries monindx."""

    errid: int = 0
    monindx: int | None = None
    monerrid: int | None = None
    TYPE = MsgType.RESULT
    BODY = c.Struct(
        Rule(
            lambda bodylen: bodylen in (0, 2, 4, 6),
            "result length must be 0, 2, 4 or 6",
            on_build=False,
        ),
        "errid" / Cond(BODYLEN >= 2, this.errid != 0, u16),
        "monindx" / Cond(BODYLEN >= 4, this.monindx != None, u16),  # noqa: E711
        "monerrid" / Cond(BODYLEN >= 6, this.monerrid != None, u16),  # noqa: E711
        c.Terminated,
        Rule(
            lambda errid, monindx, monerrid: (
                (monindx is not None) == (errid in (_MONREJ, _MONUKN))
                and (monerrid is not None) == (errid == _MONREJ)
            ),
            "ECTLMONREJ needs monindx and monerrid, ECTLMONUKN needs monindx, others neither",
        ),
    )

    def __post_init__(self) -> None:
        if self.errid is None:  # decoded from an empty body
            self.errid = 0


@dataclass(slots=True)
class Mdata(Message):
    addr: int
    data: bytes
    TYPE = MsgType.MDATA
    BODY = c.Struct("addr" / u32, "data" / c.GreedyBytes)


# --------------------------------------------------------------------- notifications


@dataclass(slots=True)
class Ntag(Message):
    """errid is sent only when it is not SUCCESS."""

    sktid: int
    tag: int
    time: int
    errid: int = 0
    TYPE = MsgType.NTAG
    BODY = c.Struct(
        Rule(lambda bodylen: bodylen in (11, 13), "ntag length must be 11 or 13", on_build=False),
        "sktid" / u8,
        "tag" / u16,
        "time" / u64,
        "errid" / Cond(BODYLEN == 13, this.errid != 0, u16),
        c.Terminated,
    )

    def __post_init__(self) -> None:
        if self.errid is None:
            self.errid = 0


@dataclass(slots=True)
class Nstat(Message):
    """Either a `code`, or (TCP established) the peer's raddr and rport with code 0."""

    sktid: int
    family: int
    proto: int
    time: int
    code: int = 0
    raddr: bytes | None = None
    rport: int | None = None
    TYPE = MsgType.NSTAT
    BODY = c.Struct(
        *_SKT_HEAD,
        "time" / u64,
        "code" / Cond(BODYLEN == 12, this.raddr == None, u8),  # noqa: E711
        "raddr" / Cond(BODYLEN != 12, this.raddr != None, Addr),  # noqa: E711
        "rport" / Cond(BODYLEN != 12, this.raddr != None, u16),  # noqa: E711
        c.Terminated,
        Rule(
            lambda code, raddr: raddr is None or code in (None, 0),
            "nstat with raddr means ESTABLISHED (code 0)",
        ),
        Rule(lambda raddr, rport: (raddr is None) == (rport is None), "raddr needs rport"),
    )

    def __post_init__(self) -> None:
        if self.code is None:  # address form
            self.code = 0


@dataclass(slots=True)
class Ndata(Message):
    sktid: int
    family: int
    proto: int
    time: int
    data: bytes
    raddr: bytes | None = None
    rport: int | None = None
    TYPE = MsgType.NDATA
    BODY = c.Struct(
        _UDP_ADDR_RULE,
        *_SKT_HEAD,
        "time" / u64,
        *_UDP_PEER,
        "data" / c.GreedyBytes,
    )


@dataclass(slots=True)
class Ndrop(Message):
    sktid: int
    family: int
    proto: int
    tfirst: int
    tlast: int
    unitcnt: int
    bytecnt: int
    TYPE = MsgType.NDROP
    BODY = c.Struct(
        *_SKT_HEAD,
        "tfirst" / u64,
        "tlast" / u64,
        "unitcnt" / u32,
        "bytecnt" / u32,
        c.Terminated,
    )


@dataclass(slots=True)
class Nblock(Message):
    sktid: int
    family: int
    proto: int
    monerrid: int
    time: int
    TYPE = MsgType.NBLOCK
    BODY = c.Struct(
        *_SKT_HEAD,
        "monerrid" / u16,
        "time" / u64,
        c.Terminated,
    )


@dataclass(slots=True)
class Linfo(Message):
    name: bytes
    aux: bytes
    info: bytes
    TYPE = MsgType.LINFO
    BODY = c.Struct(
        "namelen" / c.Rebuild(u32, c.len_(this.name)),
        "auxlen" / c.Rebuild(u32, c.len_(this.aux)),
        "infolen" / c.Rebuild(u32, c.len_(this.info)),
        "name" / c.Bytes(this.namelen),
        "aux" / c.Bytes(this.auxlen),
        "info" / c.Bytes(this.infolen),
        c.Terminated,
    )


@dataclass(slots=True)
class Suspd(Message):
    TYPE = MsgType.SUSPD
    BODY = c.Struct(c.Terminated)


@dataclass(slots=True)
class Resumd(Message):
    TYPE = MsgType.RESUMD
    BODY = c.Struct(c.Terminated)


@dataclass(slots=True)
class Xnotify(Message):
    channel: bytes
    xdescr: bytes = b""
    TYPE = MsgType.XNOTIFY
    BODY = c.Struct(
        "channel" / c.Prefixed(u8, c.GreedyBytes),
        Rule(
            lambda channel: 1 <= len(channel) <= CHANNEL_MAX,
            f"xnotify channel length must be 1..{CHANNEL_MAX}",
        ),
        "xdescr" / c.GreedyBytes,
    )


@dataclass(slots=True)
class Xreg(Message):
    snikey: bytes
    TYPE = MsgType.XREG
    BODY = c.Struct(
        "snikey" / c.GreedyBytes,
        Rule(
            lambda snikey: _SNIKEY_RE.match(snikey) is not None,
            f"xreg snikey must be 1..{SNIKEY_MAX} characters of [a-z0-9]",
        ),
    )


ALL_MESSAGES: tuple[type[Message], ...] = (
    Cdata, Start, End, Yield, Cont, Mread, Mwrite, Nopen, Nclose, Nsend, Ncap, Nctl,
    Xcert, Xpub, Xsub, Result, Mdata, Ntag, Nstat, Ndata, Ndrop, Nblock, Linfo, Suspd,
    Resumd, Xnotify, Xreg,
)  # fmt: skip

for _cls in ALL_MESSAGES:
    _cls.NAME = _cls.TYPE.name.lower()

BY_TYPE: dict[int, type[Message]] = {int(m.TYPE): m for m in ALL_MESSAGES}
BY_NAME: dict[str, type[Message]] = {m.NAME: m for m in ALL_MESSAGES}
HOT_MESSAGES: tuple[type[Message], ...] = (Nsend, Ndata, Ntag, Result, Mread, Mdata, Nstat)
