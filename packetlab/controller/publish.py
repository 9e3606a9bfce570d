"""Publishing experiments to a broker (PROTOCOL.md §5.4; BROKER-PROXY-OBSERVED.md §3).

    from packetlab.controller import publish, make_xdescr, PublishCredentials

    creds = PublishCredentials.from_home(home)           # the demo set of `pktlab init`
    pub = await publish(reactor, "broker.example:20556",
                        make_xdescr("192.0.2.7:20556", sni_key="myexp"), creds)
    ...                                                  # endpoints now connect to us
    await pub.close()                                    # ends the publication

The link is TLS 1.3 in agent mode: we present our agent certificate and check the broker's
against the broker roots (`BrokerCertRootPath`; none given: any signer, as pktxpmgr).
Before the `xpub` we send the experiment chain as `xcert`s, leaf first (pubcmd, delpriv...,
exppriv), in lockstep: one `result` awaited per message, as pktxpmgr does. The default
channel is the keyid of the chain's root EOp; public channels need no chain (then the
eopkey is 32 zero bytes).

**A publication lives exactly as long as its connection**: `Publication.close()` (or the
process ending) ends it everywhere; `Publication.ended` fires when the link is gone, for
whatever reason (a broker that closes has ended the publication too, and there is no
automatic republish: pktxpmgr never republishes either). Several xdescrs may share one link
(`Publication.add`). A refused message raises `PublishRefused` with the broker's status
(EPUBBADCHN, EPUBBADXD, ...).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.controller._deferred import deferred_api
from packetlab.controller.errors import ControllerError, as_status, status_name
from packetlab.hostport import HostPortError, client_endpoint, port_number, split_host_port
from packetlab.ppks import (
    Certificate,
    PktlabHome,
    key_id,
    load_certificates,
    raw_public_key,
    read_private_key,
    read_public_key,
)
from packetlab.ppks.keys import PublicKeyLike
from packetlab.tls import AuthMode, Credentials, PPKSClientCreator, PPKSClientEndpoint
from packetlab.tls.directwrite import socket_connection
from packetlab.wire import Framer, Result, WireError, Xcert, Xpub, encode
from packetlab.wire.constants import DEFAULT_PUB_PORT, KEYID_LEN, Status
from packetlab.wire.nvlist import NVPair, encode_nvlist

__all__ = [
    "Publication",
    "PublishCredentials",
    "PublishError",
    "PublishRefused",
    "chain_order",
    "make_xdescr",
    "publish",
]

XdescrLike = bytes | str | Mapping[str, str] | Sequence[tuple[str, str]]


class PublishError(ControllerError):
    """Publishing failed: the broker could not be reached, or the link broke."""


class PublishRefused(PublishError):
    """The broker answered an xcert or xpub with a non-SUCCESS `result`."""

    def __init__(self, what: str, errid: int, hint: str = "") -> None:
        self.what = what
        self.status = as_status(errid)
        self.name = status_name(errid)
        # pktxpmgr prints the code in decimal ("Broker returned error: 81"): both here
        super().__init__(
            f"broker refused the {what}: {self.name} (0x{errid:02x}, error {errid}){hint}"
        )


def pub_end_hint(xdescr: bytes, now_ns: int) -> str:
    """For an xpub refused as a bad xdescr: its pub_end by our clock, since a broker
    whose clock is ahead of ours by more than that refuses it as already past (the
    refusal said only "bad experiment description"). "" without a pub_end."""
    for pair in xdescr.split(b";"):
        name, _, value = pair.partition(b"=")
        if name.strip() == b"pub_end" and value.strip().isdigit():
            left = (int(value) - now_ns) / 1e9
            if left <= 0:
                return f" (its pub_end is {-left:.3f} s past by our clock)"
            return (
                f" (one cause: its pub_end is {left:.3f} s ahead by our clock; a broker "
                "whose clock is ahead of ours by more refuses it as already past: compare "
                "the clocks, or lengthen PubPeriod)"
            )
    return ""


def make_xdescr(
    controller_addr: str,
    *,
    sni_key: str | None = None,
    pub_end_ns: int | None = None,
    pub_period: float | None = None,
    exp_priority: int | None = None,
    hostid: str | None = None,
    countries: Sequence[str] = (),
    locations: Sequence[str] = (),
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An experiment descriptor (§5.6) in pktxpmgr's field order: hostid, locations,
    countries (both lists reversed), exp_priority, pub_end, controller_addr, sni_key, then
    `extra`. `pub_period` (seconds) sets pub_end = now + pub_period."""
    if pub_period is not None:
        pub_end_ns = time.time_ns() + int(pub_period * 1e9)
    pairs: list[tuple[str, str]] = []
    if hostid is not None:
        pairs.append(("hostid", hostid))
    pairs += [("endpoint_location", v) for v in reversed(locations)]
    pairs += [("endpoint_country", v) for v in reversed(countries)]
    if exp_priority is not None:
        pairs.append(("exp_priority", str(exp_priority)))
    if pub_end_ns is not None:
        pairs.append(("pub_end", str(pub_end_ns)))
    pairs.append(("controller_addr", controller_addr))
    if sni_key is not None:
        pairs.append(("sni_key", sni_key))
    pairs += list(extra)
    return encode_nvlist(pairs).encode("ascii")


