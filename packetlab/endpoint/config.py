"""The endpoint configuration: the reference ``endpt.conf`` format (PROTOCOL.md §7.4).

One ``Key value`` per line; ``#`` starts a comment; lists are comma-separated. Unknown
keys produce a warning, never an error; a bad value is a `ConfigError` naming the file,
the line and the key. The same per-key parser takes the ``twistd pktendpoint --set
KEY=VALUE`` overrides, so both paths accept exactly the same values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from packetlab.endpoint import netif
from packetlab.endpoint.busypoll import MAX_BUSY_POLL_US
from packetlab.loglevel import level_name
from packetlab.paths import RepeatedKeys, config_line, config_text, expand_path, pktlab_home
from packetlab.ppks.limits import NS_PER_S, BurstRate

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "KNOWN_KEYS",
    "ConfigError",
    "EndpointConfig",
    "load_config",
    "parse_anon_mask",
    "parse_config",
    "parse_rate",
]

DEFAULT_CONFIG_PATH = Path("~/.pktlab/endpt.conf")
# IP4NO/IP6NO (§2.2) are one byte: 255 addresses at most (256 would read as 0, as the
# reference's count wraps; a config error here instead).
MAX_LOCAL_ADDRS = 255
MAX_DNS_ADDRS = 16
MAX_HOSTID = 255
U32_MAX = 0xFFFFFFFF
MONITOR_MEMORY_MIN = 131072  # MonitorMemoryMax floor: the 2-page host memory (§7.4)
_SNIKEY_RE = re.compile(r"[a-z0-9]{1,63}")

IPv4If = ipaddress.IPv4Interface
IPv6Addr = ipaddress.IPv6Address


T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names where it came from."""


