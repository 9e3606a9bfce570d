"""``twistd pktproxy``: the SNI-routing proxy for controllers behind NAT (PROTOCOL.md §6).
See docs/proxy.md."""

from __future__ import annotations

import difflib
import re
import time
from pathlib import Path
from typing import Any

from packetlab.tapinterrupt import arm

arm("pktproxy")

from packetlab.heaptrim import lean_daemon_start  # noqa: E402

lean_daemon_start()  # before the imports that bring in the reactor

from twisted.application import internet, service  # noqa: E402
from twisted.application.service import IService  # noqa: E402
from twisted.logger import Logger  # noqa: E402
from twisted.python import usage  # noqa: E402

from packetlab import fdcap  # noqa: E402
from packetlab.addrshare import DEFAULT_SHARE, SHARE_FLOOR, parse_share  # noqa: E402
from packetlab.fdcap import default_pending_max  # noqa: E402
from packetlab.hostport import host_port  # noqa: E402
from packetlab.loglevel import START_STOP, level_name  # noqa: E402
from packetlab.paths import RepeatedKeys, config_line, config_text  # noqa: E402
from packetlab.ppks import PktlabHome, PPKSError, read_public_key  # noqa: E402
from packetlab.proxy.splice import available as splice_available  # noqa: E402
from packetlab.tapoptions import (  # noqa: E402
    TapOptions,
    distinct_ports,
    listen_failure,
    server_endpoint,
    stop_daemon,
    tap_service,
)
from packetlab.tls import (  # noqa: E402
    AuthMode,
    Credentials,
    PPKSServerOptions,
    ServerEntry,
    TLSConfigError,
    agent_leaf_error,
    chain_validity,
)
from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT, DEFAULT_PROXY_SETUP_PORT  # noqa: E402

__all__ = ["AGENT_CERT", "AGENT_KEY", "Options", "default_pending_max", "makeService"]

AGENT_CERT = "agent_prx_prx"  # written by `pktlab init`
AGENT_KEY = "k_prx"
log = Logger(namespace="pktproxy")

# config key -> option name; the config file holds "Key value" lines, options override it
_CONFIG_KEYS = {
    "SetupEndpoint": "setup",
    "EndpointsEndpoint": "endpoints",
    "AgentCertPath": "cert",
    "PrivateKeyPath": "private-key",
    "ManagerRootPath": "manager-roots",
    "HelloCap": "hello-cap",
    "HelloTimeout": "hello-timeout",
    "SetupTimeout": "setup-timeout",
    "BacklogPerSNIKey": "backlog-per-snikey",
    "BacklogMax": "backlog-max",
    "PendingMax": "pending-max",
    "KeepAlive": "keepalive",
    "BacklogWait": "backlog-wait",
    "StatsInterval": "stats-interval",
    "StatsFile": "stats-file",
    "Relay": "relay",
    "PerAddressShare": "per-address-share",
    "LogLevel": "log-level",
}
_RELAYS = ("copy", "splice", "python")  # packetlab.proxy.splice.RELAY_MODES + RelayEnd
_DEFAULTS: dict[str, Any] = {
    "setup": f"tcp:{DEFAULT_PROXY_SETUP_PORT}",
    "endpoints": f"tcp:{DEFAULT_CONTROLLER_PORT}",
    "hello-cap": 16384,
    "hello-timeout": 10.0,
    "setup-timeout": 10.0,
    "backlog-per-snikey": 64,
    "backlog-max": 4096,
    "keepalive": 60.0,
    "backlog-wait": 5.0,
    "stats-interval": 60.0,
}
_NUMBERS = {"hello-cap": int, "backlog-per-snikey": int, "backlog-max": int, "pending-max": int,
            "hello-timeout": float, "setup-timeout": float, "stats-interval": float,
            "keepalive": float, "backlog-wait": float}  # fmt: skip
# A timeout of 0 refused every endpoint (or manager) on the reactor's next turn.
_ABOVE_ZERO = ("hello-timeout", "setup-timeout")
# Upper bounds: nan, inf or 1e12 were taken and then failed on every connection (a
# traceback per timer or keepalive setsockopt). Linux takes TCP_KEEPIDLE up to 32767 s;
# an hour is the longest wait that is not a typo; counts past a million are typos too.
_MAXIMA: dict[str, float] = {"hello-cap": 1 << 24, "backlog-per-snikey": 1_000_000,
                             "backlog-max": 1_000_000, "pending-max": 1_000_000,
                             "hello-timeout": 3600, "setup-timeout": 3600,
                             "backlog-wait": 3600, "keepalive": 32767,
                             "stats-interval": 86400}  # fmt: skip