def _xdescr_bytes(x: XdescrLike) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("ascii")
    items = list(x.items()) if isinstance(x, Mapping) else list(x)
    return encode_nvlist([NVPair(k, v) for k, v in items]).encode("ascii")


@dataclass
class PublishCredentials:
    """What a publisher presents: its TLS agent identity, its experiment chain (leaf first:
    pubcmd, delpriv..., exppriv; may be empty for public channels), the raw root EOp key
    that signed the chain's top, and the broker roots it trusts."""

    agent: Credentials
    chain: Sequence[Certificate] = ()
    eopkey: bytes | None = None
    broker_roots: Sequence[PublicKeyLike] = field(default_factory=tuple)

    @classmethod
    def from_home(cls, home: PktlabHome | str | None = None) -> PublishCredentials:
        """The demo controller of a `pktlab init` home: agent_xc_xc with k_xc, the chain
        pubcmd_exper_xc + exppriv_eop_exper, root k_eop, broker root k_bop."""
        h = home if isinstance(home, PktlabHome) else PktlabHome.at(home)
        agent = Credentials.load([h.cert_path("agent_xc_xc")], h.key_path("k_xc"))
        chain = [
            *load_certificates(h.cert_path("pubcmd_exper_xc").read_bytes()),
            *load_certificates(h.cert_path("exppriv_eop_exper").read_bytes()),
        ]
        roots = [read_public_key(h.pubkey_path("k_bop"))] if h.pubkey_path("k_bop").exists() else []
        return cls(agent, chain, raw_public_key(read_public_key(h.pubkey_path("k_eop"))), roots)

    @classmethod
    def load(
        cls,
        agent_cert: str,
        private_key: str,
        chain: Sequence[str] = (),
        eop_pubkey: str | None = None,
        broker_roots: Sequence[str] = (),
    ) -> PublishCredentials:
        """From files: PubAgentCertPath, ControllerPrivkeyPath, the ExpExec chain, its
        TRUSTEDEOP key, BrokerCertRootPath."""
        agent = Credentials([*load_certificates(_read(agent_cert))], read_private_key(private_key))
        certs = [c for p in chain for c in load_certificates(_read(p))]
        certs = chain_order(certs, agent.leaf.public_key)
        eop = raw_public_key(read_public_key(eop_pubkey)) if eop_pubkey else None
        return cls(agent, certs, eop, [read_public_key(p) for p in broker_roots])


def chain_order(certs: Sequence[Certificate], leaf_key: bytes) -> list[Certificate]:
    """`certs` as pktxpmgr sends them, whatever the listed order (OBSERVED §3.2): the leaf
    (the cert of `leaf_key`), then each cert's issuer (its SKI = the AKI before it) up to
    the top; certs on no such path follow in listed order."""
    rest = list(certs)
    mine = [c for c in rest if c.public_key == leaf_key]
    leaf = next((c for c in mine if not c.cert_type.is_ca), mine[0] if mine else None)
    if leaf is None:
        return rest
    rest.remove(leaf)
    out = [leaf]
    while True:
        parent = next((c for c in rest if c.subject_key_id == out[-1].authority_key_id), None)
        if parent is None:
            return out + rest
        rest.remove(parent)
        out.append(parent)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _BrokerLink(Protocol):
    """Frames out, results back in order; the publication ends with the connection."""

    log = Logger()

    def __init__(self) -> None:
        self.framer = Framer(max_body=1024)
        self.waiting: list[Deferred[int]] = []
        self.lost: Failure | None = None
        self._end_waiters: list[Deferred[None]] = []

    def connectionMade(self) -> None:
        # As pktxpmgr (OBSERVED §3.1): the link idles for the whole publication, through
        # NATs that forget silent connections; the OS keepalive timers find a dead one.
        tcp = socket_connection(self.transport)
        if tcp is not None:
            try:
                tcp.setTcpKeepAlive(True)
            except OSError:  # going already: its close will be seen
                pass

    def when_ended(self) -> Deferred[None]:
        if self.lost is not None:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._end_waiters.append(d)
        return d

    def request(self, frame: bytes) -> Deferred[int]:
        if self.lost is not None or self.transport is None:
            return defer.fail(PublishError("the broker link is closed"))
        d: Deferred[int] = Deferred()
        self.waiting.append(d)
        self.transport.write(frame)
        return d

    def dataReceived(self, data: bytes) -> None:
        try:
            for item in self.framer.feed(data):
                if isinstance(item, Result) and self.waiting:
                    self.waiting.pop(0).callback(item.errid)
                else:  # a broker sends a publisher nothing else
                    self.log.warn("unexpected frame from the broker: {item!r}", item=item)
                    self.transport.loseConnection()  # type: ignore[union-attr]
                    return
        except WireError as e:  # a frame over the cap: it left here as a traceback
            self.log.warn("bad frame from the broker: {e}", e=e)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.errback(PublishError(f"broker closed the link: {reason.getErrorMessage()}"))
        waiters, self._end_waiters = self._end_waiters, []
        for e in waiters:
            e.callback(None)


