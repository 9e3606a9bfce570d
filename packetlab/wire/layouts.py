"""The construct declaration of every message body (PROTOCOL.md §1.2).

These are the layouts' single description: `packetlab.wire.sourcegen` derives the fast
decoder, encoder and frame packers from them (kept compiled by `packetlab.wire.codegen`,
so that a process whose derived code is cached never imports construct), and
construct's own parse/build of them (`codec.construct_decode_body`,
`construct_encode`) is the reference the fast paths are tested against. Field names are
the spec's and equal the dataclass attribute names in `packetlab.wire.messages`; each
class's declaration is ``cls.BODY`` (read here on first use).
"""

from __future__ import annotations

import re
from typing import Any

import construct as c
from construct import this

from packetlab.wire.constants import CHANNEL_MAX, KEYID_LEN, SNIKEY_MAX, Proto, Status
from packetlab.wire.nodes import BODYLEN, Addr, ChannelList, Cond, Rule

u8, u16, u32, u64 = c.Int8ub, c.Int16ub, c.Int32ub, c.Int64ub

UDP = int(Proto.UDP)

_SNIKEY_RE = re.compile(rb"[a-z0-9]{1,%d}\Z" % SNIKEY_MAX)

# The socket head most socket messages start with, and the UDP peer nsend/ndata carry.
_SKT_HEAD = ("sktid" / u8, "family" / u8, "proto" / u8)

_UDP_PEER = ("raddr" / c.If(this.proto == UDP, Addr), "rport" / c.If(this.proto == UDP, u16))


def _family_ok(family: int) -> bool:
    return family in (4, 6)


_FAMILY_RULE = Rule(_family_ok, "family must be 4 (IPv4) or 6 (IPv6)")


def _nopen_len_ok(proto: int, family: int, bodylen: int) -> bool:
    alen = 4 if family == 4 else 16
    if proto == 0:
        return bodylen == 7 + alen
    # UDP: laddr lport, or with raddr rport too, which the endpoint ignores (§3.1: "UDP
    # binds laddr:lport (raddr ignored)"); TCP: listen or connect.
    return bodylen in (9 + alen, 7 + 2 * (alen + 2))


def _udp_addr_ok(proto: int, raddr: bytes | None, rport: int | None) -> bool:
    udp = proto == UDP
    return udp == (raddr is not None) == (rport is not None)


# Encode-only: the layout writes raddr/rport for UDP alone, so a stray one would vanish.
_UDP_ADDR_RULE = Rule(
    _udp_addr_ok, "UDP needs raddr and rport; other protos carry neither", on_parse=False
)

_MONREJ = int(Status.ECTLMONREJ)

_MONUKN = int(Status.ECTLMONUKN)


