"""``twistd pktendpoint``: the reference ``pktendpt [-c EP_CONF_PATH] [-m MONITOR_PATH]...
[ADDR[:PORT]]`` as a twistd plugin (PROTOCOL.md §7.4). See docs/endpoint.md."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService
from twisted.python import usage

from packetlab.tapinterrupt import arm

arm("pktendpoint")

from packetlab.heaptrim import lean_daemon_start  # noqa: E402

lean_daemon_start()  # before the imports that bring in the reactor

from packetlab.endpoint.config import (  # noqa: E402
    KNOWN_KEYS,
    ConfigError,
    EndpointConfig,
    load_config,
    nearest_key,
)
from packetlab.endpoint.service import ControllerAddress  # noqa: E402
from packetlab.numtext import float_in  # noqa: E402
from packetlab.tapoptions import TapOptions, tap_service  # noqa: E402

if TYPE_CHECKING:  # imported when a service is made (keeps `twistd --help` light)
    from packetlab.endpoint.netio import ReactorNetwork
    from packetlab.endpoint.sender import PreciseScheduler

__all__ = ["Options", "makeService"]

MAX_MONITORS = 16

# Named shortcuts for the config keys an operator overrides most.
_KEY_OPTIONS = {
    "buf-max": "BufMax",
    "transproto": "TransprotoSup",
    "ipv4": "VMemLocalAddrStrIPv4",
    "ipv6": "VMemLocalAddrStrIPv6",
    "dns-ipv4": "VMemLocalDNSAddrStrIPv4",
    "dns-ipv6": "VMemLocalDNSAddrStrIPv6",
    "host-id": "HostID",
    "cert-chain": "ControllerCertChainPath",
    "private-key": "EndpointPrivKey",
    "eop-pubkey": "EndpointOpPubKeyPath",
    "snikey": "NoSubModeSNIKey",
    "rlim-db": "RLimDBPath",
    "broker": "BrokerAddr",
    "max-experiments": "MaxConcurrentExperiments",
    "monitor-time-ms": "MonitorTimeMillsec",
}
# What each of them is when neither the config nor the option sets it (EndpointConfig).
_KEY_DEFAULTS = {
    "buf-max": "bytes [8388608]",
    "transproto": "comma list of tcp, udp, raw [tcp,udp]",
    "ipv4": "[127.0.0.1/24,127.0.0.2/24]",
    "ipv6": "[none]",
    "dns-ipv4": "[none]",
    "dns-ipv6": "[none]",
    "host-id": "[pktendpt]",
    "cert-chain": "[none; pktlab init's endpt.conf sets it]",
    "private-key": "[none; pktlab init's endpt.conf sets it]",
    "eop-pubkey": "[none; pktlab init's endpt.conf sets it]",
    "snikey": "[none]",
    "rlim-db": "[~/.pktlab/endpt.rlim.sqlite3]",
    "broker": "HOST[:PORT]: broker mode [none: NoSub mode]",
    "max-experiments": "1..64 [1]",
    "monitor-time-ms": "ms of monitor time a session may use a second, 0..1000; 0: no cap [500]",
}


def _said(default: str) -> str:
    return f" {default}" if default.startswith("[") else f": {default}"


def _seconds(option: str, text: str) -> float:
    value = float_in(text, 0, 86400)
    if value is None:
        raise usage.UsageError(f"--{option}: expected seconds from 0 to 86400, got {text!r}")
    return value


class Options(TapOptions):
    tapname = "pktendpoint"
    synopsis = "[options] [ADDR[:PORT]]"
    longdesc = (
        "Run a PacketLab measurement endpoint. In NoSub mode it connects to the "
        "controller at ADDR[:PORT] (default 127.0.0.1:20556; use [IPv6]:PORT for IPv6), "
        "runs one experiment session, and connects again for the next. In broker mode "
        "(NoSubMode 0 in the config, or --broker HOST[:PORT]) it subscribes to a broker "
        "(default port 20557) and runs the experiments published to it (docs/broker.md); "
        "no ADDR is given then. Settings come from the reference endpt.conf format "
        "(--config, default ~/.pktlab/endpt.conf, or $PKTLAB_HOME/endpt.conf) and can be "
        "overridden with --set KEY=VALUE or the named "
        "options above. The link is TLS 1.3 with PPKS certificates (ControllerCertChainPath, "
        "EndpointPrivKey, EndpointOpPubKeyPath; `pktlab init` writes a demo endpt.conf); "
        "--insecure-plaintext runs over plain TCP to a loopback controller only. "
        "Known config keys: " + ", ".join(KNOWN_KEYS) + "."
    )
    optFlags = [
        ["insecure-plaintext", None, "Talk to the controller over plain TCP (loopback only)."],
    ]
    optParameters: list[list[Any]] = [
        ["config", "c", None,
         "endpt.conf path (default ~/.pktlab/endpt.conf if it exists; $PKTLAB_HOME replaces "
         "~/.pktlab)."],
    ] + [
        [name, None, None, f"Override config key {key}{_said(_KEY_DEFAULTS[name])}."]
        for name, key in _KEY_OPTIONS.items()
    ]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self["monitor"] = []
        self["set"] = []
        self["reconnect-delay"] = 1.0
        self["retry-delay"] = 5.0
        self["sessions"] = 0

    def opt_reconnect_delay(self, seconds: str) -> None:
        """Seconds from a session's end to the next connection [default: 1]."""
        self["reconnect-delay"] = _seconds("reconnect-delay", seconds)

    def opt_retry_delay(self, seconds: str) -> None:
        """Seconds to wait after a connect cycle (5 s of tries) failed [default: 5]."""
        self["retry-delay"] = _seconds("retry-delay", seconds)

    def opt_sessions(self, count: str) -> None:
        """Stop after this many sessions (0, the default: run until stopped)."""
        if not count.isdigit():
            raise usage.UsageError(f"--sessions: expected a count >= 0, got {count!r}")
        self["sessions"] = int(count)

    def opt_monitor(self, path: str) -> None:
        """An aux monitor (.wasm) run on every session after the chain's monitors;
        repeatable, at most 16 (docs/monitors.md)."""
        self["monitor"].append(path)

    opt_m = opt_monitor

    def opt_set(self, assignment: str) -> None:
        """Override one config key: --set KEY=VALUE (repeatable)."""
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise usage.UsageError(f"--set wants KEY=VALUE, got {assignment!r}")
        key = key.strip()
        if key not in KNOWN_KEYS:  # a file may hold the reference's keys; --set is ours
            raise usage.UsageError(f"--set {key}: unknown config key{nearest_key(key)}")
        self["set"].append((key, value.strip()))

    def parseArgs(self, *args: str) -> None:
        self["address_given"] = bool(args)
        if len(args) > 1:
            raise usage.UsageError(
                f"expected at most one controller address ADDR[:PORT], got {len(args)}: "
                + " ".join(args)
            )
        try:
            self["address"] = ControllerAddress.parse(args[0] if args else "127.0.0.1")
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def postOptions(self) -> None:
        if "address" not in self:
            self.parseArgs()
        monitors = self["monitor"]
        if len(monitors) > MAX_MONITORS:
            raise usage.UsageError(f"at most {MAX_MONITORS} --monitor files, got {len(monitors)}")
        for path in monitors:
            if not Path(path).is_file():
                why = "a directory, not a file" if Path(path).is_dir() else "no such file"
                raise usage.UsageError(f"--monitor {path}: {why}")
        self["endpoint_config"] = cfg = self.build_config()
        if self["log-level"] is None:  # the option wins over the config's LogLevel
            self["log-level"] = cfg.log_level
        reactor = sys.modules.get("twisted.internet.reactor")  # twistd installed it already
        if cfg.busy_poll_us and reactor is not None:
            from packetlab.endpoint.busypoll import BusyPollUnsupported, check

            try:  # a one-line error here rather than a traceback from makeService
                check(reactor)
            except BusyPollUnsupported as e:
                raise usage.UsageError(str(e)) from None
        if self["broker"] is not None:
            cfg.nosub_mode = False
        from packetlab.endpoint import policy
        from packetlab.endpoint.confpaths import check_paths
        from packetlab.endpoint.monitors import MonitorHost

        try:  # each path key of the mode: one line naming the file, line and key
            check_paths(cfg, tls=not self["insecure-plaintext"])
            self._check_as_the_daemon_user(cfg)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

        try:  # an unreadable aux monitor or a bad capture filter stops the daemon here
            self["monitor_host"] = MonitorHost.from_config(cfg, monitors)
            self["policy"] = policy.from_config(cfg)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        address: ControllerAddress = self["address"]
        if not cfg.nosub_mode:
            self._broker_mode(cfg)
            return
        if not self["insecure-plaintext"]:
            from packetlab.endpoint.tlslink import TLSLink

            try:
                self["tls_link"] = TLSLink.from_config(self["endpoint_config"])
            except ConfigError as e:
                raise usage.UsageError(str(e)) from None
            return
        if not address.is_loopback:
            raise usage.UsageError(
                f"--insecure-plaintext only talks to loopback controllers (127.0.0.0/8, ::1, "
                f"localhost); {address} is not one. Plain TCP would expose the experiment."
            )

    def _broker_mode(self, cfg: EndpointConfig) -> None:
        from packetlab.endpoint.subscriber import BrokerSettings
        from packetlab.endpoint.tlslink import TLSLink

        if self.get("address_given"):
            raise usage.UsageError(
                "broker mode (NoSubMode 0 / --broker): the controller address comes from "
                "each published experiment; give no ADDR"
            )
        if self["insecure-plaintext"]:
            raise usage.UsageError("--insecure-plaintext is for NoSub mode only")
        try:
            self["broker_settings"] = BrokerSettings.from_config(cfg)
            self["tls_link"] = TLSLink.from_config(cfg)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _check_as_the_daemon_user(self, cfg: EndpointConfig) -> None:
        """Under twistd run as root with ``-u USER``: the databases checked as USER, and
        SQLite loaded now (its import is lazy, and after the drop a Python installed
        under /root cannot be read: `No module named 'sqlite3'` at the first session)."""
        parent = getattr(self, "parent", None)
        uid = parent.get("uid") if parent is not None else None
        if not isinstance(uid, int) or os.geteuid() != 0 or uid == 0:
            return
        gid = parent.get("gid") if parent is not None else None
        if not isinstance(gid, int):
            import pwd

            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
        from packetlab.endpoint.confpaths import check_databases_as

        tls = not self["insecure-plaintext"]
        defaults: list[str] = []
        if tls and cfg.rlim_db is None:
            from packetlab.ppks.store import PktlabHome

            default = PktlabHome.at().accounting_db
            if default.parent.is_dir():
                defaults.append(str(default))
        check_databases_as(cfg, tls=tls, uid=uid, gid=gid, defaults=defaults)
        if tls:
            import sqlite3  # noqa: F401  (the accounting's, loaded before the drop)

    def build_config(self) -> EndpointConfig:
        try:
            cfg = load_config(self["config"])
            for name, key in _KEY_OPTIONS.items():
                if self[name] is not None:
                    cfg.set(key, self[name], f"--{name}")
            for key, value in self["set"]:
                cfg.set(key, value, f"--set {key}")
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        return cfg


