"""The experiment manager (`pktlab xpmgr`, the reference `pktxpmgr`; PROTOCOL.md §7).

It accepts endpoints (passive: listening on ADDR; active: backlog connections to a proxy),
serves each one the TLS chain of its snikey's ExpExec, submits the monitor programs that
chain requires, sends `start`, and hands the session to an mlet (`packetlab.controller.mlet`).
Many endpoints run at once, one mlet each (or all in one `-s` mlet). A progress line says
how many endpoints were seen, run, finished and failed (`summary()`: one line per change on
`progress`, or, with `lines=False`, drawn in place by the command on a terminal); each
endpoint's outcome is one JSON line (hostid, address, exit status, linfo, output) in the
results file. The final counts end the run in both cases.

`-n` caps the endpoints that complete TLS setup; then the manager wraps up: it stops
accepting, waits for the running mlets and exits. The first SIGINT wraps up the same way,
the second exits at once (the running mlets get SIGTERM); SIGTERM and SIGHUP do both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from packetlab.controller import outstream
from packetlab.controller.backlog import BacklogPool
from packetlab.controller.mlet import (
    EndpointWorker,
    MletProcess,
    TurnedAway,
    python_mlet_argv,
    python_mlet_problem,
)
from packetlab.controller.mletpath import program_problem
from packetlab.controller.programs import ProgramDir, monitor_digests
from packetlab.controller.setupcap import SetupCap
from packetlab.controller.xpmgrconf import ExpExec, XpmgrConfig
from packetlab.controller.xpmgrexit import all_failed_words, usage_refusal, verdict
from packetlab.controller.xpmgrhand import Deaf, Full, HandOver
from packetlab.controller.xpmgrsingle import endpoint_entry, singleton_record
from packetlab.hostport import (
    HostPortError,
    is_ipv6,
    port_number,
    split_host_port,
    zone_problem,
)
from packetlab.ppks import (
    Certificate,
    PPKSError,
    load_certificates,
    read_private_key,
    read_public_key,
)
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSServerEndpoint,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
    TLSConfigError,
    chain_validity,
    default_pending_max,
    gen_snikey,
    peer_of,
)
from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT, DEFAULT_PROXY_SETUP_PORT

__all__ = ["HANDSHAKE_TIMEOUT", "HostPort", "Manager", "ManagerError", "parse_host_port"]

#: Seconds an endpoint has to complete the TLS handshake, directly or through a proxy.
#: The reference waits for ever; a silent connection would hold a descriptor (and, in proxy
#: mode, one of the -n attempts) for good.
HANDSHAKE_TIMEOUT = 30.0
#: Seconds the mlets get after the second SIGINT's SIGTERM before SIGKILL.
KILL_GRACE = 2.0
#: -s: seconds an endpoint whose socket the singleton closed waits for news of the
#: singleton's exit (the EOF and SIGCHLD arrive microseconds apart, in either order).
SINGLE_GRACE = 0.1


class ManagerError(Exception):
    """A setup problem that stops the manager (config, certificates, bootstrap)."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int) -> HostPort:
    """``ADDR[:PORT]`` as the reference reads `-a` and `BrokerAddr` (`split_host_port`:
    ``::1:20600`` is port 20600, ``2001:db8::1:2`` port 2; ``[v6]:PORT`` too); port 0
    picks a free port (passive mode prints it). Raises ValueError."""
    text = text.strip()
    try:
        host, port = split_host_port(text, reference=True)
    except HostPortError as e:
        raise ValueError(f"bad address {text!r}: {e}") from None
    if ":" in host and not is_ipv6(host):
        raise ValueError(
            f"bad address {text!r}: not an IPv6 address (an IPv6 address with a port "
            "is written [ADDR]:PORT)"
        )
    number = default_port if port is None else port_number(port, 0)
    if not host or number is None:
        raise ValueError(f"bad address {text!r}: expected ADDR[:PORT] with PORT 0..65535")
    problem = zone_problem(host)
    if problem is not None:  # else `Couldn't listen on ...: Invalid argument`
        raise ValueError(f"bad address {text!r}: {problem}")
    return HostPort(host, number)


@dataclass
class _Exp:
    spec: ExpExec
    snikey: str
    credentials: Credentials
    entry: ServerEntry
    programs: list[bytes]


