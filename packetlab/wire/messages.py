"""Every PacketLab 1.1 message (PROTOCOL.md §1.2): a dataclass per message type.

Each body's layout is declared with construct in `packetlab.wire.layouts` (``cls.BODY``,
imported on first use); `packetlab.wire.codec` uses the fast encoder/decoder derived from
those declarations, and construct's own parse/build of them is kept as the reference
the fast path is tested against. Field names are the spec's and equal the dataclass
attribute names. This module does not import construct: a process that only encodes and
decodes (the endpoint) runs on the derived code alone when it is cached.

Addresses and other byte strings are `bytes`; ports, times and counters are `int`.
Optional parts (the UDP address of nsend/ndata, result's error fields, ...) are `None`
when absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from packetlab.wire.constants import MsgType


class _Layout:
    """`cls.BODY`: the construct declaration of the class's body, from
    `packetlab.wire.layouts` (imported, with construct, the first time one is read)."""

    def __get__(self, obj: object, cls: type) -> Any:
        from packetlab.wire.layouts import BODIES

        return BODIES[cls.__name__]


class Message:
    """Base of all messages. `TYPE` is the type code, `BODY` the construct declaration."""

    __slots__ = ()
    TYPE: ClassVar[MsgType]
    NAME: ClassVar[str]
    BODY: ClassVar[Any] = _Layout()

    def fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class Cdata(Message):
    hint: bytes
    data: bytes
    TYPE = MsgType.CDATA


@dataclass(slots=True)
class Start(Message):
    TYPE = MsgType.START


@dataclass(slots=True)
class End(Message):
    TYPE = MsgType.END


@dataclass(slots=True)
class Yield(Message):
    rhint: int
    TYPE = MsgType.YIELD


@dataclass(slots=True)
class Cont(Message):
    TYPE = MsgType.CONT


@dataclass(slots=True)
class Mread(Message):
    addr: int
    len: int
    TYPE = MsgType.MREAD


@dataclass(slots=True)
class Mwrite(Message):
    addr: int
    data: bytes
    TYPE = MsgType.MWRITE


@dataclass(slots=True)
class Nopen(Message):
    """Open socket `sktid`. RAW: laddr; UDP and TCP listen: laddr, lport;
    TCP connect: laddr, lport, raddr, rport (a UDP nopen may carry them too: ignored)."""

    sktid: int
    family: int
    proto: int
    rbufsz: int
    laddr: bytes
    lport: int | None = None
    raddr: bytes | None = None
    rport: int | None = None
    TYPE = MsgType.NOPEN


@dataclass(slots=True)
class Nclose(Message):
    sktid: int
    TYPE = MsgType.NCLOSE


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


@dataclass(slots=True)
class Ncap(Message):
    sktid: int
    family: int
    proto: int
    endtime: int
    filter: bytes
    TYPE = MsgType.NCAP


@dataclass(slots=True)
class Nctl(Message):
    sktid: int
    family: int
    proto: int
    time: int
    command: int
    TYPE = MsgType.NCTL


@dataclass(slots=True)
class Xcert(Message):
    cert: bytes
    TYPE = MsgType.XCERT


@dataclass(slots=True)
class Xpub(Message):
    chlist: list[bytes]
    eopkey: bytes
    xdescr: bytes = b""
    TYPE = MsgType.XPUB


@dataclass(slots=True)
class Xsub(Message):
    chlist: list[bytes]
    eopkey: bytes
    dattr: bytes = b""
    TYPE = MsgType.XSUB


# ------------------------------------------------------------------------- responses


@dataclass(slots=True)
class Result(Message):
    """errid 0 (SUCCESS) is sent as an empty body; ECTLMONREJ carries monindx and
    monerrid, ECTLMONUKN carries monindx."""

    errid: int = 0
    monindx: int | None = None
    monerrid: int | None = None
    TYPE = MsgType.RESULT

    def __post_init__(self) -> None:
        if self.errid is None:  # decoded from an empty body
            self.errid = 0


@dataclass(slots=True)
class Mdata(Message):
    addr: int
    data: bytes
    TYPE = MsgType.MDATA


# --------------------------------------------------------------------- notifications


@dataclass(slots=True)
class Ntag(Message):
    """errid is sent only when it is not SUCCESS."""

    sktid: int
    tag: int
    time: int
    errid: int = 0
    TYPE = MsgType.NTAG

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


@dataclass(slots=True)
class Nblock(Message):
    sktid: int
    family: int
    proto: int
    monerrid: int
    time: int
    TYPE = MsgType.NBLOCK


@dataclass(slots=True)
class Linfo(Message):
    name: bytes
    aux: bytes
    info: bytes
    TYPE = MsgType.LINFO


@dataclass(slots=True)
class Suspd(Message):
    TYPE = MsgType.SUSPD


@dataclass(slots=True)
class Resumd(Message):
    TYPE = MsgType.RESUMD


@dataclass(slots=True)
class Xnotify(Message):
    channel: bytes
    xdescr: bytes = b""
    TYPE = MsgType.XNOTIFY


@dataclass(slots=True)
class Xreg(Message):
    snikey: bytes
    TYPE = MsgType.XREG


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