@tap_service
def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from packetlab.sigterm import install_sigterm

    install_sigterm(reactor)  # not Twisted's handler: it can deadlock on its log lock
    from twisted.logger import Logger

    from packetlab.endpoint.checks import OpenGate, RequestGate
    from packetlab.endpoint.clock import realtime_ns
    from packetlab.endpoint.memory import mapped_system_image, system_image
    from packetlab.endpoint.monitors import MonitorGate, MonitorHost
    from packetlab.endpoint.netio import ReactorNetwork
    from packetlab.endpoint.policy import PolicyGate, PolicyNetwork
    from packetlab.endpoint.sender import PreciseScheduler
    from packetlab.endpoint.service import ControllerLink, NoSubService, PlaintextLink
    from packetlab.endpoint.session import Session
    from packetlab.endpoint.sockets import Network

    log = Logger(namespace="pktendpoint")
    cfg: EndpointConfig = options["endpoint_config"]
    for warning in cfg.warnings:
        log.warn("config: {warning}", warning=warning)
    system_image(cfg)  # a config the image cannot hold fails now, not at the first session
    spinner = None
    if cfg.busy_poll_us:
        from packetlab.endpoint.busypoll import BusyPollUnsupported, install

        try:
            spinner = install(reactor, cfg.busy_poll_us)
        except BusyPollUnsupported as e:
            raise usage.UsageError(str(e)) from None
        log.info("busy-poll: {us} µs after each reactor turn with I/O", us=cfg.busy_poll_us)
    scheduler = PreciseScheduler(reactor)
    sockets = ReactorNetwork(reactor)
    network: Network = sockets

    monitors: MonitorHost = options["monitor_host"]
    from twisted.internet.threads import deferToThread

    from packetlab.monitor.worker import CompileWorker

    # Certificate monitors and reflexes compile in the reactor's thread pool, one module
    # at a time for both (a 1 MiB module takes seconds: docs/performance.md "Monitors").
    compiler = CompileWorker(deferToThread)
    monitors.worker = compiler
    for aux in monitors.aux:  # (one that cannot load was logged by `from_config`, once)
        if not isinstance(aux.compiled, Exception):
            log.info("aux monitor {path} ({d})", path=aux.path, d=aux.digest.hex())

    capture, rate_pkt, rate_byte = options["policy"]
    if capture.active:
        network = PolicyNetwork(network, capture)

    from packetlab.endpoint.reflexhook import Reflexes  # reflex hook

    reflexes = Reflexes(cfg, compiler)  # reflex hook: loaded on a session's first reflex request
    reflexes.warm_on(spinner, cfg.reflex_warm_us)  # reflex hook (docs/reflexes.md)

    cpu_latency = None
    if cfg.cpu_latency_us is not None:
        from packetlab.endpoint.cpulatency import CpuLatencyHold, CpuLatencyUnavailable, open_device

        try:  # opened now: a missing permission is one line at start, not a session's error
            device = open_device()
        except CpuLatencyUnavailable as e:
            where = cfg.origins.get("CpuLatencyUs")  # the file and line, or the option
            raise usage.UsageError(f"{where}: {e}" if where else str(e)) from None
        cpu_latency = CpuLatencyHold(cfg.cpu_latency_us, device, lambda m: log.warn("{m}", m=m))
        log.info("CPU wake-up latency {us} µs while a session is open", us=cfg.cpu_latency_us)

    from packetlab.heaptrim import IdleTrim, trim_after_startup  # memory hooks

    idle = IdleTrim(reactor)  # heap trim when no session is open (docs/reliability.md)

    def make_session(gate: RequestGate | None = None) -> Session:
        gate = gate if gate is not None else OpenGate()
        if rate_pkt is not None or rate_byte is not None:
            gate = PolicyGate(gate, realtime_ns, rate_pkt, rate_byte)
        gate = monitors.gate(gate)  # monitors first, then the endpoint's own checks
        # Made afresh (~0.15 ms) rather than copied from a template kept all along, in
        # a mapping: the image is 193 KiB, mostly zeros (idle RSS, docs/performance.md).
        image = mapped_system_image(cfg)
        session = Session(cfg, network, scheduler, realtime_ns, gate=gate, image=image)
        if isinstance(gate, MonitorGate):
            gate.attach(session.memory, session.sockets, session.nopen_error)
            session.receiving.pace_tcp(gate.ndata_wait, reactor.callLater)
            session.close_hooks.append(session.receiving.stop_pacing)
        reflexes.install(session)  # reflex hook (docs/reflexes.md)
        session.close_hooks.append(idle.opened())  # trim the heap when none is left
        if cpu_latency is not None:
            session.close_hooks.append(cpu_latency.opened())
        return session

    link: ControllerLink = PlaintextLink()
    admission = None
    if not options["insecure-plaintext"]:
        from packetlab.endpoint.tlslink import Admission, open_accounting

        link = options["tls_link"]
        options["tls_link"].watch_expiry(reactor)
        if options["tls_link"].trusts_any_root:
            log.warn(
                "no EndpointOpPubKeyPath: any controller chain with a well-formed root is "
                "accepted (set the endpoint operator keys you trust)"
            )
        try:
            accounting = open_accounting(cfg)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        log.info("resource accounting in {path}", path=accounting.path)
        admission = Admission(accounting, realtime_ns)

    lifecycle = _Lifecycle(scheduler, sockets)
    lifecycle.on_stop = trim_after_startup(reactor, busy=lambda: idle.live > 0)  # memory hook
    if not cfg.nosub_mode:
        return _broker_service(reactor, options, make_session, admission, lifecycle)
    return NoSubService(
        reactor,
        options["address"],
        link,
        make_session,
        lifecycle,
        admission=admission,
        retry_delay=options["retry-delay"],
        reconnect_delay=options["reconnect-delay"],
        max_sessions=options["sessions"],
    )