@dataclass
class EndpointConfig:
    """Parsed endpoint settings, reference defaults where the reference has them."""

    buf_max: int = 8388608
    transproto_sup: frozenset[str] = frozenset({"tcp", "udp"})
    ipv4: list[IPv4If] = field(
        default_factory=lambda: [IPv4If("127.0.0.1/24"), IPv4If("127.0.0.2/24")]
    )
    ipv6: list[IPv6Addr] = field(default_factory=list)
    dns4: list[ipaddress.IPv4Address] = field(default_factory=list)
    dns6: list[IPv6Addr] = field(default_factory=list)
    host_id: str = "pktendpt"
    nosub_mode: bool = True
    nosub_snikey: str | None = None
    #: TLS to the controller (§4.6): our subcmd chain, its key, the trusted EOp keys.
    controller_chain: list[str] = field(default_factory=list)
    private_key: str | None = None
    eop_pubkeys: list[str] = field(default_factory=list)
    #: Resource accounting database (None: ~/.pktlab/endpt.rlim.sqlite3, docs/ppks.md).
    rlim_db: str | None = None
    #: Broker mode (NoSubMode 0, §5.3; docs/broker.md).
    broker_addr: str | None = None
    broker_channels: list[str] | None = None  # BrokerChannel entries (hex); "" = auto here
    auto_extract_channel: bool = True
    agent_cert: str | None = None
    broker_roots: list[str] = field(default_factory=list)
    subpriv_chain: list[str] = field(default_factory=list)
    endpoint_attr: str = ""
    #: Experiments run at once in broker mode (ours; the reference runs one).
    max_experiments: int = 1
    #: Monitors (§7.4, §8): MonitorReportCrash, MonitorDeadlineMillsec, MonitorMemoryMax,
    #: MonitorEnableDebug; where persistent monitor memory lives (None: under ~/.pktlab).
    monitor_report_crash: bool = False
    monitor_deadline_ms: int = 100
    #: ms of monitor time a session may use per second of the reactor (0: no cap)
    monitor_time_ms: int = 500
    #: ms of it saved up at most, the longest its monitors hold the reactor at once
    #: (0: twice MonitorDeadlineMillsec, at most 1000; monitor.abi.Settings.time_burst)
    monitor_time_burst_ms: int = 0
    monitor_memory_max: int = 1048576
    monitor_debug: bool = False
    monitor_persistent_path: str | None = None
    #: ReflexEnable 0 forbids reflexes (docs/reflexes.md); they run under the monitor
    #: deadline and memory cap.
    reflex_enable: bool = True
    #: BusyPollUs: µs the reactor keeps polling without blocking after I/O (0: off;
    #: packetlab.endpoint.busypoll, docs/endpoint.md).
    busy_poll_us: int = 0
    #: CpuLatencyUs: the CPU wake-up latency (µs) asked of the kernel while a session is
    #: open (None: no request; packetlab.endpoint.cpulatency, docs/endpoint.md).
    cpu_latency_us: int | None = None
    #: ReflexWarmUs: while busy-polling, rehearse attached reflexes every N µs to keep
    #: their path warm (0: off; packetlab.endpoint.reflexwarm, docs/reflexes.md).
    reflex_warm_us: int = 100
    #: LogLevel: the least level twistd's log writes (None: --log-level's default, info;
    #: packetlab.loglevel, docs/endpoint.md).
    log_level: str | None = None
    #: Operator policy on every experiment (docs/endpoint.md, packetlab.endpoint.policy).
    capture_filter: str | None = None
    capture_snaplen: int | None = None
    capture_anon_mask4: bytes | None = None
    capture_anon_mask6: bytes | None = None
    exp_send_rate_pkt: BurstRate | None = None
    exp_send_rate_byte: BurstRate | None = None
    #: Keys recognised but not used by this version (kept for the features still to come).
    reserved: dict[str, str] = field(default_factory=dict)
    #: Human-readable warnings gathered while parsing (unknown keys, ignored features).
    warnings: list[str] = field(default_factory=list)
    #: key -> where its value came from (``endpt.conf:3``, ``--set KEY``), for errors found
    #: after parsing (a device a key needs that cannot be opened).
    origins: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: str, where: str) -> None:
        """Apply one ``key value`` pair; `where` (``file:line``) prefixes every message."""
        handler = _HANDLERS.get(key)
        if handler is None:
            if key in _RESERVED_KEYS:
                if value.strip() not in ("0", "1"):  # the reference's 0/1, checked even
                    # unused: a typo in a reference endpt.conf should not pass in silence
                    raise ConfigError(f"{where}: {key}: expected 0 or 1, got {value!r}")
                self.reserved[key] = value
                self.warnings.append(f"{where}: {key} is not used by this version of pktendpoint")
                return
            import difflib  # only for this message: idle RSS (docs/performance.md)

            same = [k for k in KNOWN_KEYS if k.lower() == key.lower()]
            typo = same or difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.85)
            if typo:  # a misspelling (`NoSubMod 1`) would silently change what runs
                raise ConfigError(f"{where}: unknown key {key!r} (did you mean {typo[0]}?)")
            # Like nothing we know closely: a key of another version of the reference, or
            # of another file (xpmgr.conf's BrokerCertRootPath), say.
            self.warnings.append(f"{where}: unknown key {key!r} ignored{nearest_key(key)}")
            return
        try:
            handler(self, value.strip())
        except ConfigError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
        self.origins[key] = where

    def named(self, key: str) -> str:
        """`key` with where it was set (`endpt.conf:3: KEY`, or the option, which names
        it), for an error found after parsing; the bare key for a default."""
        where = self.origins.get(key)
        if not where:
            return key
        return where if where.endswith(key) else f"{where}: {key}"

    def credentials_fault(self, part: str, cert_key: str) -> str:
        """Which keys a `TLSConfigError` of `part` (key, cert or pair) is about: the key
        file, the certificate file, or both when they do not belong together."""
        if part == "key":
            return self.named("EndpointPrivKey")
        if part == "pair":
            return f"{self.named(cert_key)} and {self.named('EndpointPrivKey')}"
        return self.named(cert_key)

    def read_files(
        self, key: str, paths: Iterable[str], read: Callable[[str], T], prefix: str = ""
    ) -> list[T]:
        """`read` of every file of `key`; a `ConfigError` naming the key, where it was set
        and the file (was `broker mode: [Errno 2] No such file or directory: ...`)."""
        from packetlab.ppks import PPKSError

        out = []
        for path in paths:
            try:
                out.append(read(path))
            except (OSError, PPKSError, ValueError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise ConfigError(f"{prefix}{self.named(key)}: {path}: {why}") from None
        return out


def nearest_key(key: str) -> str:
    """` (did you mean KEY?)` with the known key nearest to the unknown `key`, or ''."""
    import difflib  # only for this message: idle RSS (docs/performance.md)

    hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    return f" (did you mean {hint[0]}?)" if hint else ""


# ---------------------------------------------------------------------------- values


def _int(value: str, lo: int, hi: int) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise ConfigError(f"expected an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{n} is out of range [{lo}, {hi}]")
    return n


def _bool(value: str) -> bool:
    if value in ("0", "1"):
        return value == "1"
    raise ConfigError(f"expected 0 or 1, got {value!r}")


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _v4_entries(item: str) -> list[IPv4If]:
    try:
        return [IPv4If(item)]
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", item) and not item[0].isdigit():
        found = [
            IPv4If(f"{a.address}/{a.netmask}")
            for a in netif.interface_addresses(item)
            if a.address.version == 4
        ]
        if not found:
            raise ConfigError(f"interface {item!r} does not exist or has no IPv4 address")
        return found
    raise ConfigError(f"{item!r} is neither an IPv4 address[/mask] nor an interface name")


def _v6_entries(item: str) -> list[IPv6Addr]:
    try:
        # A prefix length is accepted and ignored: IP6LS carries no mask (§2.2).
        return [ipaddress.IPv6Interface(item).ip]
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", item) and not item[0].isdigit():
        found = [
            a.address for a in netif.interface_addresses(item) if isinstance(a.address, IPv6Addr)
        ]
        if not found:
            raise ConfigError(f"interface {item!r} does not exist or has no IPv6 address")
        return found
    raise ConfigError(f"{item!r} is neither an IPv6 address nor an interface name")


def _set_buf_max(cfg: EndpointConfig, value: str) -> None:
    cfg.buf_max = _int(value, 1, U32_MAX)


def _set_transproto(cfg: EndpointConfig, value: str) -> None:
    protos = {p.lower() for p in _items(value)}
    bad = protos - {"raw", "tcp", "udp"}
    if bad:
        raise ConfigError(f"unknown protocol(s) {', '.join(sorted(bad))} (allowed: raw,tcp,udp)")
    cfg.transproto_sup = frozenset(protos)


def _set_ipv4(cfg: EndpointConfig, value: str) -> None:
    entries = [e for item in _items(value) for e in _v4_entries(item)]
    if len(entries) > MAX_LOCAL_ADDRS:
        raise ConfigError(
            f"{len(entries)} addresses, at most {MAX_LOCAL_ADDRS} allowed (IP4NO is one byte)"
        )
    cfg.ipv4 = entries


def _set_ipv6(cfg: EndpointConfig, value: str) -> None:
    entries = [e for item in _items(value) for e in _v6_entries(item)]
    if len(entries) > MAX_LOCAL_ADDRS:
        raise ConfigError(
            f"{len(entries)} addresses, at most {MAX_LOCAL_ADDRS} allowed (IP6NO is one byte)"
        )
    cfg.ipv6 = entries


def _dns(value: str, version: int) -> list[ipaddress.IPv4Address | IPv6Addr]:
    out: list[ipaddress.IPv4Address | IPv6Addr] = []
    for item in _items(value):
        try:
            addr = ipaddress.ip_address(item)
        except ValueError:
            raise ConfigError(f"{item!r} is not an IP address") from None
        if addr.version != version:
            raise ConfigError(f"{item!r} is not an IPv{version} address")
        out.append(addr)
    if len(out) > MAX_DNS_ADDRS:
        raise ConfigError(f"{len(out)} addresses, at most {MAX_DNS_ADDRS} allowed")
    return out


def _set_dns4(cfg: EndpointConfig, value: str) -> None:
    cfg.dns4 = [a for a in _dns(value, 4) if isinstance(a, ipaddress.IPv4Address)]


def _set_dns6(cfg: EndpointConfig, value: str) -> None:
    cfg.dns6 = [a for a in _dns(value, 6) if isinstance(a, IPv6Addr)]


def _set_host_id(cfg: EndpointConfig, value: str) -> None:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as e:
        # bytes that are not UTF-8 on the command line (`--host-id $'\xff'`: Python
        # holds them as surrogates) were a UnicodeEncodeError out of option parsing
        ch = value[e.start]  # surrogateescape's U+DC80..U+DCFF stand for bytes 0x80..0xff
        what = f" (byte 0x{ord(ch) - 0xDC00:02x})" if "\udc80" <= ch <= "\udcff" else ""
        raise ConfigError(f"not UTF-8 text{what}") from None
    if len(raw) > MAX_HOSTID:
        raise ConfigError(f"{len(raw)} bytes long, at most {MAX_HOSTID} allowed")
    cfg.host_id = value


def _set_nosub(cfg: EndpointConfig, value: str) -> None:
    cfg.nosub_mode = _bool(value)


def _set_broker_addr(cfg: EndpointConfig, value: str) -> None:
    cfg.broker_addr = value or None


def _set_broker_channel(cfg: EndpointConfig, value: str) -> None:
    # Entries stay as given: an empty entry is where auto-extracted channels go (§5.3).
    if not value:
        cfg.broker_channels = None
        return
    entries = [v.strip() for v in value.split(",")]
    for e in entries:
        if e and (len(e) % 2 or not 1 <= len(e) // 2 <= 32 or not _is_hex(e)):
            raise ConfigError(f"{e!r} is not a channel: 1..32 bytes in hex")
    cfg.broker_channels = entries


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _set_auto_extract(cfg: EndpointConfig, value: str) -> None:
    cfg.auto_extract_channel = _bool(value)


def _set_agent_cert(cfg: EndpointConfig, value: str) -> None:
    cfg.agent_cert = _path(value) if value else None


def _set_broker_roots(cfg: EndpointConfig, value: str) -> None:
    cfg.broker_roots = _paths(value)


def _set_subpriv(cfg: EndpointConfig, value: str) -> None:
    cfg.subpriv_chain = _paths(value)


def _set_endpoint_attr(cfg: EndpointConfig, value: str) -> None:
    from packetlab.wire.nvlist import NVListError, parse_nvlist

    try:
        parse_nvlist(value)
    except NVListError as e:
        raise ConfigError(f"{value!r} is not a name=value; list without wildcards: {e}") from None
    cfg.endpoint_attr = value


def _set_max_experiments(cfg: EndpointConfig, value: str) -> None:
    cfg.max_experiments = _int(value, 1, 64)


def _set_snikey(cfg: EndpointConfig, value: str) -> None:
    if value and not _SNIKEY_RE.fullmatch(value):
        raise ConfigError(f"{value!r} is not a snikey (1..63 characters of [a-z0-9])")
    cfg.nosub_snikey = value or None


def _path(value: str) -> str:
    """A file name, ``~`` and ``~user`` expanded; an unknown user or a NUL byte is a
    ConfigError."""
    try:
        return str(expand_path(value))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _paths(value: str) -> list[str]:
    return [_path(p) for p in _items(value)]


def _set_chain(cfg: EndpointConfig, value: str) -> None:
    cfg.controller_chain = _paths(value)


def _set_privkey(cfg: EndpointConfig, value: str) -> None:
    cfg.private_key = _path(value) if value else None


def _set_eop_keys(cfg: EndpointConfig, value: str) -> None:
    cfg.eop_pubkeys = _paths(value)


def _set_rlim_db(cfg: EndpointConfig, value: str) -> None:
    cfg.rlim_db = _path(value) if value else None


def _set_report_crash(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_report_crash = _bool(value)


def _set_deadline(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_deadline_ms = _int(value, 1, 60000)


def _set_monitor_time(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_time_ms = _int(value, 0, 1000)


def _set_monitor_time_burst(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_time_burst_ms = _int(value, 0, 60000)


def _set_memory_max(cfg: EndpointConfig, value: str) -> None:
    n = _int(value, 0, U32_MAX)
    if n < MONITOR_MEMORY_MIN:
        cfg.warnings.append(f"MonitorMemoryMax {n} is below the minimum; {MONITOR_MEMORY_MIN} used")
    cfg.monitor_memory_max = max(n, MONITOR_MEMORY_MIN)


def _set_monitor_debug(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_debug = _bool(value)


def _set_log_level(cfg: EndpointConfig, value: str) -> None:
    try:
        cfg.log_level = level_name(value)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _set_reflex_enable(cfg: EndpointConfig, value: str) -> None:
    cfg.reflex_enable = _bool(value)


def _set_busy_poll(cfg: EndpointConfig, value: str) -> None:
    cfg.busy_poll_us = _int(value, 0, MAX_BUSY_POLL_US)


def _set_cpu_latency(cfg: EndpointConfig, value: str) -> None:
    from packetlab.endpoint.cpulatency import MAX_CPU_LATENCY_US

    cfg.cpu_latency_us = _int(value, 0, MAX_CPU_LATENCY_US)


def _set_reflex_warm(cfg: EndpointConfig, value: str) -> None:
    cfg.reflex_warm_us = _int(value, 0, MAX_BUSY_POLL_US)


def _set_persistent_path(cfg: EndpointConfig, value: str) -> None:
    cfg.monitor_persistent_path = _path(value) if value else None


def parse_anon_mask(text: str, version: int) -> bytes:
    """An address mask (``255.255.255.0``) or a prefix length (``24``) as mask bytes."""
    try:
        if text.isdigit():
            net = ipaddress.ip_network(f"{'0.0.0.0' if version == 4 else '::'}/{text}")
            return net.netmask.packed
        mask = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{text!r} is neither an IPv{version} mask nor a prefix length") from None
    if mask.version != version:
        raise ConfigError(f"{text!r} is not an IPv{version} mask")
    return mask.packed  # any mask, non-contiguous ones too


def parse_rate(text: str) -> BurstRate:
    """``COUNT/SECONDS`` (seconds may be fractional) as a sliding-window rate."""
    count, sep, seconds = text.partition("/")
    try:
        c, s = int(count), float(seconds)
    except ValueError:
        c, s = -1, 0.0
    # A window under 1 ns would round to 0, which limits nothing: refused like 0.
    if not sep or c < 0 or not 1 / NS_PER_S <= s <= 86400:
        raise ConfigError(f"expected COUNT/SECONDS (e.g. 1000/1), got {text!r}")
    return BurstRate(c, int(s * NS_PER_S))


def _set_capture_filter(cfg: EndpointConfig, value: str) -> None:
    cfg.capture_filter = value or None


def _set_snaplen(cfg: EndpointConfig, value: str) -> None:
    cfg.capture_snaplen = _int(value, 1, 0x10000) if value else None


def _set_mask4(cfg: EndpointConfig, value: str) -> None:
    cfg.capture_anon_mask4 = parse_anon_mask(value, 4) if value else None


def _set_mask6(cfg: EndpointConfig, value: str) -> None:
    cfg.capture_anon_mask6 = parse_anon_mask(value, 6) if value else None


def _set_rate_pkt(cfg: EndpointConfig, value: str) -> None:
    cfg.exp_send_rate_pkt = parse_rate(value) if value else None


def _set_rate_byte(cfg: EndpointConfig, value: str) -> None:
    cfg.exp_send_rate_byte = parse_rate(value) if value else None


def _set_rawlkm(cfg: EndpointConfig, value: str) -> None:
    if _bool(value):
        cfg.warnings.append("RawModeLKM 1 is not supported; ignored")


_HANDLERS: dict[str, Callable[[EndpointConfig, str], None]] = {
    "BufMax": _set_buf_max,
    "TransprotoSup": _set_transproto,
    "VMemLocalAddrStrIPv4": _set_ipv4,
    "VMemLocalAddrStrIPv6": _set_ipv6,
    "VMemLocalDNSAddrStrIPv4": _set_dns4,
    "VMemLocalDNSAddrStrIPv6": _set_dns6,
    "HostID": _set_host_id,
    "NoSubMode": _set_nosub,
    "NoSubModeSNIKey": _set_snikey,
    "RawModeLKM": _set_rawlkm,
    "ControllerCertChainPath": _set_chain,
    "EndpointPrivKey": _set_privkey,
    "EndpointOpPubKeyPath": _set_eop_keys,
    "RLimDBPath": _set_rlim_db,
    "BrokerAddr": _set_broker_addr,
    "BrokerChannel": _set_broker_channel,
    "AutoExtractChannel": _set_auto_extract,
    "EndpointAgentCertPath": _set_agent_cert,
    "BrokerChainRootPath": _set_broker_roots,
    "SubPrivCertChainPath": _set_subpriv,
    "EndpointAttr": _set_endpoint_attr,
    "MaxConcurrentExperiments": _set_max_experiments,
    "MonitorReportCrash": _set_report_crash,
    "MonitorDeadlineMillsec": _set_deadline,
    "MonitorTimeMillsec": _set_monitor_time,  # ours: a session's monitor time a second
    "MonitorTimeBurstMillsec": _set_monitor_time_burst,  # ours: ... saved up at most
    "MonitorMemoryMax": _set_memory_max,
    "MonitorEnableDebug": _set_monitor_debug,
    "MonitorPersistentPath": _set_persistent_path,
    "ReflexEnable": _set_reflex_enable,  # reflexes (docs/reflexes.md)
    "BusyPollUs": _set_busy_poll,  # reactor busy-poll (docs/endpoint.md)
    "CpuLatencyUs": _set_cpu_latency,  # PM QoS while a session is open (docs/endpoint.md)
    "ReflexWarmUs": _set_reflex_warm,  # reflex rehearsal while busy-polling (docs/reflexes.md)
    "LogLevel": _set_log_level,  # twistd's log filter (packetlab.loglevel)
    "CaptureFilter": _set_capture_filter,
    "CaptureSnaplen": _set_snaplen,
    "CaptureAnonMask4": _set_mask4,
    "CaptureAnonMask6": _set_mask6,
    "ExpSendRatePkt": _set_rate_pkt,
    "ExpSendRateByte": _set_rate_byte,
}
_RESERVED_KEYS = frozenset(
    {
        "WorkerBusyWaitMode",
    }
)  # fmt: skip
KNOWN_KEYS: tuple[str, ...] = tuple(sorted(set(_HANDLERS) | _RESERVED_KEYS))


def parse_config(
    lines: Iterable[str], source: str = "endpt.conf", cfg: EndpointConfig | None = None
) -> EndpointConfig:
    """Parse ``endpt.conf`` lines into `cfg` (a fresh default config if None)."""
    cfg = cfg if cfg is not None else EndpointConfig()
    keys = RepeatedKeys(source)
    for lineno, line in enumerate(lines, 1):
        try:
            kv = config_line(line)
        except ValueError as e:
            raise ConfigError(f"{source}:{lineno}: {e}") from None
        if kv is None:
            continue
        key, value = kv
        cfg.set(key, value, f"{source}:{lineno}")
        keys.note(key, lineno, value)
    cfg.warnings += keys.warnings()
    return cfg


def load_config(path: str | Path | None) -> EndpointConfig:
    """Read `path`; None means the default ``~/.pktlab/endpt.conf`` (``$PKTLAB_HOME``
    honoured, as the broker, the proxy, xpmgr and the accounting database do: it was
    ignored: after `PKTLAB_HOME=D pktlab init`, `twistd pktendpoint` refused to start for
    want of ControllerCertChainPath, which D/endpt.conf sets) if it exists, else the
    built-in defaults. An explicit path that cannot be read is an error."""
    if path is None:
        default = pktlab_home() / DEFAULT_CONFIG_PATH.name
        if not default.is_file():
            return EndpointConfig()
        path = default
    p = Path(path).expanduser()
    try:
        text = config_text(p)
    except OSError as e:
        raise ConfigError(f"cannot read configuration {str(p)!r}: {e}") from None
    except ValueError as e:  # not UTF-8: the file and line (paths.config_text)
        raise ConfigError(str(e)) from None
    return parse_config(text.splitlines(), str(p))
