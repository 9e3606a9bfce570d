"""The proxy's two ports (PROTOCOL.md §6, BROKER-PROXY-OBSERVED.md §4-§5).

Setup port (managers): TLS 1.3 agent server; `xreg(snikey)` → `result`; the manager's
close_notify; at once the raw `PKTLAB` preamble; its 6-byte echo. The socket then idles in
the `BacklogRegistry` under that snikey.

Endpoint port: peek the whole ClientHello (`ClientHelloReader`, TLS is not terminated),
take a backlog of its SNI, write the ClientHello bytes to it unchanged, then relay both
ways (`RelayEnd`). Every refusal is one log line, one counter and a clean close.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.addrshare import DEFAULT_SHARE, AddressShare, oldest_of_busiest
from packetlab.clockstep import steady, steady_clock
from packetlab.hostport import host_port
from packetlab.logbudget import LogBudget
from packetlab.tls import PPKSServerOptions
from packetlab.tls.handoff import HandoffError, TLSHandoff
from packetlab.wire.constants import Status

from .clienthello import DEFAULT_HELLO_CAP, ClientHelloReader, Hello, HelloError
from .owners import SnikeyOwners
from .registry import BacklogRegistry, ProxyStats, RegistryFull
from .relay import RelayEnd
from .splice import RELAY_MODES, SpliceRelay
from .splice import available as splice_available

__all__ = [
    "DEFAULT_BACKLOG_WAIT",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_PENDING_MAX",
    "ENORES_DELAY",
    "PREAMBLE",
    "Proxy",
    "keepalive",
]

PREAMBLE = b"PKTLAB"
DEFAULT_PENDING_MAX = 1024  # per port: connections not yet routed / registered
# TCP keepalive on every connection (seconds idle before the first probe; 0: off). An idle
# backlog waits indefinitely, often through the manager's NAT, which forgets a silent
# connection after minutes: the probes keep the mapping alive, and a manager or endpoint
# that vanished is noticed (4 unanswered probes, KEEPALIVE/4 apart) instead of an endpoint
# being spliced to a dead backlog.
DEFAULT_KEEPALIVE = 60.0
DEFAULT_BACKLOG_WAIT = 5.0  # s an endpoint may wait for a backlog of a snikey in use
# s an xreg refusal (ENORES) is held back: pktxpmgr opens a new setup connection at once
# after one (OBSERVED §4.1, ~5 ms later, no backoff), so an answer at once made it spin at
# ~200 TLS handshakes a second; under its 2 s BacklogConnTimeout it still gets the answer.
ENORES_DELAY = 1.0
KNOWN_FOR = 600.0  # s a snikey counts as in use after its last backlog was seen
_KEEPALIVE_PROBES = 4
# TLS alert record: fatal unrecognized_name, sent before closing an endpoint we cannot route.
_ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
# fatal decode_error: what OpenSSL, the manager's TLS, answers a server_name it cannot take.
_ALERT_DECODE_ERROR = bytes.fromhex("15030300020232")
_SETUP_BUFFER_CAP = 65536  # TLS bytes a registering manager may have in flight


class Proxy:
    """State shared by both ports: the registry, the counters and the settings."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        tls_options: PPKSServerOptions,
        *,
        hello_cap: int = DEFAULT_HELLO_CAP,
        hello_timeout: float = 10.0,
        setup_timeout: float = 10.0,
        registry: BacklogRegistry[SetupProtocol] | None = None,
        relay: str | None = None,
        pending_max: int = DEFAULT_PENDING_MAX,
        keepalive: float = DEFAULT_KEEPALIVE,
        backlog_wait: float = DEFAULT_BACKLOG_WAIT,
        link_max: int | None = None,
        per_address_share: float = DEFAULT_SHARE,
    ) -> None:
        self.reactor = reactor
        self.tls_options = tls_options
        self.hello_cap = hello_cap
        self.hello_timeout = hello_timeout
        self.setup_timeout = setup_timeout
        self.registry: BacklogRegistry[SetupProtocol] = registry or BacklogRegistry()
        self.stats = ProxyStats()
        self.live: set[_Conn] = set()
        # Connections per port not yet routed (endpoints) or registered (managers), oldest
        # first: each holds up to a ClientHello or a TLS session, so their number is
        # capped; a new one evicts the oldest (a slow-loris peer; a real one is quick).
        self.pending_max = pending_max
        # Backlogs and splices at once (None: no cap but the registry's), from the
        # descriptor limit (tap.link_budget): past it accept() fails with EMFILE and
        # Twisted closes every new connection at once, endpoints and real managers too
        # (117 backlogs of one stranger without a certificate did it under ulimit -n 128).
        self.link_max = link_max
        # One manager address's share of those (addrshare.py): one stranger without a
        # certificate registered backlogs until no manager from elsewhere could.
        self.share = AddressShare(steady_clock(reactor), per_address_share)
        self.keepalive = keepalive
        # An endpoint whose snikey has no idle backlog now, but had one lately, waits up to
        # `backlog_wait` s for the manager's replenishment (it registers a new backlog as
        # soon as one is used): the reference endpoint drops the experiment on a TLS alert.
        self.backlog_wait = backlog_wait
        self.waiting: dict[str, dict[EndpointProtocol, None]] = {}
        # snikey -> its owner and when a backlog of it was last seen (owners.py says why),
        # bounded by the caps
        self.owners = SnikeyOwners(2 * self.registry.total_cap, self.registry.count)
        self.pending: dict[str, dict[_Conn, None]] = {"endpoints": {}, "setup": {}}
        # pending connections per source address and port: the one closed for a new one
        # is the oldest of the address holding the most (`oldest_of_busiest`)
        self.pending_by = {port: AddressShare(steady_clock(reactor)) for port in self.pending}
        self._saturated = {"endpoints": False, "setup": False}
        # Refusals come as fast as anyone connects: so many lines a minute per port (a
        # flood of 1,500 bad registrations was 1,500 lines); the counters count them all.
        clock = steady_clock(reactor)
        self.refusal_log = {"endpoints": LogBudget(clock), "setup": LogBudget(clock)}
        self.relays: set[SpliceRelay] = set()
        # "copy"/"splice": SpliceRelay on the sockets (Linux); "python": RelayEnd.
        self.relay = relay or ("copy" if splice_available() else "python")
        if self.relay not in (*RELAY_MODES, "python"):
            raise ValueError(f"relay {self.relay!r}: not one of {', '.join(RELAY_MODES)}, python")
        if self.relay == "splice" and not splice_available():
            raise ValueError("relay splice: this system has no splice(2)")

    def setup_factory(self) -> Factory:
        return _factory(lambda: SetupProtocol(self))

    def endpoint_factory(self) -> Factory:
        return _factory(lambda: EndpointProtocol(self))

    def gauges(self) -> dict[str, int]:
        """Connections of the moment: endpoints without a whole ClientHello or waiting for a
        backlog, managers registering, endpoints waiting for a backlog."""
        return {
            "pending_endpoints": len(self.pending["endpoints"]),
            "pending_setups": len(self.pending["setup"]),
            "waiting": sum(len(q) for q in self.waiting.values()),
        }

    def stats_line(self) -> str:
        return self.stats.line(self.registry, self.gauges())  # type: ignore[arg-type]

    def stats_json(self) -> str:
        return json.dumps(self.stats.as_dict(self.registry, self.gauges()))  # type: ignore[arg-type]

    def close_all(self) -> None:
        idle = sum(1 for c in self.live if isinstance(c, SetupProtocol) and c.state == "backlog")
        if self.live:  # one line, not a `backlog ... closed by the manager` line each
            self.log.info("stopping: closing {n} connection(s), {idle} of them idle backlogs",
                          n=len(self.live), idle=idle)  # fmt: skip
        for relay in list(self.relays):
            relay.fail("proxy stopping")
        for conn in list(self.live):
            conn._closing = True  # closed by us: no refusal line or count for it
            if conn.transport is not None:
                conn.transport.loseConnection()

    def admit(self, conn: _Conn) -> None:
        """Count `conn` as pending on its port; at `pending_max`, the oldest pending one of
        the address holding the most there is closed first (logged once per episode,
        counted each time): a flood from one address closes its own."""
        pending, by = self.pending[conn.port], self.pending_by[conn.port]
        if len(pending) >= self.pending_max:
            oldest = oldest_of_busiest(pending, by, lambda c: c.host)
            del pending[oldest]
            by.remove(oldest.host)
            if not self._saturated[conn.port]:
                self._saturated[conn.port] = True
                self.log.warn(
                    "{port} port: {n} connections pending (cap {cap}, --pending-max): "
                    "closing the oldest pending one of the address holding the most "
                    "({host}) for each new one",
                    port=conn.port,
                    n=len(pending) + 1,
                    cap=self.pending_max,
                    host=oldest.host,
                )
            oldest.evict()
        pending[conn] = None
        by.add(conn.host)

    def release(self, conn: _Conn) -> None:
        pending = self.pending[conn.port]
        if conn not in pending:
            return
        del pending[conn]
        self.pending_by[conn.port].remove(conn.host)
        if self._saturated[conn.port] and len(pending) < self.pending_max * 3 // 4:
            self._saturated[conn.port] = False
            self.log.info(
                "{port} port: {n} connections pending, under the cap again (evicted "
                "so far: {busy} endpoint(s), {setups} manager(s))",
                port=conn.port,
                n=len(pending),
                busy=self.stats.refusals["busy"],
                setups=self.stats.setup_busy,
            )

    def links_full(self, mine: bool = False) -> str | None:
        """Why one more backlog would not fit in the descriptor limit, or None; `mine`:
        the asking manager's xreg was granted, so it is one of those counted. A backlog
        counts as the splice it becomes, so the endpoints it serves fit too; a granted
        xreg counts as its backlog (12 managers at once all passed the check first)."""
        if self.link_max is None:
            return None
        granted = sum(1 for c in self.pending["setup"] if getattr(c, "snikey", None))
        n = self.registry.total + self.stats.active_splices + granted - mine
        if n < self.link_max:
            return None
        return (
            f"{n} backlog and spliced connections (cap {self.link_max}, from the "
            "descriptor limit: raise `ulimit -n`)"
        )

    @property
    def link_budget(self) -> int:
        """Backlogs and splices at once: the descriptor limit's, or --backlog-max."""
        cap = self.registry.total_cap
        return cap if self.link_max is None else min(cap, self.link_max)

    def xreg_refusal(self, snikey: str, manager: str, host: str = "?") -> tuple[str, str] | None:
        """(cause, why) `manager`'s xreg of `snikey` from `host` gets ENORES, or None.
        Causes: `held` by another manager, `per_snikey` or `backlog_max` (the registry's
        caps), `per_address` (the address holds its share of `link_budget`: backlogs,
        splices and granted xregs), `descriptors` (`links_full`)."""
        other = self.held_by_another(snikey, manager)
        if other is not None:
            mine, theirs = _shown(manager, other)
            return "held", f"snikey {snikey} is held by another manager ({theirs}; this is {mine})"
        full = self.registry.full(snikey)
        if full is not None:
            whole = self.registry.total >= self.registry.total_cap
            return ("backlog_max" if whole else "per_snikey"), full
        full = self.links_full()
        if full is not None:
            return "descriptors", full
        full = self.share.refusal(host, self.link_budget, "backlog and spliced connections")
        return None if full is None else ("per_address", full)

    def seen_snikey(self, snikey: str, owner: str | None = None) -> None:
        self.owners.seen(snikey, steady(self.reactor), owner)

    def held_by_another(self, snikey: str, manager: str) -> str | None:
        """The manager holding `snikey`, if not `manager`: the one that registered it, while
        it has idle backlogs or was in use in the last `KNOWN_FOR` s."""
        owner = self.owners.owner(snikey)
        if owner is None or owner == manager:
            return None
        return owner if self.registry.count(snikey) or self.expects(snikey) else None

    def expects(self, snikey: str) -> bool:
        """Whether a backlog of `snikey` is likely to come: one was seen in the last
        `KNOWN_FOR` s (a manager serving it, between two replenishments)."""
        seen = self.owners.last_seen(snikey)
        return seen is not None and steady(self.reactor) - seen < KNOWN_FOR

    def wait_for_backlog(self, endpoint: EndpointProtocol, snikey: str) -> None:
        self.waiting.setdefault(snikey, {})[endpoint] = None

    def stop_waiting(self, endpoint: EndpointProtocol, snikey: str) -> None:
        queue = self.waiting.get(snikey)
        if queue is not None and queue.pop(endpoint, 0) is None and not queue:
            del self.waiting[snikey]

    def waiter(self, snikey: str) -> EndpointProtocol | None:
        """The endpoint that has waited longest for a backlog of `snikey` (removed)."""
        queue = self.waiting.get(snikey)
        if not queue:
            return None
        endpoint = next(iter(queue))
        self.stop_waiting(endpoint, snikey)
        return endpoint

    def later(self, delay: float, f: Any, *args: Any) -> IDelayedCall:
        return self.reactor.callLater(delay, f, *args)

    def warn_refusal(self, port: str, fmt: str, **fields: object) -> None:
        """One warning line for a refusal on `port` ("setup"/"endpoints"), within that
        port's log budget (a peer causes these at will); `fmt` is followed by the
        budget's note of lines left out."""
        more = self.refusal_log[port].allow()
        if more is not None:
            self.log.warn(fmt + "{more}", more=more, **fields)


