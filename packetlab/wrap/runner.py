"""`wrap(session, argv)`: run one program with its traffic going out from the endpoint of
`session`, as a controller experiment (public controller API only)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from packetlab.controller import EndpointSession, IPAddress, read_system_info
from packetlab.wrap.launch import (
    FORWARDED_SIGNALS,
    child_env,
    forward_signal,
    proxychains_conf,
    spawn,
)
from packetlab.wrap.orphans import (
    become_subreaper,
    children,
    detach,
    marked,
    reap,
    running_marked,
)
from packetlab.wrap.parked import ParkedConnects
from packetlab.wrap.resolve import Names
from packetlab.wrap.server import WrapFactory
from packetlab.wrap.shim import ShimError, proxychains_lib, wrap_shim
from packetlab.wrap.timeline import Notices, TimingLog
from packetlab.wrap.udpmap import UdpMap
from packetlab.wrap.vclock import VirtualClock

log = Logger(namespace="packetlab.wrap")


@dataclass
class WrapOptions:
    timings: str | None = None  # --timings FILE
    fidelity: bool = False  # the program's clock follows the endpoint's intervals
    socks_env: bool = False  # ALL_PROXY only, no LD_PRELOAD
    dns: list[tuple[IPAddress, int]] = field(default_factory=list)  # instead of the endpoint's
    connect_timeout: float = 20.0
    drain: float = 2.0  # seconds to let relays finish after the program exits
    # When the program exits leaving processes running (`ssh -f`): return its status at
    # once from a parent that exits, and serve them from a forked copy (the CLI's way;
    # a controller experiment waits for them instead). See orphans.detach.
    detach: bool = False
    # Read the endpoint's TIME around each TCP connect for the timings' connect_start and
    # connect_issued (always with `fidelity`); the CLI asks only with --timings FILE.
    endpoint_times: bool = True


@dataclass
class WrapResult:
    status: int
    timings: TimingLog
    hidden_ns: int = 0  # total taken out of the program's clock


async def wrap(
    session: EndpointSession, argv: Sequence[str], opts: WrapOptions, reactor: Any = None
) -> WrapResult:
    """Run `argv` through the endpoint of `session`; fires with its exit status once it
    and its wrapped connections have ended. Raises LaunchError / ShimError before the
    program starts if it cannot be started."""
    if reactor is None:
        reactor = session.reactor
    # Ours first: its connect() sees UDP sockets before proxychains' (TCP only) does.
    preload: list[str] = []
    try:
        preload.append(str(wrap_shim()))
    except ShimError as e:
        if opts.fidelity:
            raise
        print(f"pktlab wrap: {e}; UDP is not intercepted", file=sys.stderr)
    udp = bool(preload) and not opts.socks_env
    if not opts.socks_env:
        preload.append(str(proxychains_lib()))
    info = await read_system_info(session)
    dns = list(opts.dns) or [(a, 53) for a in info.dns4] + [(a, 53) for a in info.dns6]
    sources: tuple[IPAddress, ...] = (*(i.ip for i in info.ip4), *info.ip6)
    tmp = tempfile.mkdtemp(prefix="pktlab-wrap-")
    clock = VirtualClock(os.path.join(tmp, "clock")) if opts.fidelity else None
    timings = TimingLog(opts.timings)
    names, notices = Names(session, dns, sources=sources), Notices()
    factory = WrapFactory(
        session, reactor, dns_servers=dns, timings=timings, clock=clock,
        connect_timeout=opts.connect_timeout, names=names, notices=notices,
        early_reply=not opts.socks_env, stamps=opts.endpoint_times,
    )  # fmt: skip
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    udpmap = UdpMap(session, reactor, timings, clock, names, notices)
    udpmap.local_of = factory.local_address
    udpmap.failure_of = factory.connect_failure
    udpmap.peer_of = factory.peer_address
    if udp:
        udpmap.listen(os.path.join(tmp, "udp.sock"))
        # Non-blocking TCP connects parked by the shim (session 31): EINPROGRESS at once
        try:
            factory.parked = udpmap.parked = ParkedConnects(factory)
        except OSError as e:  # no parking port: proxychains connects inside the call
            log.warn("non-blocking connects are made inside the call: {e}", e=e)
    session.when_closed().addCallback(lambda _: factory.abort_all())
    old_handlers: dict[signal.Signals, Any] = {}
    reaper = False
    try:
        host = port.getHost()
        conf = None
        if not opts.socks_env:
            conf = os.path.join(tmp, "proxychains.conf")
            with open(conf, "w", encoding="utf-8") as f:
                f.write(proxychains_conf(host.host, host.port, opts.connect_timeout + 15))
        env = child_env(
            dict(os.environ), host=host.host, port=host.port, conf_path=conf,
            preload=preload, clock_path=clock.path if clock else None,
        )  # fmt: skip
        if udp:
            env["PKTLAB_WRAP_UDP"] = os.path.join(tmp, "udp.sock")
        if factory.parked is not None:
            env["PKTLAB_WRAP_PARK"] = str(factory.parked.lot.port)
        reaper = become_subreaper()
        child = spawn(reactor, argv, env)
        left: list[int] = []  # the program's orphans, once it has ended

        def forward(signo: int, _frame: Any) -> None:
            child.forward(signo)
            for pid in left:
                forward_signal(pid, signo)

        for signo in FORWARDED_SIGNALS:
            try:
                old_handlers[signo] = signal.signal(signo, forward)
            except ValueError:  # not the main thread (tests): leave signals alone
                pass
        status = await child.ended
        marker = f"PKTLAB_WRAP_SOCKS={env['PKTLAB_WRAP_SOCKS']}"
        if reaper:
            if opts.detach and _left_any(marker) and detach(status):
                await _detached(reactor, left, marker)
            else:
                await _orphans(reactor, left, marker)
        await _drain(reactor, factory, opts.drain)
        return WrapResult(status, timings, clock.hidden if clock else 0)
    finally:
        if reaper:
            become_subreaper(False)
        for signo, handler in old_handlers.items():
            signal.signal(signo, handler)
        await port.stopListening()
        factory.abandon_pending()
        factory.abort_all()
        if factory.parked is not None:
            factory.parked.close()
        closing = udpmap.close()
        if closing is not None:
            await closing
        timings.close()
        if clock is not None:
            clock.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def _drain(reactor: Any, factory: WrapFactory, seconds: float) -> None:
    """The program is gone; its connections close within moments. Wait for that (so their
    timings are complete), at most `seconds` (not for connects still pending: `settling`)."""
    waited = 0.0
    while factory.settling() and waited < seconds:
        d: Deferred[None] = Deferred()
        reactor.callLater(0.01, d.callback, None)
        await d
        waited += 0.01


def _left_any(marker: str) -> bool:
    from twisted.internet import process

    known = set(process.reapProcessHandlers)
    return any(p not in known and marked(p, marker.encode()) for p in children())


async def _detached(reactor: Any, left: list[int], marker: str) -> None:
    """In the copy that `detach` left: wait until no process of this run is left. They
    are not our children (their parent was the process that exited), so they are found
    by the run's marker anywhere; `left` is kept current for signals."""
    me = os.getpid()
    while True:
        left[:] = running_marked(marker.encode(), exclude=(me,))
        if not left:
            return
        d: Deferred[None] = Deferred()
        reactor.callLater(0.1, d.callback, None)
        await d


async def _orphans(reactor: Any, left: list[int], marker: str) -> None:
    """Wait for what the program left running (`sh -c 'curl URL &'`): orphans of its
    tree are ours (a subreaper), and their traffic still needs the wrapper. Only those
    with this run's `marker` in their environment. `left` is kept current, so signals
    reach them meanwhile."""
    from twisted.internet import process

    mark = marker.encode()
    while True:
        known = set(process.reapProcessHandlers)  # Twisted's own children
        ours = [p for p in children() if p not in known and marked(p, mark)]
        left[:] = reap(ours)
        if not left:
            return
        d: Deferred[None] = Deferred()
        reactor.callLater(0.05, d.callback, None)
        await d