class Options(TapOptions):
    tapname = "pktproxy"
    synopsis = (
        "[--config FILE] [--home DIR] [--cert AGENT_CERT] [--private-key KEY] "
        "[--setup ENDPOINT] [--endpoints ENDPOINT] [--relay copy|splice|python] [options]"
    )
    longdesc = (
        "The PacketLab proxy: experiment managers behind NAT register idle 'backlog' "
        "connections for their snikey on the setup port (TLS 1.3, xreg, then the raw "
        "PKTLAB preamble); endpoints connect to the endpoints port as if it were the "
        "controller, and the proxy routes each one by the SNI of its TLS ClientHello to a "
        "backlog of that snikey without terminating TLS, then relays bytes both ways. "
        "ENDPOINTs are Twisted endpoint strings. The agent identity defaults to the "
        "agent_prx_prx cert and k_prx key that `pktlab init` writes. Counters are logged "
        "every --stats-interval seconds (and written as JSON to --stats-file)."
    )
    optFlags = [["no-splice", None, "Same as --relay python."]]
    optParameters: list[list[Any]] = [
        ["config", "c", None, "Config file of 'Key value' lines (keys: "
         + ", ".join(_CONFIG_KEYS) + ") [none: options and defaults only]."],
        ["cert", None, None, "Agent certificate (PEM) [~/.pktlab/certs/agent_prx_prx.cert]."],
        ["private-key", None, None, "Its private key [~/.pktlab/keys/k_prx]."],
        ["setup", None, None, f"Setup port for managers [{_DEFAULTS['setup']}]."],
        ["endpoints", None, None, f"Port for endpoints [{_DEFAULTS['endpoints']}]."],
        ["manager-roots", None, None,
         "Comma list of public keys a manager's agent cert must chain to (default: any "
         "manager, with or without a cert)."],
        ["home", None, None, "pktlab home for the defaults [~/.pktlab or $PKTLAB_HOME]."],
        ["hello-cap", None, None, "Largest ClientHello accepted, bytes [16384]."],
        ["hello-timeout", None, None, "Seconds an endpoint has to send its ClientHello [10]."],
        ["setup-timeout", None, None, "Seconds a manager has to finish registering [10]."],
        ["backlog-per-snikey", None, None, "Idle backlog connections per snikey [64]."],
        ["backlog-max", None, None,
         "Idle backlog connections in all [4096; backlogs and splices together fewer if "
         "the descriptor limit allows fewer: the log says so when it starts]."],
        ["pending-max", None, None,
         "Connections per port still without a complete ClientHello (endpoints) or "
         "registration (managers); each new one beyond closes the oldest [1024, or "
         "1/8 of the descriptor limit if lower]."],
        ["per-address-share", None, None,
         "Fraction of the backlog and spliced connections (--backlog-max, or fewer from "
         "the descriptor limit) one manager address may hold, all its keys together: "
         "managers behind one NAT share it, an IPv6 address counts by its /64 (a "
         "link-local one by itself and its interface), and a /48 (one interface's "
         "link-local peers) holds twice the share; past it xreg gets ENORES. Never fewer "
         f"than {SHARE_FLOOR}, or half if that is less; 1: no share [{DEFAULT_SHARE:g}]."],
        ["backlog-wait", None, None,
         "Seconds an endpoint whose snikey has no idle backlog, but had one in the last "
         "10 minutes, waits for the manager to register one; 0: refuse at once [5]."],
        ["keepalive", None, None,
         "Seconds of silence before TCP keepalive probes on every connection (idle "
         "backlogs included: keeps a manager's NAT mapping, notices a vanished peer); "
         "0: off [60]."],
        ["stats-interval", None, None, "Seconds between counter log lines, 0: never [60]."],
        ["stats-file", None, None, "Write the counters as JSON to this file each interval [none]."],
        ["relay", None, None,
         "How bytes are relayed once an endpoint is routed: copy (recv_into/send through "
         "one buffer; the fastest here), splice (splice(2), zero-copy through a pipe) or "
         "python (Twisted transports, portable) [copy on Linux, else python]."],
    ]  # fmt: skip

    def postOptions(self) -> None:
        # where each setting came from, as errors name it: "--hello-cap" or "FILE:LINE: Key"
        origin = {opt: f"--{opt}" for opt in _CONFIG_KEYS.values()}
        self["config-warnings"] = []
        if self["config"]:
            settings, self["config-warnings"] = _read_config(Path(self["config"]))
            for key, (value, where) in settings.items():
                opt = _CONFIG_KEYS[key]
                if self[opt] is None:
                    self[opt], origin[opt] = value, f"{where}: {key}"
        self["origins"] = origin
        if self["log-level"] is not None:  # the option's is checked already; the config's:
            try:
                self["log-level"] = level_name(self["log-level"])
            except ValueError as e:
                raise usage.UsageError(f"{origin['log-level']}: {e}") from None
        if self["pending-max"] is None:
            self["pending-max"] = default_pending_max()
        for opt, value in _DEFAULTS.items():
            if self[opt] is None:
                self[opt] = value
        for opt, kind in _NUMBERS.items():
            self[opt] = _number(kind, self[opt], origin[opt])
            if self[opt] > _MAXIMA[opt]:
                raise usage.UsageError(
                    f"{origin[opt]}: at most {_MAXIMA[opt]:g}, got {self[opt]:g}"
                )
            if self[opt] <= 0 and (kind is int or opt in _ABOVE_ZERO):
                raise usage.UsageError(f"{origin[opt]}: must be positive, got {self[opt]:g}")
            if self[opt] < 0:  # the others' 0 means off, never or at once
                raise usage.UsageError(f"{origin[opt]}: must be 0 or more, got {self[opt]:g}")
        share = self["per-address-share"]
        try:
            self["per-address-share"] = DEFAULT_SHARE if share is None else parse_share(share)
        except ValueError as e:
            raise usage.UsageError(f"{origin['per-address-share']}: {e}") from None
        if self["no-splice"]:
            if self["relay"] not in (None, "python"):
                raise usage.UsageError(f"--no-splice contradicts {origin['relay']} {self['relay']}")
            self["relay"] = "python"
        if self["relay"] is not None and self["relay"] not in _RELAYS:
            raise usage.UsageError(
                f"{origin['relay']}: {self['relay']!r} is not one of {', '.join(_RELAYS)}"
            )
        if self["relay"] == "splice" and not splice_available():
            raise usage.UsageError(f"{origin['relay']} splice: this system has no splice(2)")
        stats_dir = Path(self["stats-file"] or ".").absolute().parent
        if self["stats-file"] and not stats_dir.is_dir():
            raise usage.UsageError(f"{origin['stats-file']}: no directory {stats_dir}")
        if self["stats-file"] and Path(self["stats-file"]).is_dir():  # never writable:
            raise usage.UsageError(  # a warning a minute for good (session 32)
                f"{origin['stats-file']} {self['stats-file']}: a directory, not a file "
                "(give the file's name, e.g. DIR/pktproxy-stats.json)"
            )
        # Where it listens before its identity: a mistyped --setup was hidden behind a
        # missing certificate, and said only once `pktlab init` had been run.
        listen = [
            (origin[n], server_endpoint(None, self[n], origin[n], "tcp:20557:interface=127.0.0.1"))
            for n in ("setup", "endpoints")
        ]
        distinct_ports(listen)
        try:
            home = PktlabHome.at(self["home"])
        except ValueError as e:  # ~nosuchuser
            raise usage.UsageError(f"--home {e}") from None
        cert: str | Path = self["cert"] or home.cert_path(AGENT_CERT)
        keyfile: str | Path = self["private-key"] or home.key_path(AGENT_KEY)
        try:
            self["credentials"] = Credentials.load([cert], keyfile)
        except TLSConfigError as e:
            opt = "private-key" if e.part == "key" else "cert"
            if e.part == "pair" and self["private-key"]:  # the one given names it
                opt = "private-key"
            given = origin[opt] + ": " if self[opt] else ""
            fix = e.unreadable() or (  # there, not readable: `pktlab init` would not help
                f"run `pktlab init`, which writes {AGENT_CERT}.cert and {AGENT_KEY}, or give "
                "--cert and --private-key"
            )
            if e.part == "pair":  # both there, of two keys: nor would it here
                fix = (
                    "give the key the certificate was issued for, or a certificate of this "
                    "key: pktlab ppks sign agent SIGNER_KEY NOT_BEFORE NOT_AFTER OUT -k KEY.pub"
                )
            raise usage.UsageError(f"{given}proxy identity: {e} ({fix})") from None
        # Not an agent certificate: our managers check the proxy's in agent mode whatever
        # their ProxyCertRootPath, so every registration would fail (it started silently).
        wrong = agent_leaf_error(
            self["credentials"].leaf,
            f"{origin['cert'] if self['cert'] else cert}: proxy identity",
            "manager checks the proxy's certificate",
        )
        if wrong is not None:
            raise usage.UsageError(f"{wrong} (`pktlab init` writes {AGENT_CERT}.cert)")
        # An expired agent certificate: managers that check it (ProxyCertRootPath) refuse
        # every registration; the proxy used to start with it without a word.
        error, warning, _ = chain_validity(
            self["credentials"].chain, f"{origin['cert'] if self['cert'] else cert}", time.time()
        )
        if error is not None:
            raise usage.UsageError(f"proxy identity: {error}")
        if warning is not None:
            log.warn("proxy identity: {warning}", warning=warning)
        roots = []
        for p in filter(None, (self["manager-roots"] or "").split(",")):
            try:
                roots.append(read_public_key(p.strip()))
            except (OSError, PPKSError, ValueError) as e:
                raise usage.UsageError(f"{origin['manager-roots']}: {p}: {e}") from None
        self["roots"] = roots


