"""Who may subscribe to or publish on which channel (PROTOCOL.md §5.2, §5.5).

Sans-IO, no Twisted. A channel of exactly 32 bytes is private: the keyid of an endpoint
operator (EOp). Public channels (any other length) are open to everyone. Private ones must
be proven by the xcert chain the client sent before its xsub/xpub:

* xsub: the chain is a representation chain (subcmd -> delpriv[reppriv]*) whose leaf is
  the client's TLS agent key and whose root is `eopkey`; its subscribable channels are
  the AKIs of every cert in it (`parse_endpoint_rep_chain`).
* xpub: the chain is an experiment chain (pubcmd -> delpriv[exppriv]* -> exppriv) whose
  leaf is the agent key and whose root is `eopkey`; its one publishable channel is the
  exppriv cert's AKI (`parse_controller_exp_chain`).

Every refusal carries the specific status (ESUB*/EPUB*) and a sentence saying why, for
the broker's log line. The xdescr and dattr are checked here too (syntax, sizes, the
fields the endpoint needs), so what reaches the registry is well formed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from packetlab.hostport import HostPortError, port_number, split_host_port
from packetlab.ppks import (
    ChainError,
    PPKSError,
    combine_limits,
    is_valid_snikey,
    parse_controller_exp_chain,
    parse_endpoint_rep_chain,
)
from packetlab.wire.constants import KEYID_LEN, Status
from packetlab.wire.nvlist import NVListError, NVPair, parse_nvlist

__all__ = [
    "MAX_CHANNELS",
    "MAX_DATTR",
    "MAX_XDESCR",
    "PubGrant",
    "Refusal",
    "SubGrant",
    "check_publication",
    "check_subscription",
    "is_private",
]

MAX_XDESCR = 4096  # bytes; the reference's own fields fit in ~600 (controller_addr <= 255)
MAX_DATTR = 4096
MAX_CHANNELS = 64  # per chlist
MAX_CONTROLLER_ADDR = 255
U32_MAX = 0xFFFFFFFF
U64_MAX = 2**64 - 1  # pktlab_time_t: pub_end is one (ns since the epoch)
ZERO_KEY = bytes(KEYID_LEN)


@dataclass(frozen=True)
class Refusal:
    """A non-SUCCESS answer: the status sent and why (for the log, never on the wire)."""

    status: Status
    reason: str


@dataclass(frozen=True)
class SubGrant:
    channels: tuple[bytes, ...]
    dattr: tuple[NVPair, ...]
    # When the chain that proved the private channels ends (the earliest not_after of its
    # certificates, s since the epoch); None: public channels only, nothing to expire.
    valid_until: int | None = None


@dataclass(frozen=True)
class PubGrant:
    channels: tuple[bytes, ...]
    pairs: tuple[NVPair, ...]
    priority: int
    pub_end_ns: int | None  # when the publication ends on its own (None: with the link)
    valid_until: int | None = None  # its chain's earliest not_after (s); None: no chain


def is_private(channel: bytes) -> bool:
    return len(channel) == KEYID_LEN


def _dedupe(chlist: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(chlist))


def _chlist_refusal(chlist: Sequence[bytes], status: Status) -> Refusal | None:
    if not chlist:
        return Refusal(status, "empty channel list")
    if len(chlist) > MAX_CHANNELS:
        return Refusal(status, f"{len(chlist)} channels, at most {MAX_CHANNELS}")
    return None


def check_subscription(
    xcerts: Sequence[bytes],
    agent_key: bytes,
    chlist: Sequence[bytes],
    eopkey: bytes,
    dattr: bytes,
    now: float | None = None,
) -> SubGrant | Refusal:
    """Judge one xsub; `agent_key` is the raw key of the client's verified TLS agent cert."""
    bad = _chlist_refusal(chlist, Status.ESUBBADCHL)
    if bad is not None:
        return bad
    if len(dattr) > MAX_DATTR:
        return Refusal(Status.ESUBBADDA, f"dattr is {len(dattr)} bytes, at most {MAX_DATTR}")
    try:
        pairs = parse_nvlist(dattr)  # no glob, no repeated names (§5.5)
    except NVListError as e:
        return Refusal(Status.ESUBBADDA, f"dattr: {e}")
    private = [ch for ch in chlist if is_private(ch)]
    if private:
        if not xcerts:
            return Refusal(
                Status.ESUBBADCHN, "private channel requested but no xcert chain was sent"
            )
        if eopkey == ZERO_KEY:
            return Refusal(Status.ESUBBADCHN, "private channel requested with an all-zero eopkey")
        try:
            info = parse_endpoint_rep_chain(xcerts, agent_key, [eopkey], now)
        except (ChainError, PPKSError) as e:
            return Refusal(Status.ESUBBADCHN, f"representation chain refused: {e}")
        proven = set(info.channels)
        for ch in private:
            if ch not in proven:
                return Refusal(
                    Status.ESUBBADCHN,
                    f"private channel {ch.hex()[:16]}... is not proven by the chain",
                )
        until = min(c.not_after for c in info.certs)
        return SubGrant(_dedupe(chlist), tuple(pairs), until)
    return SubGrant(_dedupe(chlist), tuple(pairs))