def _factory(build: Any) -> Factory:
    f = Factory()
    f.buildProtocol = lambda addr: build()  # type: ignore[method-assign]
    f.noisy = False
    return f


class _Conn(RelayEnd):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.peer_text = "?"
        self.host = "?"  # the peer's address, as its share counts it
        self._timer: IDelayedCall | None = None
        self._closing = False
        self.kernel = False  # relayed by SpliceRelay: the transport only closes

    port = "?"

    def connectionMade(self) -> None:
        self.proxy.live.add(self)
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer_text = host_port(peer)
        self.host = str(getattr(peer, "host", "?"))
        self.proxy.admit(self)
        keepalive(self.transport, self.proxy.keepalive)

    def _settled(self) -> None:
        """Routed or registered (or gone): no longer pending."""
        self.proxy.release(self)

    def evict(self) -> None:
        """Closed to make room for a newer pending connection (no log line each)."""
        raise NotImplementedError

    def _arm(self, seconds: float, why: str) -> None:
        self._timer = self.proxy.later(seconds, self._expired, why)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self, why: str) -> None:
        self._timer = None
        self.refuse("timeout", why)

    def refuse(self, reason: str, text: str, *, alert: bytes = b"") -> None:
        raise NotImplementedError

    def _close(self) -> None:
        self._closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        self._settled()
        self.proxy.live.discard(self)
        if self.spliced:
            self.relay_lost(reason)


