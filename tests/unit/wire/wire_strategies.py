"""Hypothesis strategies: a valid instance of every PacketLab message (PROTOCOL.md §1.2)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from packetlab import wire
from packetlab.wire import Message

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
payload = st.binary(max_size=96)
families = st.sampled_from([4, 6])
# nsend/ndata carry raddr/rport only for UDP; any other proto value is legal on the wire.
non_udp = u8.filter(lambda p: p != 17)
channel = st.binary(min_size=1, max_size=32)
chlist = st.lists(channel, max_size=5)
eopkey = st.binary(min_size=32, max_size=32)
errid_plain = u16.filter(lambda e: e not in (0, 0x12, 0x13))


def addr(family: int) -> st.SearchStrategy[bytes]:
    n = 4 if family == 4 else 16
    return st.binary(min_size=n, max_size=n)


@st.composite
def mread(draw: Any) -> wire.Mread:
    length = draw(st.integers(1, 0xFFFF))
    return wire.Mread(addr=draw(st.integers(0, (1 << 32) - length)), len=length)


@st.composite
def mwrite(draw: Any) -> wire.Mwrite:
    data = draw(payload)
    top = min((1 << 32) - len(data), 0xFFFFFFFF)
    return wire.Mwrite(addr=draw(st.integers(0, top)), data=data)


@st.composite
def nopen(draw: Any) -> wire.Nopen:
    fam = draw(families)
    form = draw(st.sampled_from(["raw", "udp", "listen", "connect"]))
    common = dict(sktid=draw(u8), family=fam, rbufsz=draw(u32), laddr=draw(addr(fam)))
    if form == "raw":
        return wire.Nopen(proto=0, **common)
    if form == "udp":
        return wire.Nopen(proto=17, lport=draw(u16), **common)
    if form == "listen":
        return wire.Nopen(proto=6, lport=draw(u16), **common)
    return wire.Nopen(proto=6, lport=draw(u16), raddr=draw(addr(fam)), rport=draw(u16), **common)


@st.composite
def nsend_or_ndata(draw: Any, cls: type[wire.Nsend] | type[wire.Ndata]) -> Message:
    fam = draw(families)
    extra: dict[str, Any] = {"tag": draw(u16)} if cls is wire.Nsend else {}
    if draw(st.booleans()):
        extra.update(proto=17, raddr=draw(addr(fam)), rport=draw(u16))
    else:
        extra.update(proto=draw(non_udp))
    return cls(sktid=draw(u8), family=fam, time=draw(u64), data=draw(payload), **extra)


@st.composite
def result(draw: Any) -> wire.Result:
    form = draw(st.integers(0, 3))
    if form == 0:
        return wire.Result()
    if form == 1:
        return wire.Result(errid=draw(errid_plain))
    if form == 2:
        return wire.Result(errid=0x13, monindx=draw(u16))
    return wire.Result(errid=0x12, monindx=draw(u16), monerrid=draw(u16))


@st.composite
def nstat(draw: Any) -> wire.Nstat:
    fam = draw(families)
    common = dict(sktid=draw(u8), family=fam, proto=draw(u8), time=draw(u64))
    if draw(st.booleans()):
        return wire.Nstat(code=draw(u8), **common)
    return wire.Nstat(raddr=draw(addr(fam)), rport=draw(u16), **common)


SNIKEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"

STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    wire.Cdata: st.builds(wire.Cdata, hint=st.binary(max_size=255), data=payload),
    wire.Start: st.just(wire.Start()),
    wire.End: st.just(wire.End()),
    wire.Yield: st.builds(wire.Yield, rhint=u64),
    wire.Cont: st.just(wire.Cont()),
    wire.Mread: mread(),
    wire.Mwrite: mwrite(),
    wire.Nopen: nopen(),
    wire.Nclose: st.builds(wire.Nclose, sktid=u8),
    wire.Nsend: nsend_or_ndata(wire.Nsend),
    wire.Ncap: st.builds(
        wire.Ncap, sktid=u8, family=u8, proto=u8, endtime=u64, filter=st.binary(min_size=1)
    ),
    wire.Nctl: st.builds(wire.Nctl, sktid=u8, family=u8, proto=st.just(6), time=u64, command=u8),
    wire.Xcert: st.builds(wire.Xcert, cert=st.binary(min_size=1, max_size=64)),
    wire.Xpub: st.builds(wire.Xpub, chlist=chlist, eopkey=eopkey, xdescr=payload),
    wire.Xsub: st.builds(wire.Xsub, chlist=chlist, eopkey=eopkey, dattr=payload),
    wire.Result: result(),
    wire.Mdata: st.builds(wire.Mdata, addr=u32, data=payload),
    wire.Ntag: st.builds(wire.Ntag, sktid=u8, tag=u16, time=u64, errid=u16),
    wire.Nstat: nstat(),
    wire.Ndata: nsend_or_ndata(wire.Ndata),
    wire.Ndrop: st.builds(
        wire.Ndrop, sktid=u8, family=u8, proto=u8, tfirst=u64, tlast=u64, unitcnt=u32, bytecnt=u32
    ),
    wire.Nblock: st.builds(wire.Nblock, sktid=u8, family=u8, proto=u8, monerrid=u16, time=u64),
    wire.Linfo: st.builds(wire.Linfo, name=payload, aux=payload, info=payload),
    wire.Suspd: st.just(wire.Suspd()),
    wire.Resumd: st.just(wire.Resumd()),
    wire.Xnotify: st.builds(wire.Xnotify, channel=channel, xdescr=payload),
    wire.Xreg: st.builds(
        wire.Xreg,
        snikey=st.text(SNIKEY_CHARS, min_size=1, max_size=63).map(str.encode),
    ),
}

assert set(STRATEGIES) == set(wire.ALL_MESSAGES), "a message class has no strategy"

any_message: st.SearchStrategy[Message] = st.one_of(*STRATEGIES.values())


@st.composite
def mutated_body(draw: Any, cls: type[Message]) -> bytes:
    """A body for `cls` that is often almost right: a valid body truncated, extended or
    with bytes overwritten, or plain random bytes."""
    how = draw(st.sampled_from(["random", "valid", "truncate", "extend", "overwrite"]))
    if how == "random":
        return bytes(draw(st.binary(max_size=80)))
    body = bytearray(wire.encode(draw(STRATEGIES[cls]))[4:])
    if how == "truncate" and body:
        del body[draw(st.integers(0, len(body) - 1)) :]
    elif how == "extend":
        body += draw(st.binary(min_size=1, max_size=8))
    elif how == "overwrite" and body:
        for _ in range(draw(st.integers(1, 3))):
            body[draw(st.integers(0, len(body) - 1))] = draw(u8)
    return bytes(body)