def _xdescr_fields(pairs: Sequence[NVPair], now_ns: int) -> tuple[int, int | None] | Refusal:
    """(exp_priority, pub_end) of a parsed xdescr, or why it cannot be published."""
    addrs = [p.value for p in pairs if p.name == "controller_addr"]
    if len(addrs) != 1:
        return Refusal(
            Status.EPUBBADADDR, f"xdescr needs exactly one controller_addr, has {len(addrs)}"
        )
    addr = addrs[0]
    if not addr or len(addr) > MAX_CONTROLLER_ADDR or "*" in addr or "?" in addr:
        return Refusal(Status.EPUBBADADDR, f"controller_addr {addr[:64]!r} is not HOST[:PORT]")
    # as an endpoint reads it: HOST:PORT needs a good port (`::1:0` too); a bare IPv6
    # address takes the default
    try:
        _host, port = split_host_port(addr, reference=True)
    except HostPortError as e:
        return Refusal(Status.EPUBBADADDR, f"controller_addr {addr!r}: {e}")
    if port is not None and port_number(port) is None:
        return Refusal(Status.EPUBBADADDR, f"controller_addr {addr!r}: bad port")
    snikeys = [p for p in pairs if p.name == "sni_key"]
    if len(snikeys) > 1:
        # as a second controller_addr: which SNI an endpoint connects with is nowhere
        # said (ours takes the first), and pktxpmgr never sends two (an override fails)
        return Refusal(Status.EPUBBADXD, "sni_key given more than once")
    for p in snikeys:
        if not is_valid_snikey(p.value):
            return Refusal(
                Status.EPUBBADXD, f"sni_key {p.value[:64]!r} is not 1..63 characters of [a-z0-9]"
            )
    priority = 0
    prios = [p.value for p in pairs if p.name == "exp_priority"]
    if len(prios) > 1:
        return Refusal(Status.EPUBBADPR, "exp_priority given more than once")
    if prios:
        if not prios[0].isdigit() or len(prios[0]) > 10 or int(prios[0]) > U32_MAX:
            return Refusal(Status.EPUBBADPR, f"exp_priority {prios[0][:32]!r} is not a u32")
        priority = int(prios[0])
    pub_end: int | None = None
    ends = [p.value for p in pairs if p.name == "pub_end"]
    if len(ends) > 1:
        return Refusal(Status.EPUBBADXD, "pub_end given more than once")
    if ends:
        # past a u64 it is no pktlab_time_t; 4,000 digits made the expiry timer's float
        # conversion raise OverflowError inside dataReceived (a traceback, the link cut)
        if not ends[0].isdigit() or len(ends[0]) > 20 or int(ends[0]) > U64_MAX:
            return Refusal(
                Status.EPUBBADXD, f"pub_end {ends[0][:32]!r} is not a u64 of ns since the epoch"
            )
        pub_end = int(ends[0])
        if pub_end <= now_ns:
            # both times: a publisher's clock behind ours by more than its period sends
            # a pub_end already past here (it said only "already past": session 33)
            return Refusal(
                Status.EPUBBADXD,
                f"pub_end {pub_end} is already past: {(now_ns - pub_end) / 1e9:.3f} s before "
                f"this broker's clock ({now_ns}); is the publisher's clock behind?",
            )
    return priority, pub_end


def check_publication(
    xcerts: Sequence[bytes],
    agent_key: bytes,
    chlist: Sequence[bytes],
    eopkey: bytes,
    xdescr: bytes,
    now: float | None = None,
) -> PubGrant | Refusal:
    """Judge one xpub; `agent_key` is the raw key of the client's verified TLS agent cert."""
    when = time.time() if now is None else now
    bad = _chlist_refusal(chlist, Status.EPUBBADCHL)
    if bad is not None:
        return bad
    if len(xdescr) > MAX_XDESCR:
        return Refusal(Status.EPUBBADXD, f"xdescr is {len(xdescr)} bytes, at most {MAX_XDESCR}")
    try:
        pairs = parse_nvlist(xdescr, allow_duplicates=True, allow_glob=True)
    except NVListError as e:
        return Refusal(Status.EPUBBADXD, f"xdescr: {e}")
    fields = _xdescr_fields(pairs, int(when * 1e9))
    if isinstance(fields, Refusal):
        return fields
    priority, pub_end = fields
    private = [ch for ch in chlist if is_private(ch)]
    if private:
        if not xcerts:
            return Refusal(
                Status.EPUBBADCHN, "private channel requested but no xcert chain was sent"
            )
        if eopkey == ZERO_KEY:
            return Refusal(Status.EPUBBADCHN, "private channel requested with an all-zero eopkey")
        try:
            info = parse_controller_exp_chain(xcerts, agent_key, [eopkey], when)
        except (ChainError, PPKSError) as e:
            return Refusal(Status.EPUBBADCHN, f"experiment chain refused: {e}")
        for ch in private:
            if ch != info.channel:
                return Refusal(
                    Status.EPUBBADCHN,
                    f"private channel {ch.hex()[:16]}... is not the chain's EOp "
                    f"({info.channel.hex()[:16]}...)",
                )
        limit = combine_limits(info.certs, default_send_burst=None).max_num_priority
        if limit is not None and priority > limit:
            return Refusal(
                Status.EPUBBADPR, f"exp_priority {priority} above the chain's max {limit}"
            )
        until = min(c.not_after for c in info.certs)
        return PubGrant(_dedupe(chlist), tuple(pairs), priority, pub_end, until)
    return PubGrant(_dedupe(chlist), tuple(pairs), priority, pub_end)