def _what(item: wire.Item) -> str:
    """A frame for a refusal line: its name, and for a malformed one the rule it broke
    (an xreg's snikey: 1..63 of [a-z0-9], PROTOCOL.md §4.6)."""
    if isinstance(item, wire.Malformed):
        return f"a malformed {_type_name(item.msgtype)}: {item.error.rule} ({item.body[:80]!r})"
    if isinstance(item, wire.Unknown):
        return f"an unknown message type 0x{item.msgtype:02x}"
    return type(item).__name__


def _type_name(code: int) -> str:
    try:
        return wire.MsgType(code).name.lower()
    except ValueError:
        return f"type 0x{code:02x}"


def _sni_text(sni: str | None) -> str:
    """An endpoint's SNI for a log line: quoted, and cut after 64 characters (a snikey
    has at most 63; the SNI may fill the whole --hello-cap)."""
    if sni is None or len(sni) <= 64:
        return repr(sni)
    return f"{sni[:64]!r}... ({len(sni)} characters)"


def _shown(mine: str, theirs: str) -> tuple[str, str]:
    """Two managers for a log line: an agent key cut to 16 hex digits, unless both keys
    begin alike (then whole, or the line would name one manager twice)."""

    def cut(who: str) -> str:
        return who[: len("agent key ") + 16] + "..." if who.startswith("agent key ") else who

    short = cut(mine), cut(theirs)
    return short if short[0] != short[1] else (mine, theirs)