class _Lifecycle:
    """What the service starts and, once its sessions have ended, stops: the send
    scheduler, then the network's reactor resources."""

    def __init__(self, scheduler: PreciseScheduler, network: ReactorNetwork) -> None:
        self.scheduler = scheduler
        self.network = network
        self.on_stop: Callable[[], None] = lambda: None  # the start-up trim's cancel

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> object:
        result = self.scheduler.stop()
        self.network.close()
        self.on_stop()
        return result


def _broker_service(
    reactor: Any, options: Options, make_session: Any, admission: Any, scheduler: Any
) -> IService:
    from packetlab.endpoint.clock import realtime_ns
    from packetlab.endpoint.pool import ExperimentPool
    from packetlab.endpoint.runner import BrokerModeService, ExperimentRunner
    from packetlab.endpoint.subscriber import BrokerSettings, BrokerSubscriber

    cfg: EndpointConfig = options["endpoint_config"]
    settings: BrokerSettings = options["broker_settings"]
    link = options["tls_link"]
    runner = ExperimentRunner(
        reactor,
        ExperimentPool(max_running=cfg.max_experiments),
        link.for_snikey,
        make_session,
        admission,
        realtime_ns,
    )
    top = BrokerModeService(runner, scheduler)
    BrokerSubscriber(
        reactor,
        str(settings.address),
        lambda: settings.endpoint(reactor),
        settings.plan,
        runner.notify,
    ).setServiceParent(top)
    return top