class Manager:
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        cfg: XpmgrConfig,
        mlet: Sequence[str],
        *,
        address: HostPort | None = None,
        attempts: int | None = None,
        singleton: bool = False,
        results: IO[str] | None = None,
        progress: IO[str] | None = None,
        lines: bool = True,
        publish_addr: str | None = None,
        hostid: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.cfg = cfg
        self.mlet_argv = self._mlet_argv(mlet)
        self.mlet_words = list(mlet)  # as given (`exp.py ARGS`, not the pymlet command)
        self.active = cfg.enable_proxy
        default_port = DEFAULT_PROXY_SETUP_PORT if self.active else DEFAULT_CONTROLLER_PORT
        self.address_given = address is not None
        self.address = address or HostPort("0.0.0.0", default_port)
        self.publish_addr = publish_addr
        self.hostid = hostid
        self.publications: list[Any] = []  # live `Publication`s (packetlab.controller.publish)
        self._publishing = False
        self.attempts = attempts
        self.singleton = singleton
        self.results = results
        self.progress = progress if progress is not None else sys.stderr
        self.lines = lines  # a line per change of the counts (False: the caller draws them)
        self.seen = self.running = self.done = self.failed = 0
        self.verified = 0  # endpoints that completed TLS setup (what -n counts)
        self.wrapping_up = False
        self._exiting = False  # the second SIGINT came
        self._dying: list[MletProcess] = []  # mlets sent SIGTERM by it
        # exited mlets whose output a process they started still holds (mlet.py PIPE_GRACE)
        self._lingering: list[MletProcess] = []
        self.finished: Deferred[int] = Deferred()
        self.port: Any = None
        self.pools: list[BacklogPool] = []
        self.workers: set[EndpointWorker] = set()
        # Endpoints past TLS whose setup is unanswered (setupcap.py).
        self._setup: SetupCap[EndpointWorker] = SetupCap(self)
        self.single: MletProcess | None = None
        self._control: HandOver[EndpointWorker] | None = None  # xpmgrhand.py
        self._queue_full = 0  # -s: endpoints turned away since the hand-over's bound was hit
        self._single_gone = "the singleton mlet is gone"  # why _control is None
        # -s: endpoints whose socket the singleton closed, reported after SINGLE_GRACE
        # unless its exit comes first (then its status is theirs: its death closed them).
        self._single_ended: dict[EndpointWorker, IDelayedCall] = {}
        # -s: the endpoints handed to the singleton, in that order: their entries in its
        # results line once each is reported (None until then; xpmgrsingle.py)
        self._handed: dict[EndpointWorker, dict[str, Any] | None] = {}
        self._exit_code = 0  # the manager's own failure or signal (xpmgrexit.py)
        self.usage_stop = False  # the first mlet's usage error stopped the greeting
        self._mlets_ended = 0  # endpoints whose mlet ran and ended
        self._results_failed = False  # the results file refused a line (_write_result)
        self._last = ""
        self._exps = self._load_exps()
        self._by_entry = {id(e.entry): e for e in self._exps}
        self.options = PPKSServerOptions(
            {e.snikey: e.entry for e in self._exps},
            default=next((e.entry for e in self._exps if e.spec.is_default), None),
        )

    # ---------------------------------------------------------------- set-up

    @staticmethod
    def _mlet_argv(mlet: Sequence[str]) -> list[str]:
        if not mlet:
            raise ManagerError("no MLET given")
        name, args = mlet[0], list(mlet[1:])
        py = python_mlet_argv(name, args)
        missing = python_mlet_problem(name) if py is not None else None
        if py is not None and not missing:
            return py
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return [os.path.abspath(name), *Manager._runnable(name, args)]
        # a bare name: a program on PATH, as a shell finds it (`true` was run as the Python
        # module `true`, which failed at each endpoint)
        bare = os.sep not in name and ":" not in name and not name.endswith(".py")
        found = shutil.which(name) if bare else None
        if found is not None:
            return [found, *Manager._runnable(found, args)]
        # a path, or a file that is no Python either: why execve would fail (all said
        # "is not an executable file, ...")
        not_python = py is None or (os.path.isfile(name) and not name.endswith(".py"))
        if not_python and (os.sep in name or os.path.lexists(name)):
            why = program_problem(name)
            if why:
                raise ManagerError(f"MLET {name!r}: {why}")
        if missing:
            raise ManagerError(f"MLET {name!r}: {missing}" + (", and no program on PATH" * bare))
        raise ManagerError(
            f"MLET {name!r} is not an executable file, a .py file or a Python module path"
        )

    @staticmethod
    def _runnable(path: str, args: list[str]) -> list[str]:
        """`args`, once `path` is known to be runnable by execve (a script without a
        `#!` line failed at each endpoint: `[Errno 8] Exec format error`)."""
        why = program_problem(path)
        if why:
            raise ManagerError(f"MLET {path!r}: {why}")
        return args

    def _check_validity(self, certs: Sequence[Certificate], what: str) -> None:
        """Our own certificates at start, as the daemons check theirs: an expired (or not
        yet valid) one stops the manager (every endpoint, broker or proxy would refuse it:
        each endpoint used to fail with `endpoint closed during setup`), one expiring within
        a week is a warning."""
        error, warning, _ = chain_validity(certs, what, time.time())
        if error:
            raise ManagerError(error)
        if warning:
            self.log.warn("{warning}", warning=warning)

    def _load_exps(self) -> list[_Exp]:
        cfg = self.cfg
        if not cfg.controller_privkey:
            raise ManagerError("ControllerPrivkeyPath is required")
        try:  # its own error, not blamed on the first ExpExec line that uses it
            read_private_key(cfg.controller_privkey)
        except (OSError, PPKSError, ValueError) as e:
            raise ManagerError(f"{cfg.where('ControllerPrivkeyPath')}: {e}") from None
        if cfg.enable_publication and cfg.pub_agent_cert:
            # read now, not once listening and publishing (`exp publication to broker
            # failed: not_pem_or_der: ...`, no file named)
            try:
                agent = load_certificates(Path(cfg.pub_agent_cert).read_bytes())
            except (OSError, PPKSError, ValueError) as e:
                raise ManagerError(f"{cfg.where('PubAgentCertPath')}: {e}") from None
            if not agent:
                raise ManagerError(f"{cfg.where('PubAgentCertPath')}: no certificate in it")
            for root in cfg.broker_cert_roots:
                try:
                    read_public_key(root)
                except (OSError, PPKSError, ValueError) as e:
                    raise ManagerError(f"{cfg.where('BrokerCertRootPath')}: {e}") from None
            self._check_validity(agent[:1], f"{cfg.where('PubAgentCertPath')}")
        try:
            programs = ProgramDir(cfg.program_dir)
        except ValueError as e:  # its line too (was `ProgramDirPath DIR: ...` alone)
            why = str(e).removeprefix("ProgramDirPath ")
            raise ManagerError(f"{cfg.where('ProgramDirPath')}: {why}") from None
        for s in programs.skipped:
            self.log.warn("ProgramDirPath: skipped {what}", what=s)
        exps = []
        for spec in cfg.exp_exec:
            try:
                creds = Credentials.load(spec.chain, cfg.controller_privkey, any_order=True)
            except (TLSConfigError, OSError, PPKSError, ValueError) as e:
                raise ManagerError(f"{spec.where}: ExpExec EXPPRIVCHAIN_PATH: {e}") from None
            try:
                roots = [read_public_key(p) for p in spec.trusted_eop]
            except (OSError, PPKSError, ValueError) as e:
                raise ManagerError(f"{spec.where}: ExpExec TRUSTEDEOP_PATH: {e}") from None
            self._check_validity(creds.chain, f"{spec.where}: ExpExec chain")
            entry = ServerEntry(creds, AuthMode.CONTROLLER_AUTH_ENDPOINT, roots)
            digests = monitor_digests(creds.chain)
            found, missing = programs.for_digests(digests)
            for d in missing:
                self.log.warn(
                    "{where}: no program in ProgramDirPath with digest {d}; endpoints will "
                    "refuse start",
                    where=spec.where,
                    d=d.hex(),
                )
            exps.append(_Exp(spec, spec.snikey or gen_snikey(), creds, entry, found))
        return exps

    @property
    def snikeys(self) -> list[str]:
        return [e.snikey for e in self._exps]

    def _snikeys_said(self) -> str:
        """`KEY (xpmgr.conf:5, default), KEY2 (xpmgr.conf:7)`: which ExpExec line each
        snikey serves (random ones were a bare list: an endpoint given one with
        NoSubModeSNIKey or --snikey could not tell which chain it would meet)."""
        said = []
        for e in self._exps:
            where = os.path.basename(e.spec.where) or "ExpExec"
            said.append(f"{e.snikey} ({where}{', default' if e.spec.is_default else ''})")
        return ", ".join(said)

    # ---------------------------------------------------------------- running

    def worker_factory(self) -> Factory[Any]:
        def build() -> EndpointWorker:
            return EndpointWorker(
                self.reactor, setup_for=self._setup_for, launch=self._launch, done=self._done
            )

        f: Factory[Any] = Factory.forProtocol(build)
        f.noisy = False
        return f

    def start(self) -> Deferred[Any]:
        """Start accepting endpoints; fires once listening (passive) or once the backlog
        bootstrap is under way (active)."""
        if self.singleton:
            self._start_singleton()
        if self.active:
            return self._start_active()
        where = f"tcp:{self.address.port}:interface={self.address.host.replace(':', chr(92) + ':')}"
        # (pending_max: a flood of silent connections must not take every descriptor)
        ep = PPKSServerEndpoint(serverFromString(self.reactor, where), self.options,
                                handshake_timeout=(HANDSHAKE_TIMEOUT, self.reactor),
                                pending_max=default_pending_max())  # fmt: skip
        d: Deferred[Any] = ep.listen(self.worker_factory())

        def listening(port: Any) -> Any:
            self.port = port
            host = port.getHost()
            where = HostPort(host.host, host.port)  # [v6]:PORT, as -a and endpoints take it
            self.log.info("xpmgr listening on {where} (passive mode)", where=str(where))
            self._say(f"xpmgr: listening on {where}; snikeys {self._snikeys_said()}")
            self._start_publication()
            return port

        return d.addCallback(listening)

    def _start_active(self) -> Deferred[Any]:
        cfg = self.cfg
        creds = None
        if cfg.backlog_agent_cert:
            try:
                creds = Credentials.load([cfg.backlog_agent_cert], cfg.controller_privkey or "")
            except TLSConfigError as e:
                raise ManagerError(f"{cfg.where('BacklogConnAgentCertPath')}: {e}") from None
            self._check_validity(creds.chain, "BacklogConnAgentCertPath")
        try:
            roots = [read_public_key(p) for p in cfg.proxy_cert_roots]
        except (OSError, PPKSError, ValueError) as e:
            raise ManagerError(f"{cfg.where('ProxyCertRootPath')}: {e}") from None
        creator = PPKSClientCreator(creds, AuthMode.AGENT, roots)
        server = PPKSTLSFactory(self.options, False, self.worker_factory(),
                                handshake_timeout=(HANDSHAKE_TIMEOUT, self.reactor),
                                pending_max=default_pending_max())  # fmt: skip
        for exp in self._exps:
            pool = BacklogPool(
                self.reactor,
                self.address.host,
                self.address.port,
                exp.snikey,
                creator,
                server,
                target=cfg.target_backlog,
                step_timeout=cfg.backlog_timeout_ns / 1e9,
                max_claims=self.attempts,
                on_change=self._start_publication,  # publish once a backlog is up (§6.3)
                on_tls_failure=self._proxy_tls_failed,
            )
            self.pools.append(pool)
            pool.start()
        keys = self._snikeys_said()
        self._say(f"xpmgr: active mode, backlogs to proxy {self.address}; snikeys {keys}")
        self.reactor.callLater(cfg.bootstrap_timeout_ns / 1e9, self._bootstrap_check)
        return Deferred.fromCoroutine(_nothing())

    def _proxy_tls_failed(self, why: str) -> None:
        """OBSERVED §4.1: pktxpmgr exits 1 at the first failed TLS setup with the proxy
        (`FATAL Backlog connection TLS setup failed`, no retry): a proxy certificate it
        refuses will not change by trying again. This manager retried until
        BootstrapBacklogTimeout (5 s) and then exited 1. Once a backlog was established,
        a failure is the pool's to retry (a proxy restarting)."""
        if self.wrapping_up or any(p.registered for p in self.pools):
            return
        self.log.error("backlog connection TLS setup failed: {why}", why=why)
        self._say(f"xpmgr: FATAL: backlog connection TLS setup with the proxy failed: {why}")
        self._exit_code = 1
        self.wrap_up()

    def _bootstrap_check(self) -> None:
        if self.wrapping_up or any(p.registered for p in self.pools):
            return
        why = next((p.hard_failure for p in self.pools if p.hard_failure), None)
        self.log.error(
            "endpoint greeting bootstrap timed out with 0 backlog connection established{why}",
            why=f" ({why})" if why else "",
        )
        self._say("xpmgr: FATAL: no backlog connection to the proxy could be established")
        self._exit_code = 1
        self.wrap_up()

    def _start_singleton(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.single = MletProcess.spawn(
                self.reactor, self.mlet_argv, theirs.fileno(), {}, "singleton", self._single_exit
            )
        finally:
            theirs.close()
        self._control = HandOver(self.reactor, ours, self._single_took, self._single_deaf,
                                 self._single_refused)  # fmt: skip

    def _single_took(self, worker: EndpointWorker) -> None:
        """-s: a waiting endpoint's socket is the singleton's now."""
        self._handed[worker] = None
        if self._queue_full and self._control is not None and not len(self._control):
            self.log.info(
                "the singleton mlet took the endpoints that waited for it ({n} turned away "
                "meanwhile)",
                n=self._queue_full,
            )
            self._queue_full = 0

    def _single_refused(self, worker: EndpointWorker, error: OSError) -> None:
        worker.finish(f"cannot start the mlet: {error}")

    def _close_control(self) -> None:
        """EOF to the singleton; the endpoints still waiting for it fail."""
        control, self._control = self._control, None
        if control is None:
            return
        for worker in control.close():
            worker.finish(f"cannot start the mlet: {self._single_gone}")

    def _single_exit(self, proc: MletProcess) -> None:
        self.log.info("singleton mlet exited (code {c})", c=proc.exit_code)
        if proc.lingering:
            self._linger(proc)
        if (proc.exit_code or proc.signal is not None) and not self._exiting:
            self._exit_code = 1  # a signal too (a crash); not ours at the second SIGINT
        for worker, call in list(self._single_ended.items()):
            call.cancel()
            self._report(worker)
        self._close_control()
        self.wrap_up()
        self._maybe_finish()

    def _linger(self, proc: MletProcess) -> None:
        # those whose holders have closed since are dropped: a long run keeps no more
        # than the ones lingering at once
        self._lingering = [p for p in self._lingering if p.lingering] + [proc]

    def _single_deaf(self) -> None:
        """-s: the singleton closed its fd 0 and runs on. Each endpoint after that failed
        with `cannot start the mlet: [Errno 32] Broken pipe`, as many as kept coming:
        it takes no more endpoints, so greeting them is over (it may still be serving
        those it has; the manager ends once it exits)."""
        self._single_gone = "the singleton mlet closed its fd 0"
        if not self.wrapping_up:
            self.log.warn("the singleton mlet closed its fd 0: it takes no more endpoints; "
                          "wrapping up")  # fmt: skip
        self._close_control()
        if not self.wrapping_up:
            self.wrap_up()

    # ---------------------------------------------------------------- per endpoint

    def _setup_for(self, worker: EndpointWorker) -> list[bytes]:
        if self.wrapping_up:  # -n reached or SIGINT: greeting is over (§7.1)
            raise ValueError("the manager is wrapping up; endpoint turned away")
        peer = peer_of(worker)
        exp = self._by_entry.get(id(peer.entry)) if peer is not None else None
        self.seen += 1
        self.verified += 1
        self.running += 1
        self.workers.add(worker)
        worker.snikey = exp.snikey if exp else None
        self._progress()
        if self.attempts is not None and self.verified >= self.attempts:
            self.log.info("{n} endpoint(s) attempted as asked (-n); wrapping up", n=self.verified)
            self.wrap_up()
        if exp is None:
            raise ValueError("no ExpExec entry served this endpoint")
        self._admit_setup(worker)
        return exp.programs

    @property
    def setup_max(self) -> int:
        return self._setup.cap

    @setup_max.setter
    def setup_max(self, cap: int) -> None:
        self._setup.cap = cap

    @property
    def setup_evicted(self) -> int:
        return self._setup.evicted

    def _admit_setup(self, worker: EndpointWorker) -> None:
        def close(oldest: EndpointWorker, why: str) -> bool:
            if oldest.state != "setup":  # answered since: it does not count
                return False
            oldest.evict(why)
            return True

        self._setup.admit(worker, close)

    def _launch(self, worker: EndpointWorker, sock: socket.socket) -> None:
        if self.singleton:
            if self._control is None:
                raise RuntimeError(self._single_gone)
            payload = worker.address.encode() + b"\0"
            try:
                if self._control.hand(worker, sock.fileno(), payload):
                    self._handed[worker] = None
            except Deaf:
                self._single_deaf()
                raise RuntimeError(self._single_gone) from None
            except Full as e:
                if not self._queue_full:  # said once per episode, not once per endpoint
                    self.log.warn(
                        "the singleton mlet is not taking endpoints ({why}): turning away "
                        "new ones until it does",
                        why=e,
                    )
                self._queue_full += 1
                raise TurnedAway(f"the singleton mlet is not taking endpoints ({e})") from None
            return
        if self.usage_stop:  # (an endpoint already in its setup when the stop came)
            raise TurnedAway("not started: the mlet's arguments were refused at the first "
                             "endpoint (its usage error, exit status 2)")  # fmt: skip
        worker.process = MletProcess.spawn(
            self.reactor,
            self.mlet_argv,
            sock.fileno(),
            {"EPADDR": worker.address},
            worker.address,
            lambda proc: self._mlet_exit(worker),
        )

    def _mlet_exit(self, worker: EndpointWorker) -> None:
        if worker.process is not None and worker.process.lingering:
            self._linger(worker.process)
        if worker.state != "closed":  # it exited without closing fd 0 (a child holds it)
            worker.finish(None)
        else:
            self._report(worker)

    def _done(self, worker: EndpointWorker) -> None:
        if self._control is not None and self._control.drop(worker):
            # ended while waiting for the singleton: it never had it
            worker.error = worker.error or "endpoint closed before the singleton mlet took it"
            self._report(worker)
            return
        if self.singleton and self.single is not None and self.single.running:
            # The singleton's exit closes every socket it holds, and that EOF can be seen
            # before the exit itself: wait briefly for it before calling this one done.
            self._single_ended[worker] = self.reactor.callLater(SINGLE_GRACE, self._report, worker)
            return
        if worker.process is None or not worker.process.running:
            self._report(worker)
        else:  # its fd 0 is closed: it has EOF_GRACE to exit (mlet.py)
            worker.process.overdue_after()

    def _report(self, worker: EndpointWorker) -> None:
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        self._single_ended.pop(worker, None)
        self._setup.settled(worker)
        result = worker.result(self.single if self.singleton else None)
        if worker in self._handed:
            self._handed[worker] = endpoint_entry(result)
        self.running -= 1
        if result["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        self._write_result(result)
        self._progress()
        said = worker.mlet_bytes
        stop = None if self.singleton else usage_refusal(worker.process, self._mlets_ended, said)
        self._mlets_ended += worker.process is not None
        if stop:
            # (camp30: a bad argument failed each endpoint's mlet, the manager exited 0)
            self.usage_stop = True
            self._say(stop)
            self.wrap_up()
        self._maybe_finish()

    # ---------------------------------------------------------------- publication

    def _start_publication(self) -> None:
        if not self.cfg.enable_publication or self._publishing or self.wrapping_up:
            return
        if self.active and not any(p.registered for p in self.pools):
            return
        self._publishing = True
        Deferred.fromCoroutine(self._publish()).addErrback(self._publish_failed)

    async def _publish(self) -> None:
        from packetlab.controller.publish import publish
        from packetlab.controller.xpmgrpub import controller_addr, publication_items

        cfg = self.cfg
        where = (self.address.host, self.address.port)
        if self.port is not None:
            host = self.port.getHost()
            where = (self.address.host, host.port)
        addr = controller_addr(cfg, publish_arg=self.publish_addr, active=self.active,
                               address=where, address_given=self.address_given)  # fmt: skip
        snikeys = {id(e.spec): e.snikey for e in self._exps}
        items = publication_items(cfg, snikeys, addr=addr, hostid=self.hostid)
        for item in items:
            pub = await publish(self.reactor, cfg.broker_addr, item.xdescr, item.credentials,
                                channels=item.channels)  # fmt: skip
            self.publications.append(pub)
            pub.ended.addCallback(self._publication_ended, pub)
            self._say(f"xpmgr: published to {cfg.broker_addr}: {item.xdescr.decode()}")
            if self.wrapping_up:  # -n or SIGINT while publishing
                pub.close()
        if cfg.pub_period_ns:
            self.reactor.callLater(cfg.pub_period_ns / 1e9, self._publication_over)

    def _publish_failed(self, f: Any) -> None:
        self.log.error("exp publication to broker failed: {why}", why=f.getErrorMessage())
        self._say(f"xpmgr: FATAL: publication to {self.cfg.broker_addr} failed: "
                  f"{f.getErrorMessage()}")  # fmt: skip
        self._exit_code = 1
        self.wrap_up()

    def _publication_ended(self, _: object, pub: Any) -> None:
        if pub in self.publications:
            self.publications.remove(pub)
            if not self.wrapping_up:
                # A broker restart or a lost link too: say what that means and what to do
                # (session 26: the line said only that, and a week's PubPeriod idled on).
                self.log.warn(
                    "broker EOF: the publication is over (not republished, as pktxpmgr; a "
                    "broker restart or a lost link ends it too): endpoints it already reached "
                    "may still connect until the wrap-up; run xpmgr again to publish again"
                )

    def _publication_over(self) -> None:
        """pub_end reached: stop publishing; greet for GreetPeriodAfterPubEnd more."""
        self.log.info("max publication time reached; stopping publication")
        self._stop_publishing()
        self.reactor.callLater(self.cfg.greet_after_pub_end_ns / 1e9, self.wrap_up)

    def _stop_publishing(self) -> None:
        pubs, self.publications = self.publications, []
        for pub in pubs:
            pub.close()  # the close ends the publication (OBSERVED §3.4)

    # ---------------------------------------------------------------- ending

    def wrap_up(self) -> None:
        """Stop greeting endpoints; finish once the running mlets are done."""
        if self.wrapping_up:
            return
        self.wrapping_up = True
        self._stop_publishing()
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()
        for pool in self.pools:
            pool.stop()
        self._maybe_finish()

    def interrupt(self) -> None:
        """SIGINT: the first wraps up, the second exits now."""
        if not self.wrapping_up:
            self._say(f"xpmgr: wrapping up ({self.running} running); interrupt again to exit")
            self.wrap_up()
            return
        if self._exiting:  # a third: no more grace
            self._kill_stragglers()
            self._finish()
            return
        self._exit_now("xpmgr: exiting now", 130)

    def terminate(self, signame: str, code: int) -> None:
        """SIGTERM or SIGHUP (`kill`, a supervisor, a closed terminal): both SIGINTs at
        once. Left to their default action the manager died at once: its running mlets
        orphaned and still running, their result lines never written."""
        if self.finished.called:
            return
        if self._exiting:  # again: as a third SIGINT
            self._kill_stragglers()
            self._finish()
            return
        self._say(f"xpmgr: {signame}: exiting ({self.running} mlet(s) running get SIGTERM)")
        self._exit_code = self._exit_code or code
        self.wrap_up()  # (finishes here when nothing runs)
        if not self.finished.called:
            self._exit_now(None, code)

    def _exit_now(self, words: str | None, code: int) -> None:
        """SIGTERM the running mlets, record them as interrupted, and finish."""
        self._exiting = True
        if words is not None:
            self._say(words)
        self._exit_code = self._exit_code or code
        procs = [w.process for w in self.workers if w.process is not None]
        procs += [self.single] if self.single is not None else []
        self._dying = [p for p in procs if p.running]
        for w in list(self.workers):
            if w.process is not None:
                w.process.kill()
            w.finish("interrupted")
            call = self._single_ended.get(w)
            if call is not None:
                call.cancel()
            self._report(w)  # now: its mlet's exit is not awaited
        if self.single is not None:
            self.single.kill()
        if not self._dying:
            self._finish()
            return
        # An mlet that ignores SIGTERM outlived the manager (orphaned, still running):
        # SIGKILL what is left after KILL_GRACE, and exit once every one is gone.
        kill = self.reactor.callLater(KILL_GRACE, self._kill_stragglers)
        gone = DeferredList([p.ended for p in self._dying])
        gone.addCallback(lambda _: kill.cancel() if kill.active() else None)
        gone.addCallback(lambda _: self._kill_leftovers())
        gone.addCallback(lambda _: self._finish())

    def _kill_leftovers(self) -> None:
        """The mlets are gone and the manager exits: what they started and left running
        (a child that ignores SIGTERM) would outlive it, orphaned: SIGKILL."""
        for p in self._dying:
            if p.leftovers():
                p.kill("KILL")

    def _kill_stragglers(self) -> None:
        left = [p for p in self._dying if p.running]
        if left:
            self.log.warn("{n} mlet(s) still running {s} s after SIGTERM: SIGKILL",
                          n=len(left), s=KILL_GRACE)  # fmt: skip
        for p in left:
            p.kill("KILL")
        self._kill_leftovers()

    def _maybe_finish(self) -> None:
        if not self.wrapping_up or self.running:
            return
        if any(p.running for p in self._dying):  # SIGTERMed, not gone yet
            return
        if self.singleton and self.single is not None and self.single.running:
            self._close_control()  # EOF on its control socket: no more endpoints
            self.single.overdue_after()  # and every endpoint's session is over
            return
        self._finish()

    def _finish(self) -> None:
        if not self.finished.called:
            left = sum(p.lingering for p in self._lingering)
            if left:  # their next line meets a closed pipe (SIGPIPE): say so, once
                self.log.warn(
                    "{n} exited mlet(s) left a process that still holds their output: not "
                    "waited for nor killed (as pktxpmgr); its output is no longer read",
                    n=left,
                )
            self._record_singleton()
            if self._last != self.summary():
                self._say(self.summary())
            if self.singleton:
                self.finished.callback(self._exit_code)
                return
            code = verdict(self._exit_code, self.done, self.failed, self.usage_stop)
            if code and not self._exit_code and not self.usage_stop:
                self._say(all_failed_words(self.failed))
            self.finished.callback(code)

    def _record_singleton(self) -> None:
        """-s: the singleton's own line, last in the results (xpmgrsingle.py)."""
        if self.single is None or self.results is None:
            return
        endpoints = [
            entry if entry is not None else {"address": w.address, "status": "running"}
            for w, entry in self._handed.items()
        ]
        record = singleton_record(
            self.single, self.mlet_words, endpoints, interrupted=self._exiting
        )
        self._write_result(record)

    def _write_result(self, record: dict[str, Any]) -> None:
        """One JSON line to the results. A file that cannot be written (a full disk) is
        said once, and this line and the later ones go to stderr instead: ENOSPC raised
        out of the report (a traceback per endpoint, the counts stuck, and a manager that
        never exited at -n), and every line was lost."""
        if self.results is None:
            return
        line = (json.dumps(record) + "\n").encode()
        if not self._results_failed:
            try:
                outstream.write(self.results, line)
                return
            except OSError as e:
                self._results_failed = True
                self.log.error(
                    "cannot write the results to {name}: {why}; this result line and the "
                    "later ones go to stderr",
                    name=getattr(self.results, "name", "?"),
                    why=e.strerror or e,
                )
        outstream.write(sys.stderr, line)

    # ---------------------------------------------------------------- output

    def summary(self) -> str:
        """The counts: `xpmgr: endpoints seen S, running R, done D, failed F`."""
        return (
            f"xpmgr: endpoints seen {self.seen}, running {self.running}, "
            f"done {self.done}, failed {self.failed}"
        )

    def _progress(self) -> None:
        if self.lines:
            self._last = self.summary()
            self._say(self._last)

    def _say(self, text: str) -> None:
        outstream.write(self.progress, (text + "\n").encode())


async def _nothing() -> None:
    return None