def keepalive(transport: Any, idle: float) -> bool:
    """TCP keepalive on `transport`: the first probe after `idle` s of silence, then one
    every idle/4 s, given up after `_KEEPALIVE_PROBES`. False where it cannot be set."""
    setter = getattr(transport, "setTcpKeepAlive", None)
    if not idle or setter is None:
        return False
    try:
        setter(True)
        sock = transport.getHandle()
        first = max(1, round(idle))
        for name, value in (("TCP_KEEPIDLE", first), ("TCP_KEEPINTVL", max(1, first // 4)),
                            ("TCP_KEEPCNT", _KEEPALIVE_PROBES)):  # fmt: skip
            opt = getattr(socket, name, None)
            if opt is not None:  # Linux; elsewhere the system's timers
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
    except (OSError, AttributeError):  # not TCP
        return False
    return True


def _unbuffered(*transports: Any) -> bool:
    """SpliceRelay needs plain TCP transports with nothing left in Twisted's write buffer."""
    return all(
        hasattr(t, "fileno") and hasattr(t, "stopReading") and not getattr(t, "dataBuffer", b"")
        and not getattr(t, "_tempDataBuffer", [])
        for t in transports
    )  # fmt: skip


class SetupProtocol(_Conn):
    """A manager's setup connection, later a backlog, later one end of a splice."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy)
        self.tls: TLSHandoff | None = None
        self.framer = wire.Framer(max_body=1024)
        self.snikey: str | None = None
        self.state = "tls"  # tls -> close_notify -> echo -> backlog -> spliced
        self._echo = b""
        self._held: IDelayedCall | None = None  # an ENORES answer waiting (ENORES_DELAY)
        self.manager = "?"  # who registers: its agent key if it showed one, else its address
        self._in_share = False  # counted in the proxy's AddressShare (granted xreg on)

    port = "setup"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.tls = TLSHandoff(
            self.proxy.tls_options.serverConnectionForTLS(None),  # type: ignore[arg-type]
            is_client=False,
        )
        t = self.proxy.setup_timeout
        self._arm(t, f"registration not done in {t:g} s")

    def refuse(self, reason: str, text: str, *, alert: bytes = b"") -> None:
        if self._closing:
            return
        if self.state == "backlog":  # a closing backlog must not be handed to an endpoint
            self.proxy.registry.discard(self.snikey or "", self)
        else:
            self.proxy.stats.registration_failures += 1
        self.proxy.warn_refusal(
            "setup", "setup {peer}: {text}; closing", peer=self.peer_text, text=text, reason=reason
        )
        self._close()

    def evict(self) -> None:
        self.proxy.stats.registration_failures += 1
        self.proxy.stats.setup_busy += 1
        self._close()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self.state == "spliced":
            self.relay_data(data)
        elif self.state in ("tls", "close_notify"):
            self._tls_data(data)
        elif self.state == "echo":
            self._echo_data(data)
        else:  # an idle backlog must stay silent until an endpoint is spliced to it
            self.refuse("idle_data", f"{len(data)} unexpected byte(s) on an idle backlog")

    def _tls_data(self, data: bytes) -> None:
        assert self.tls is not None
        try:
            step = self.tls.receive(data)
        except HandoffError as e:
            self.refuse("tls", str(e))
            return
        if self.tls.buffered > _SETUP_BUFFER_CAP:
            self.refuse("flood", f"more than {_SETUP_BUFFER_CAP} bytes of TLS in flight")
            return
        if step.handshake_done:
            key = step.peer.public_key if step.peer is not None else None
            host = self.peer_text.rsplit(":", 1)[0]
            # the whole key: two keys sharing a prefix are two managers (`_shown` shortens)
            self.manager = f"agent key {key.hex()}" if key else f"address {host}"
        out = step.out
        if step.data:
            out += self._frames(step.data)
        if out:
            self.transport.write(out)  # type: ignore[union-attr]
        if self._closing:
            return
        if step.closed:
            if self.state != "close_notify":
                self.refuse("early_close", "close_notify before a registration")
                return
            self._drop_held()  # a manager that did not wait for its answer
            if self.snikey is None:
                # its xreg was refused (counted then): the preamble acknowledges a
                # registration (OBSERVED §4.2), so a refused one gets the close, not PKTLAB
                self._close()
                return
            # The observed order: the manager's close_notify, then at once the raw preamble.
            self.state = "echo"
            self.transport.write(PREAMBLE)  # type: ignore[union-attr]
            if step.rest:
                self._echo_data(step.rest)

    def _frames(self, data: bytes) -> bytes:
        assert self.tls is not None
        try:
            items = list(self.framer.feed(data))
        except wire.WireError as e:
            self.refuse("bad_frame", f"bad frame: {e}")
            return b""
        if len(items) > 1 and self.state == "tls":  # (one at a time: it was never read)
            self.refuse("bad_message", f"expected one xreg, got {len(items)} messages at once")
            return b""
        for item in items:
            if self.state != "tls" or not isinstance(item, wire.Xreg):
                what = _what(item) if self.state == "tls" else f"a second message ({_what(item)})"
                self.refuse("bad_message", f"expected one xreg, got {what}")
                return b""
            snikey = item.snikey.decode("ascii")
            status = Status.SUCCESS
            refusal = self.proxy.xreg_refusal(snikey, self.manager, self.host)
            if refusal is not None:  # a soft failure for the manager: it warns and tries
                # again (as often as it likes: in the setup port's log budget, as its
                # refusals; counted by cause, since the lines are budgeted)
                cause, full = refusal
                self.proxy.stats.enores[cause] += 1
                if cause != "per_address":
                    self.proxy.warn_refusal(
                        "setup", "setup {peer}: refusing xreg: {e}", peer=self.peer_text, e=full
                    )
                else:  # one address's flood: one line a minute for it
                    more = self.proxy.share.log_line(self.host, self.proxy.refusal_log["setup"])
                    if more is not None:
                        self.proxy.log.warn("setup {peer}: refusing xreg: {e}{more}",
                                            peer=self.peer_text, e=full, more=more)  # fmt: skip
                status = Status.ENORES
            self.snikey = snikey if status == Status.SUCCESS else None
            if self.snikey is not None and not self._in_share:
                self._in_share = True  # until its connection is gone, spliced or not
                self.proxy.share.add(self.host)
            self.state = "close_notify"
            if status != Status.SUCCESS:
                self.proxy.stats.registration_failures += 1
                # encrypted when it goes: TLS records must leave in sequence order
                self._held = self.proxy.later(ENORES_DELAY, self._send_held, int(status))
                return b""
            if self.tls.closed:  # its close_notify came with the xreg: it did not wait
                return b""  # for the result, and a record now would precede PKTLAB raw
            return self.tls.send(wire.encode(wire.Result(int(status))))
        return b""

    def _send_held(self, status: int) -> None:
        self._held = None
        tls = self.tls
        if self._closing or self.transport is None or tls is None or tls.closed:
            return
        self.transport.write(tls.send(wire.encode(wire.Result(status))))

    def _drop_held(self) -> None:
        if self._held is not None and self._held.active():
            self._held.cancel()
        self._held = None

    def _echo_data(self, data: bytes) -> None:
        self._echo += data
        if not PREAMBLE.startswith(self._echo[: len(PREAMBLE)]):
            self.refuse("bad_echo", f"preamble echo {self._echo[:6]!r} is not {PREAMBLE!r}")
            return
        if len(self._echo) < len(PREAMBLE):
            return
        if len(self._echo) > len(PREAMBLE) or self.snikey is None:
            why = "bytes after the preamble echo" if self.snikey else "xreg was refused"
            self.refuse("bad_echo", why)
            return
        # Checked again: another manager's registration of this snikey may have finished
        # between our xreg and this echo (both xregs came before either echo); becoming a
        # backlog now would make us its owner and lock that manager out of its snikey.
        other = self.proxy.held_by_another(self.snikey, self.manager)
        if other is not None:
            mine, theirs = _shown(self.manager, other)
            self.refuse(
                "held",
                f"snikey {self.snikey} was taken by another manager ({theirs}; this is "
                f"{mine}) during this registration",
            )
            return
        full = self.proxy.links_full(mine=True)  # splices may have begun since the xreg
        if full is not None:
            self.refuse("full", full)
            return
        waiter = self.proxy.waiter(self.snikey)
        if waiter is None:
            try:
                self.proxy.registry.add(self.snikey, self)
            except RegistryFull as e:
                self.refuse("full", str(e))
                return
        self._disarm()
        self._settled()
        self.state = "backlog"
        self.proxy.seen_snikey(self.snikey, self.manager)
        self.proxy.stats.registrations += 1
        if waiter is not None:  # an endpoint was waiting for this snikey: route it now
            waiter.route(self)
            return
        self.proxy.log.info(
            "backlog {peer} registered for snikey {snikey} ({n} idle)",
            peer=self.peer_text,
            snikey=self.snikey,
            n=self.proxy.registry.count(self.snikey),
        )

    def readConnectionLost(self) -> None:
        if self.spliced:
            self.relay_eof()
        else:
            self._gone_early()
            self._leave()
            if self.transport is not None:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._drop_held()
        if self._in_share:
            self._in_share = False
            self.proxy.share.remove(self.host)
        if not self.spliced:
            self._gone_early()
            self._leave()
        super().connectionLost(reason)

    def _gone_early(self) -> None:
        """The manager closed (or half-closed) in the middle of its registration: a line
        and a count, as the endpoints port's `eof`. Not after an xreg answered ENORES (a
        soft failure, already counted: the manager gives up the link there)."""
        if self._closing:
            return
        if self.state == "tls":
            done = self.tls is not None and self.tls.handshake_done
            step = "before its xreg" if done else "before its TLS handshake finished"
        elif self.state == "close_notify" and self.snikey is not None:
            step = "after its xreg, before its close_notify"
        elif self.state == "echo" and self.snikey is not None:
            step = "before it echoed the preamble"
        else:
            return
        self.refuse("early_close", f"closed by the manager {step}")

    def _leave(self) -> None:
        if self.state == "backlog" and self.snikey is not None:
            # (closed by us at stop, or after a refusal: its own line says so)
            if self.proxy.registry.discard(self.snikey, self) and not self._closing:
                self.proxy.log.info(
                    "backlog {peer} for snikey {snikey} closed by the manager",
                    peer=self.peer_text,
                    snikey=self.snikey,
                )
            self.state = "gone"

    def count(self, n: int) -> None:
        self.proxy.stats.bytes_to_endpoint += n


class EndpointProtocol(_Conn):
    """An endpoint's connection: ClientHello peek, then one end of a splice."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy)
        self.reader = ClientHelloReader(proxy.hello_cap)
        self.relay: SpliceRelay | None = None
        self.hello: Hello | None = None  # while waiting for a backlog
        self._more = b""  # bytes after the hello while waiting

    port = "endpoints"

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm(
            self.proxy.hello_timeout, f"no complete ClientHello in {self.proxy.hello_timeout:g} s"
        )

    def _unwait(self) -> None:
        if self.hello is not None and self.hello.sni is not None:
            self.proxy.stop_waiting(self, self.hello.sni)

    def refuse(self, reason: str, text: str, *, alert: bytes = b"") -> None:
        if self._closing:
            return
        self._unwait()
        self.proxy.stats.refusals[reason] += 1
        self.proxy.warn_refusal(
            "endpoints",
            "endpoint {peer} refused ({reason}): {text}",
            peer=self.peer_text,
            reason=reason,
            text=text,
        )
        if alert and self.transport is not None:
            self.transport.write(alert)
            self._closing = True
            self._disarm()
            self.transport.loseConnection()
            return
        self._close()

    def evict(self) -> None:
        self._unwait()
        self.proxy.stats.refusals["busy"] += 1
        self._close()

    def dataReceived(self, data: bytes) -> None:
        if self.spliced:
            self.relay_data(data)
            return
        if self._closing:
            return
        if self.hello is not None:
            self._waiting_data(data)
            return
        try:
            hello = self.reader.feed(data)
        except HelloError as e:
            alert = _ALERT_DECODE_ERROR if e.reason == "bad_sni" else b""
            self.refuse(e.reason, str(e), alert=alert)
            return
        if hello is None:
            return
        if hello.sni is None:
            self.refuse("no_sni", "ClientHello without SNI", alert=_ALERT_UNRECOGNIZED_NAME)
            return
        backlog = self.proxy.registry.take(hello.sni)
        self.hello = hello
        if backlog is not None:
            self.proxy.seen_snikey(hello.sni)
            self.route(backlog)
        elif self.proxy.backlog_wait and self.proxy.expects(hello.sni):
            self._disarm()
            self.proxy.wait_for_backlog(self, hello.sni)
            wait = self.proxy.backlog_wait
            self._timer = self.proxy.later(wait, self._no_backlog, wait)
        else:
            self.refuse(
                "unknown_snikey",
                f"no backlog connection for snikey {_sni_text(hello.sni)}",
                alert=_ALERT_UNRECOGNIZED_NAME,
            )

    def _waiting_data(self, data: bytes) -> None:
        assert self.hello is not None
        self._more += data
        if len(self.hello.raw) + len(self._more) > self.proxy.hello_cap:
            self.refuse("too_large", f"more than {self.proxy.hello_cap} bytes before a backlog")

    def _no_backlog(self, wait: float) -> None:
        self._timer = None
        sni = self.hello.sni if self.hello is not None else None
        self.refuse(
            "no_backlog",
            f"no backlog connection for snikey {_sni_text(sni)} within {wait:g} s",
            alert=_ALERT_UNRECOGNIZED_NAME,
        )

    def route(self, backlog: SetupProtocol) -> None:
        """Splice this endpoint (its ClientHello read) to `backlog`."""
        hello = self.hello
        assert hello is not None and hello.sni is not None
        raw, self.hello, self._more = hello.raw + self._more, None, b""
        self._disarm()
        self._settled()
        backlog.state = "spliced"
        self.proxy.stats.splices += 1
        self.proxy.stats.active_splices += 1
        mode = self.proxy.relay
        kernel = mode != "python" and _unbuffered(self.transport, backlog.transport)
        self.proxy.log.info(
            "endpoint {peer} spliced to backlog {backlog} (snikey {snikey}{how})",
            peer=self.peer_text,
            backlog=backlog.peer_text,
            snikey=hello.sni,
            how=f", {mode} relay" if kernel else ", python relay",
        )
        if kernel:
            self.kernel = backlog.kernel = True
            stats = self.proxy.stats
            self.relay = SpliceRelay(
                self.proxy.reactor,
                self.transport,
                backlog.transport,
                a_to_b=raw,
                count_ab=lambda n: setattr(stats, "bytes_to_manager", stats.bytes_to_manager + n),
                count_ba=lambda n: setattr(stats, "bytes_to_endpoint", stats.bytes_to_endpoint + n),
                done=self._relay_done,
                mode=mode,
            )
            if not self.relay.finished:
                self.proxy.relays.add(self.relay)
            return
        self.splice(backlog)
        self.relay_data(raw)

    def _relay_done(self, error: str | None) -> None:
        if self.relay is not None:
            self.proxy.relays.discard(self.relay)
        if error:
            self.proxy.log.info("splice of endpoint {peer} ended: {error}", peer=self.peer_text,
                                error=error)  # fmt: skip

    def readConnectionLost(self) -> None:
        if self.spliced:
            self.relay_eof()
        elif not self._closing:
            when = "while waiting for a backlog" if self.hello else "before a complete ClientHello"
            self.refuse("eof", f"closed {when}")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not (self.spliced or self.kernel or self._closing):
            # Lost without a FIN (a reset, keepalive gave up) before a routing or a
            # refusal: readConnectionLost never ran, so it was neither counted nor logged
            # and `refusals` did not add up to the connections that were not spliced.
            when = "while waiting for a backlog" if self.hello else "before a complete ClientHello"
            self.refuse("eof", f"connection lost {when} ({reason.getErrorMessage()})")
        self._unwait()
        if self.spliced or self.kernel:
            self.proxy.stats.active_splices -= 1
        super().connectionLost(reason)

    def count(self, n: int) -> None:
        self.proxy.stats.bytes_to_manager += n