def _number(kind: type, value: Any, origin: str) -> Any:
    """`value` as an int or a finite float; ASCII digits only (int() also takes "1_000"
    and other scripts' digits)."""
    text = str(value).strip()
    pattern = r"-?[0-9]+" if kind is int else r"-?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?"
    if not re.fullmatch(pattern, text, re.IGNORECASE):
        raise usage.UsageError(f"{origin}: not a number: {value!r}")
    return kind(text)


# Descriptors per backlog once it is spliced, by relay: the endpoint's and the manager's
# sockets; the copy and splice relays drive duplicates of both; splice adds a pipe a way.
_LINK_FDS = {"python": 2, "copy": 4, "splice": 8}


def link_budget(nofile: int | None, pending_max: int, relay: str) -> int | None:
    """Backlogs plus splices that fit in `nofile` descriptors beside both ports' pending
    connections (None: no limit)."""
    return fdcap.link_budget(nofile, 2 * pending_max, _LINK_FDS[relay])


def _read_config(path: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Key -> (value, "FILE:LINE") of a config file of "Key value" lines, and the
    warnings of keys given twice (the last one wins)."""
    try:
        text = config_text(path)
    except OSError as e:
        raise usage.UsageError(f"--config: cannot read {path}: {e}") from None
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
    cfg: dict[str, tuple[str, str]] = {}
    keys = RepeatedKeys(str(path))
    for n, raw in enumerate(text.splitlines(), 1):
        try:
            kv = config_line(raw)  # any run of blanks (spaces, tabs) separates
        except ValueError as e:
            raise usage.UsageError(f"{path}:{n}: {e}") from None
        if kv is None:
            continue
        key, value = kv
        if key not in _CONFIG_KEYS:
            hint = difflib.get_close_matches(key, list(_CONFIG_KEYS), n=1)
            known = f"did you mean {hint[0]}?" if hint else "keys: " + ", ".join(_CONFIG_KEYS)
            raise usage.UsageError(f"{path}:{n}: unknown key {key!r} ({known})")
        if not value.strip():
            raise usage.UsageError(f"{path}:{n}: {key}: no value")
        cfg[key] = (value.strip(), f"{path}:{n}")
        keys.note(key, n, value.strip())
    return cfg, keys.warnings()


class StatsReport:
    """The counters every --stats-interval: a log line, and the JSON of --stats-file
    replaced whole (a reader never sees half a file). A file that cannot be written (its
    directory not writable after twistd's `-u`, a full disk) is one warning, and another
    when it is written again: it raised out of the timer, an `Unhandled Error` traceback,
    and Twisted then stopped the timer, so the counters line was never logged again."""

    def __init__(self, proxy: Any, stats_file: str | None) -> None:
        self.proxy = proxy
        self.stats_file = stats_file
        self.failing = False

    def __call__(self) -> None:
        log.info("counters: {stats}", stats=self.proxy.stats_line())
        if not self.stats_file:
            return
        tmp = Path(f"{self.stats_file}.tmp")
        try:
            tmp.write_text(self.proxy.stats_json() + "\n", encoding="utf-8")
            tmp.replace(self.stats_file)
        except OSError as e:
            if not self.failing:
                self.failing = True
                log.warn("--stats-file {path}: cannot write it ({why}); the counters are "
                         "still logged, and the file is tried again each time",
                         path=self.stats_file, why=e.strerror or e)  # fmt: skip
            return
        if self.failing:
            self.failing = False
            log.info("--stats-file {path}: written again", path=self.stats_file)


class ProxyService(service.MultiService):
    """Listens on both ports (logging the addresses actually bound, so port 0 works) and
    closes every live connection when stopped."""

    def __init__(self, proxy: Any, ports: list[tuple[str, Any, Any]]) -> None:
        super().__init__()
        self.proxy = proxy
        self.ports = ports  # (name, server endpoint, factory)
        self.listening: dict[str, Any] = {}
        self._listen_called = False

    def privilegedStartService(self) -> None:
        """Listen here, before twistd's `-u`/`-g` drops privileges (as Twisted's own
        servers do): in startService a port below 1024 failed with `Permission denied`."""
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()  # (started without privilegedStartService: a test, an embedding)

    def _listen(self) -> None:
        if self._listen_called:
            return
        self._listen_called = True
        for name, ep, factory in self.ports:
            d = ep.listen(factory)
            d.addCallback(self._listening, name)
            d.addErrback(self._failed, name)

    def _listening(self, port: Any, name: str) -> None:
        self.listening[name] = port
        host = port.getHost()
        log.info("{name} port listening on {where}", name=name, where=host_port(host), **START_STOP)

    def _failed(self, f: Any, name: str) -> None:
        from twisted.internet import reactor
        from twisted.internet.error import CannotListenError

        e = f.value
        if isinstance(e, CannotListenError):
            why = listen_failure(name, e)
        else:
            why = f"cannot listen on the {name} port: {f.getErrorMessage()}"
        log.error("{why}", why=why)
        stop_daemon(reactor, why)  # under twistd: that line on stderr too, exit status 1

    def stopService(self) -> Any:
        super().stopService()
        log.info("stopping: {stats}", stats=self.proxy.stats_line(), **START_STOP)
        ports, self.listening = list(self.listening.values()), {}
        self.proxy.close_all()
        from twisted.internet.defer import DeferredList, maybeDeferred

        return DeferredList([maybeDeferred(p.stopListening) for p in ports])


@tap_service
def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from packetlab.sigterm import install_sigterm

    install_sigterm(reactor)  # not Twisted's handler: it can deadlock on its log lock

    from packetlab.proxy.registry import BacklogRegistry
    from packetlab.proxy.server import Proxy

    for warning in options["config-warnings"]:
        log.warn("config: {warning}", warning=warning)

    entry = ServerEntry(
        options["credentials"],
        AuthMode.AGENT,
        options["roots"],
        require_client_cert=bool(options["roots"]),
    )
    proxy = Proxy(
        reactor,
        PPKSServerOptions({}, default=entry),
        hello_cap=options["hello-cap"],
        hello_timeout=options["hello-timeout"],
        setup_timeout=options["setup-timeout"],
        relay=options["relay"],
        pending_max=options["pending-max"],
        keepalive=options["keepalive"],
        backlog_wait=options["backlog-wait"],
        per_address_share=options["per-address-share"],
        registry=BacklogRegistry(
            per_snikey=options["backlog-per-snikey"], total=options["backlog-max"]
        ),
    )
    ports = []
    wanted = [
        ("setup", options["setup"], proxy.setup_factory()),
        ("endpoints", options["endpoints"], proxy.endpoint_factory()),
    ]
    for name, where, factory in wanted:
        origin = options["origins"][name]
        ep = server_endpoint(reactor, where, origin, "tcp:20557:interface=127.0.0.1")
        ports.append((name, ep, factory))
    distinct_ports([(options["origins"][name], ep) for name, ep, _ in ports])
    nofile = fdcap.nofile_limit()
    proxy.link_max = link_budget(nofile, options["pending-max"], proxy.relay)
    one = proxy.share.cap(proxy.link_budget)
    if proxy.link_max is not None and proxy.link_max < options["backlog-max"]:
        log.info(
            "descriptor limit {nofile}: at most {n} backlog and spliced connections at once "
            "({per} descriptors each with the {relay} relay; --backlog-max {cap}), {one} "
            "from one manager address (--per-address-share {share:g}), {site} from one IPv6 "
            "/48; past it xreg gets ENORES. Raise `ulimit -n` for more",
            nofile=nofile,
            n=proxy.link_max,
            per=_LINK_FDS[proxy.relay],
            relay=proxy.relay,
            cap=options["backlog-max"],
            one=one,
            share=proxy.share.fraction,
            site=proxy.share.site_cap(proxy.link_budget),
        )
    else:
        log.info(
            "at most {one} backlog and spliced connections from one manager address "
            "(--per-address-share {share:g} of {n}), {site} from one IPv6 /48; past it xreg "
            "gets ENORES",
            one=one,
            share=proxy.share.fraction,
            n=proxy.link_budget,
            site=proxy.share.site_cap(proxy.link_budget),
        )
    top = ProxyService(proxy, ports)
    interval = options["stats-interval"]
    if interval:
        report = StatsReport(proxy, options["stats-file"])
        internet.TimerService(interval, report).setServiceParent(top)
    log.info("pktproxy: setup {s}, endpoints {e}", s=options["setup"], e=options["endpoints"])
    return top