class Publication:
    """A live publication: ends when `close()` is called or the link is lost (`ended`)."""

    def __init__(self, link: _BrokerLink, creds: PublishCredentials) -> None:
        self._link = link
        self._creds = creds
        self.xdescrs: list[bytes] = []
        self.channels: list[list[bytes]] = []

    @property
    def ended(self) -> Deferred[None]:
        """Fires (with None) when the link is gone: the publication is over everywhere."""
        return self._link.when_ended()

    @property
    def live(self) -> bool:
        return self._link.lost is None

    @deferred_api
    async def add(self, xdescr: XdescrLike, channels: Sequence[bytes] | None = None) -> None:
        """Publish one more xdescr on this link (xcerts then xpub, one result each)."""
        data = _xdescr_bytes(xdescr)
        creds = self._creds
        if creds.chain and creds.eopkey is None:
            raise PublishError("an experiment chain needs the root EOp key (eopkey)")
        eopkey = creds.eopkey if creds.chain and creds.eopkey is not None else bytes(KEYID_LEN)
        chans = list(channels) if channels is not None else []
        if not chans:
            if not creds.chain or creds.eopkey is None:
                raise PublishError("no channel: give public channels or an experiment chain")
            chans = [key_id(creds.eopkey)]
        for cert in creds.chain:
            errid = await self._link.request(encode(Xcert(cert.der)))
            if errid:
                raise PublishRefused("xcert", errid)
        errid = await self._link.request(encode(Xpub(chans, eopkey, data)))
        if errid:
            hint = pub_end_hint(data, time.time_ns()) if errid == Status.EPUBBADXD else ""
            raise PublishRefused("xpub", errid, hint)
        self.xdescrs.append(data)
        self.channels.append(chans)

    def close(self) -> Deferred[None]:
        """End the publication: close the link (TLS close_notify, then FIN)."""
        d = self.ended
        if self._link.transport is not None and self._link.lost is None:
            self._link.transport.loseConnection()
        return d

    def abort(self) -> None:
        if self._link.transport is not None and self._link.lost is None:
            self._link.transport.abortConnection()  # type: ignore[attr-defined]


def _broker_endpoint(reactor: Any, broker: str | Any) -> Any:
    if not isinstance(broker, str):
        return broker
    try:
        host, port = split_host_port(broker, reference=True)  # `::1:20556`, `[::1]:20556`
    except HostPortError:
        host, port = "", None
    number = DEFAULT_PUB_PORT if port is None else port_number(port)
    if not host or number is None:
        raise PublishError(f"bad broker address {broker!r}: expected HOST[:PORT]")
    return client_endpoint(reactor, host, number, 15)


@deferred_api
async def publish(
    reactor: Any,
    broker: str | Any,
    xdescr: XdescrLike,
    credentials: PublishCredentials,
    *,
    channels: Sequence[bytes] | None = None,
    timeout: float = 15.0,
) -> Publication:
    """Connect to `broker` ("HOST[:PORT]", default port 20556, or a client endpoint),
    publish `xdescr` on `channels` (default: the chain's root EOp channel), and return the
    live `Publication`. Raises `PublishRefused` (broker said no) or `PublishError`."""
    creds = credentials
    creator = PPKSClientCreator(creds.agent, AuthMode.AGENT, list(creds.broker_roots))
    endpoint = PPKSClientEndpoint(_broker_endpoint(reactor, broker), creator)
    factory = Factory.forProtocol(_BrokerLink)
    factory.noisy = False
    d = endpoint.connect(factory)
    d.addTimeout(timeout, reactor)
    try:
        link: _BrokerLink = await d
    except defer.TimeoutError:
        raise PublishError(f"no TLS link to broker {broker} within {timeout:g} s") from None
    except ControllerError:
        raise
    except Exception as e:
        raise PublishError(f"cannot reach broker {broker}: {e}") from e
    pub = Publication(link, creds)
    try:
        await pub.add(xdescr, channels)
    except BaseException:
        pub.abort()
        raise
    return pub