BODIES: dict[str, Any] = {  # by message class name: messages.py imports this lazily
    "Cdata": c.Struct("hint" / c.Prefixed(u8, c.GreedyBytes), "data" / c.GreedyBytes),
    "Start": c.Struct(c.Terminated),
    "End": c.Struct(c.Terminated),
    "Yield": c.Struct("rhint" / u64, c.Terminated),
    "Cont": c.Struct(c.Terminated),
    "Mread": c.Struct(
        "addr" / u32,
        "len" / u16,
        c.Terminated,
        Rule(lambda len: len > 0, "mread len must be > 0"),
        Rule(lambda addr, len: addr + len <= 1 << 32, "mread addr+len must be <= 2^32"),
    ),
    "Mwrite": c.Struct(
        "addr" / u32,
        "data" / c.GreedyBytes,
        Rule(lambda addr, data: addr + len(data) <= 1 << 32, "mwrite addr+len must be <= 2^32"),
    ),
    "Nopen": c.Struct(
        *_SKT_HEAD,
        "rbufsz" / u32,
        _FAMILY_RULE,
        Rule(lambda proto: proto in (0, 6, 17), "proto must be 0 (raw), 6 (TCP) or 17 (UDP)"),
        Rule(
            _nopen_len_ok,
            "nopen length must be 7+addr (raw), 7+addr+2 (UDP, TCP listen) "
            "or 7+2*(addr+2) (TCP connect, UDP with a peer)",
            on_build=False,
        ),
        "laddr" / Addr,
        "lport" / Cond(BODYLEN > 7 + 4 + 12 * (this.family == 6), this.proto != 0, u16),
        "raddr" / Cond(BODYLEN > 9 + 4 + 12 * (this.family == 6), this.raddr != None, Addr),  # noqa: E711
        "rport" / Cond(BODYLEN > 9 + 4 + 12 * (this.family == 6), this.raddr != None, u16),  # noqa: E711
        c.Terminated,
        Rule(lambda proto, lport: proto == 0 or lport is not None, "UDP/TCP nopen needs lport"),
        Rule(lambda proto, raddr: proto != 0 or raddr is None, "raw nopen has no raddr"),
        Rule(lambda raddr, rport: (raddr is None) == (rport is None), "raddr needs rport"),
        Rule(
            lambda proto, lport: proto != 0 or lport is None,
            "raw nopen has no lport",
            on_parse=False,
        ),
    ),
    "Nclose": c.Struct("sktid" / u8, c.Terminated),
    "Nsend": c.Struct(
        _UDP_ADDR_RULE,
        *_SKT_HEAD,
        "time" / u64,
        "tag" / u16,
        *_UDP_PEER,
        "data" / c.GreedyBytes,
    ),
    "Ncap": c.Struct(
        *_SKT_HEAD,
        "endtime" / u64,
        "filter" / c.GreedyBytes,
        Rule(lambda filter: len(filter) >= 1, "ncap needs a filter program (length >= 12)"),
    ),
    "Nctl": c.Struct(
        *_SKT_HEAD,
        "time" / u64,
        Rule(lambda proto: proto == 6, "nctl proto must be TCP (6)"),
        "command" / u8,
        c.Terminated,
    ),
    "Xcert": c.Struct(
        "cert" / c.GreedyBytes, Rule(lambda cert: len(cert) >= 1, "xcert needs a certificate")
    ),
    "Xpub": c.Struct(
        "chlist" / ChannelList(), "eopkey" / c.Bytes(KEYID_LEN), "xdescr" / c.GreedyBytes
    ),
    "Xsub": c.Struct(
        "chlist" / ChannelList(), "eopkey" / c.Bytes(KEYID_LEN), "dattr" / c.GreedyBytes
    ),
    "Result": c.Struct(
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
    ),
    "Mdata": c.Struct("addr" / u32, "data" / c.GreedyBytes),
    "Ntag": c.Struct(
        Rule(lambda bodylen: bodylen in (11, 13), "ntag length must be 11 or 13", on_build=False),
        "sktid" / u8,
        "tag" / u16,
        "time" / u64,
        "errid" / Cond(BODYLEN == 13, this.errid != 0, u16),
        c.Terminated,
    ),
    "Nstat": c.Struct(
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
    ),
    "Ndata": c.Struct(
        _UDP_ADDR_RULE,
        *_SKT_HEAD,
        "time" / u64,
        *_UDP_PEER,
        "data" / c.GreedyBytes,
    ),
    "Ndrop": c.Struct(
        *_SKT_HEAD,
        "tfirst" / u64,
        "tlast" / u64,
        "unitcnt" / u32,
        "bytecnt" / u32,
        c.Terminated,
    ),
    "Nblock": c.Struct(
        *_SKT_HEAD,
        "monerrid" / u16,
        "time" / u64,
        c.Terminated,
    ),
    "Linfo": c.Struct(
        "namelen" / c.Rebuild(u32, c.len_(this.name)),
        "auxlen" / c.Rebuild(u32, c.len_(this.aux)),
        "infolen" / c.Rebuild(u32, c.len_(this.info)),
        "name" / c.Bytes(this.namelen),
        "aux" / c.Bytes(this.auxlen),
        "info" / c.Bytes(this.infolen),
        c.Terminated,
    ),
    "Suspd": c.Struct(c.Terminated),
    "Resumd": c.Struct(c.Terminated),
    "Xnotify": c.Struct(
        "channel" / c.Prefixed(u8, c.GreedyBytes),
        Rule(
            lambda channel: 1 <= len(channel) <= CHANNEL_MAX,
            f"xnotify channel length must be 1..{CHANNEL_MAX}",
        ),
        "xdescr" / c.GreedyBytes,
    ),
    "Xreg": c.Struct(
        "snikey" / c.GreedyBytes,
        Rule(
            lambda snikey: _SNIKEY_RE.match(snikey) is not None,
            f"xreg snikey must be 1..{SNIKEY_MAX} characters of [a-z0-9]",
        ),
    ),
}
