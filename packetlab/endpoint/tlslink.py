"""The endpoint's TLS 1.3 link to a controller (PROTOCOL.md §4.6) and the session admission
that follows it (§1.4 step 2, §4.5).

The endpoint is the TLS client: it presents `ControllerCertChainPath` (its subcmd chain)
with `EndpointPrivKey`, sends SNI = `NoSubModeSNIKey` (if set), and checks the controller's
chain in ENDPOINT_AUTH_CONTROLLER mode against the `EndpointOpPubKeyPath` keys. Only then
does a session start, under the limits of that chain (`packetlab.endpoint.limits`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from packetlab.clockstep import mark_wall
from packetlab.endpoint.config import ConfigError, EndpointConfig
from packetlab.endpoint.limits import LimitsGate, SessionRefused, admit
from packetlab.ppks import Accounting, PktlabHome, read_public_key
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSClientEndpoint,
    TLSConfigError,
    VerifiedPeer,
    chain_validity,
)
from packetlab.tls.credentials import _utc

__all__ = ["Admission", "TLSLink", "open_accounting"]

log = Logger(namespace="pktendpoint")
ACCOUNTING_BUSY_TIMEOUT = 1.0  # s; SQLite's default here was 30 s: the reactor froze
RUNTIME_TICK = 1.0  # s between runtime debits (each reserves up to RUNTIME_CHUNK ahead)
HANDSHAKE_TIMEOUT = 10.0  # s for a controller (or a broker) to finish the TLS handshake


_ROLE_OF = {
    "agent": "an agent certificate is the identity of a broker, a proxy or the endpoint's "
    "own broker link, EndpointAgentCertPath",
    "pubcmd": "a pubcmd certificate is a controller's identity",
    "exppriv": "an exppriv certificate belongs in a controller's chain",
}


def endpoint_chain_error(certs: Any, what: str) -> str | None:
    """Why every controller refuses `certs` as an endpoint's chain, or None: checked
    as the controller does (CONTROLLER_AUTH_ENDPOINT: a subcmd, then delpriv ones, each
    signed by the next, §4.4) but against any root, which only the controller knows.
    An agent or pubcmd certificate here used to start without a word, and every
    controller refused it with `wrong_cert_type` in its own log alone."""
    from packetlab.ppks import ChainError
    from packetlab.ppks.verify import verify_chain

    try:
        verify_chain(AuthMode.CONTROLLER_AUTH_ENDPOINT, certs)
    except ChainError as e:
        label = certs[e.index].cert_type.label if e.index is not None else ""
        role = f" ({_ROLE_OF[label]})" if label in _ROLE_OF else ""
        return (
            f"{what}: {e}{role}: every controller checks the endpoint's chain (a subcmd "
            "certificate, then any delpriv ones, leaf first) and refuses this one"
        )
    return None


@dataclass
class TLSLink:
    """`ControllerLink` over TLS with PPKS chains."""

    creator: PPKSClientCreator
    trusts_any_root: bool
    credentials: Credentials | None = None
    roots: tuple[Any, ...] = ()
    #: The chain's earliest not_after (Unix s), and what to say when it passes.
    expires: tuple[int, str] | None = None

    @classmethod
    def from_config(cls, cfg: EndpointConfig) -> TLSLink:
        """Load the credentials named by the config; `ConfigError` says what is missing."""
        if not cfg.controller_chain or not cfg.private_key:
            raise ConfigError(
                "TLS to the controller needs ControllerCertChainPath (the subcmd chain) and "
                "EndpointPrivKey (its key); set them in endpt.conf or with --cert-chain and "
                "--private-key (pktlab init writes a demo endpt.conf), or use "
                "--insecure-plaintext for a loopback controller"
            )
        try:
            creds = Credentials.load(cfg.controller_chain, cfg.private_key)
        except TLSConfigError as e:
            raise ConfigError(
                f"{cfg.credentials_fault(e.part, 'ControllerCertChainPath')}: {e}"
            ) from None
        what = cfg.named("ControllerCertChainPath")
        error, warning, not_after = chain_validity(creds.chain, what, time.time())
        if error is not None:  # it used to start and fail every connection silently
            raise ConfigError(error)
        shape = endpoint_chain_error(creds.chain, what)
        if shape is not None:
            raise ConfigError(shape)
        if warning is not None:
            log.warn("{warning}", warning=warning)
        roots = cfg.read_files("EndpointOpPubKeyPath", cfg.eop_pubkeys, read_public_key)
        creator = PPKSClientCreator(
            creds, AuthMode.ENDPOINT_AUTH_CONTROLLER, roots, snikey=cfg.nosub_snikey
        )
        expired = (
            f"{what}: the chain expired now; every controller will refuse this endpoint "
            "until it is renewed and the endpoint restarted"
        )
        return cls(creator, not roots, creds, tuple(roots), (not_after, expired))

    def for_snikey(self, snikey: str | None) -> TLSLink:
        """The same link sending another SNI (broker mode: the xdescr's sni_key)."""
        if snikey == self.creator.snikey:
            return self
        creator = PPKSClientCreator(
            self.credentials, AuthMode.ENDPOINT_AUTH_CONTROLLER, self.roots, snikey=snikey
        )
        return TLSLink(creator, self.trusts_any_root, self.credentials, self.roots, self.expires)

    def watch_expiry(self, reactor: Any) -> None:
        """One error line when the chain expires while the endpoint runs (within 30 days:
        a timer, not one for every endpoint's 2038)."""
        if self.expires is None:
            return
        not_after, text = self.expires
        delay = not_after + 1 - time.time()
        if 0 < delay <= 30 * 86400:
            mark_wall(reactor.callLater(delay, log.error, "{text}", text=text))

    def endpoint(self, reactor: object, address: object) -> IStreamClientEndpoint:
        from packetlab.endpoint.service import ControllerAddress, PlaintextLink

        assert isinstance(address, ControllerAddress)
        tcp = PlaintextLink().endpoint(reactor, address)
        # A controller (or anything on its port) that accepts and then says nothing: the
        # endpoint waited in the handshake for ever, without a log line. The reference
        # endpoint's setup window is 10 s.
        return PPKSClientEndpoint(
            tcp, self.creator, handshake_timeout=(HANDSHAKE_TIMEOUT, cast(Any, reactor))
        )


def open_accounting(cfg: EndpointConfig) -> Accounting:
    """The accounting store of `RLimDBPath` (default ~/.pktlab/endpt.rlim.sqlite3)."""
    path = cfg.rlim_db or str(PktlabHome.at().accounting_db)
    parent = Path(path).parent
    if cfg.rlim_db and not parent.is_dir():
        # Made only for the default (the pktlab home): a mistyped operator path would
        # otherwise leave the accounting in a new tree nobody backs up or looks at.
        where = cfg.origins.get("RLimDBPath")
        raise ConfigError(
            f"{where + ': ' if where else ''}RLimDBPath: directory {str(parent)!r} does not "
            "exist (create it, or correct the path)"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # prefetch: the next quota chunk is committed (fsync) by a worker thread, not by
        # the reactor in the middle of a scheduled train.
        # lazy: SQLite is loaded when a chain with limits first needs it (docs/performance.md)
        # timeout: what the reactor may wait for another process's write lock on the
        # file (a second endpoint's commit takes milliseconds; an operator's open
        # `sqlite3` shell, forever): past it the request is refused (fail closed), and
        # while it lasts the retries run in the worker (Meter), not in the reactor.
        return Accounting(path, prefetch=True, lazy=True, timeout=ACCOUNTING_BUSY_TIMEOUT)
    except Exception as e:  # sqlite3.Error, OSError, ValueError: a clear one-line error
        raise ConfigError(f"RLimDBPath: cannot open accounting database {path!r}: {e}") from None


@dataclass
class Admission:
    """Turns a verified controller peer into the `LimitsGate` of its session."""

    accounting: Accounting | None
    clock: Callable[[], int]

    def gate_for(self, peer: VerifiedPeer | None, priority: int | None = None) -> LimitsGate | None:
        """None for a plaintext link (no chain, no limits). Raises `SessionRefused`, also
        when `priority` (the xdescr's exp_priority) is above the chain's max_num_priority."""
        if peer is None:
            return None
        if peer.chain is None or not peer.chain.certs:
            raise SessionRefused("no_chain", "the controller presented no usable chain")
        extra = {} if priority is None else {"priority": priority}
        gate = admit(peer.chain.certs, self.accounting, self.clock, log=log, **extra)
        log.info(
            "controller chain admitted: {n} cert(s), experiment ends in {t:.1f} s ({at}), "
            "{d} monitor digest(s) required",
            n=len(peer.chain.certs),
            t=(gate.end_ns - self.clock()) / 1e9,
            at=_utc(gate.end_ns // 1_000_000_000),  # "in 351054399.4 s" alone says little
            d=len(gate.required_digests),
        )
        return gate

    def watch(self, gate: LimitsGate, proto: Any, reactor: Any) -> None:
        """End the session at the experiment end time (§4.5) and pay its runtime ahead
        every `RUNTIME_TICK` seconds; both stop when the session is over."""

        def expire(why: str) -> None:
            log.warn("experiment end time reached ({why}): disconnecting", why=why)
            proto.end_session(f"experiment end time reached ({why})", drain=True)

        def tick() -> None:
            if not gate.charge_runtime():
                stop()
                expire("max_exp_period used up")

        end = mark_wall(
            reactor.callLater(max(0.0, (gate.end_ns - self.clock()) / 1e9), expire, "end")
        )
        loop = LoopingCall(tick)
        loop.clock = reactor
        loop.start(RUNTIME_TICK, now=False)

        def stop(_: object = None) -> object:
            if end.active():
                end.cancel()
            if loop.running:
                loop.stop()
            return _

        proto.done.addBoth(stop)
