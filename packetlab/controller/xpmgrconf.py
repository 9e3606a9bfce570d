"""`xpmgr.conf`, the reference experiment manager's config (PROTOCOL.md §7.2).

One ``Key value`` per line (any blanks between), ``#`` starts a comment, lists are
comma-separated, times are ns. Every key of the reference is read; `ResultsPath` is ours
(where the per-endpoint JSON lines go). A bad line is a `XpmgrConfigError` naming the
file, the line and the key.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from packetlab.paths import RepeatedKeys
from packetlab.ppks import is_valid_snikey
from packetlab.wire.nvlist import GLOB_CHARS, VALUE_CHARS, NVListError, parse_nvlist

__all__ = [
    "PREDEFINED_XDESCR_NAMES",
    "ExpExec",
    "XpmgrConfig",
    "XpmgrConfigError",
    "default_config_path",
    "load_xpmgr_config",
    "parse_xpmgr_config",
]

#: xdescr names the manager sets itself; an ExpExec may not override them (§5.6).
PREDEFINED_XDESCR_NAMES = frozenset(
    {"controller_addr", "sni_key", "pub_end", "exp_priority", "hostid",
     "endpoint_country", "endpoint_location"}
)  # fmt: skip


class XpmgrConfigError(ValueError):
    pass


@dataclass
class ExpExec:
    """`IS_DEFAULT:SNIKEY:EXPPRIVCHAIN_PATH:TRUSTEDEOP_PATH:PUB_CHANNEL:OVERRIDE_XDESCRNVP`."""

    is_default: bool
    snikey: str | None  # None: a random one is drawn at start-up
    chain: list[str]
    trusted_eop: list[str]
    #: hex channels decoded; b"" stands for the root EOp's keyid (empty field or entry)
    pub_channels: list[bytes]
    override: str
    where: str = ""


@dataclass
class XpmgrConfig:
    enable_publication: bool = False
    broker_addr: str | None = None
    pub_agent_cert: str | None = None
    broker_cert_roots: list[str] = field(default_factory=list)
    pub_controller_addr: str | None = None
    pub_period_ns: int | None = None
    pub_exp_priority: int | None = None
    pub_country: list[str] = field(default_factory=list)
    pub_location: list[str] = field(default_factory=list)
    greet_after_pub_end_ns: int = 0
    controller_privkey: str | None = None
    program_dir: str | None = None
    enable_proxy: bool = False
    backlog_agent_cert: str | None = None
    proxy_cert_roots: list[str] = field(default_factory=list)
    target_backlog: int = 2
    backlog_timeout_ns: int = 2_000_000_000
    bootstrap_timeout_ns: int = 5_000_000_000
    exp_exec: list[ExpExec] = field(default_factory=list)
    results_path: str | None = None
    path: str = ""
    warnings: list[str] = field(default_factory=list)  # e.g. a key set twice
    lines: dict[str, int] = field(default_factory=dict)  # key -> the line that set it

    def where(self, key: str) -> str:
        """`xpmgr.conf:3: Key`, as an error names a setting."""
        line = self.lines.get(key)
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"

    @property
    def default_exp(self) -> ExpExec | None:
        return next((e for e in self.exp_exec if e.is_default), None)


def default_config_path() -> Path:
    """``~/.pktlab/xpmgr.conf`` ($PKTLAB_HOME honoured), falling back to ./xpmgr.conf."""
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at().root / "xpmgr.conf"
    return home if home.exists() or not Path("xpmgr.conf").exists() else Path("xpmgr.conf")


def _bool(v: str) -> bool:
    if v not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return v == "1"


U32_MAX = 2**32 - 1  # exp_priority (PROTOCOL.md §5.6)
U63 = 2**63  # ns: now + PubPeriod stays a u64 pktlab_time_t for centuries


def _uint(v: str, top: int = U63) -> int:
    # ASCII only: str.isdigit() also takes other scripts' digits and "²" (int() refuses)
    if not (v.isascii() and v.isdigit()):
        raise ValueError("expected a non-negative integer")
    if len(v) > 20 or int(v) > top:  # unbounded, they failed later: timers, sockets
        raise ValueError(f"at most {top}")
    return int(v)


def _pos(v: str, top: int = U63) -> int:
    n = _uint(v, top)
    if n == 0:
        raise ValueError("must be at least 1")
    return n


def _priority(v: str) -> int:
    return _uint(v, U32_MAX)


def _backlogs(v: str) -> int:
    return _pos(v, 4096)  # a proxy keeps at most 4096 idle backlogs by default


def _list(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _country(v: str) -> list[str]:
    out = _list(v)
    for c in out:
        if len(c) != 3 or not c.isalpha() or not c.isupper():
            raise ValueError(f"{c!r} is not an ISO 3166-1 alpha-3 code (e.g. USA)")
    return out


def _str(v: str) -> str:
    return v


def _xdescr_values(glob: bool) -> object:
    """A comma list whose entries go into the xdescr as values (checked now, not at
    publication time)."""
    allowed = VALUE_CHARS | GLOB_CHARS if glob else VALUE_CHARS

    def parse(v: str) -> list[str]:
        out = _list(v)
        for x in out:
            bad = sorted({c for c in x if c not in allowed})
            if bad:
                raise ValueError(f"{x!r}: characters an xdescr value cannot hold: {''.join(bad)!r}")
        return out

    return parse


def _xdescr_value(v: str) -> str:
    bad = sorted({c for c in v if c not in VALUE_CHARS})
    if bad:
        raise ValueError(f"characters an xdescr value cannot hold: {''.join(bad)!r}")
    return v


# key -> (attribute, parser)
_KEYS: dict[str, tuple[str, object]] = {
    "EnableExpPublication": ("enable_publication", _bool),
    "BrokerAddr": ("broker_addr", _str),
    "PubAgentCertPath": ("pub_agent_cert", _str),
    "BrokerCertRootPath": ("broker_cert_roots", _list),
    "PubControllerAddr": ("pub_controller_addr", _xdescr_value),
    "PubPeriod": ("pub_period_ns", _uint),
    "PubExpPriority": ("pub_exp_priority", _priority),
    "PubCountry": ("pub_country", _country),
    "PubLocation": ("pub_location", _xdescr_values(glob=True)),
    "GreetPeriodAfterPubEnd": ("greet_after_pub_end_ns", _uint),
    "ControllerPrivkeyPath": ("controller_privkey", _str),
    "ProgramDirPath": ("program_dir", _str),
    "EnableProxyMode": ("enable_proxy", _bool),
    "BacklogConnAgentCertPath": ("backlog_agent_cert", _str),
    "ProxyCertRootPath": ("proxy_cert_roots", _list),
    "TargetBacklogConn": ("target_backlog", _backlogs),
    "BacklogConnTimeout": ("backlog_timeout_ns", _pos),
    "BootstrapBacklogTimeout": ("bootstrap_timeout_ns", _pos),
    "ResultsPath": ("results_path", _str),
}
KNOWN_KEYS = (*_KEYS, "ExpExec")


QUOTES = "\"'"


def parse_exp_exec(value: str, where: str) -> ExpExec:
    paths = [p for f in value.split(":", 5)[2:4] for p in _list(f)]  # the chain, TRUSTEDEOP
    quoted = next((x for x in (value, *paths) if x and (x[0] in QUOTES or x[-1] in QUOTES)), None)
    if quoted is not None:  # kept as they are: `file 'c.cert': No such file` misled
        raise XpmgrConfigError(
            f"{where}: ExpExec {quoted!r} is quoted: xpmgr.conf takes a value as it is (as "
            "the reference does), so drop the quotes"
        )
    parts = value.split(":", 5)  # the last field takes the rest of the line (§7.2)
    if len(parts) != 6:
        raise XpmgrConfigError(
            f"{where}: ExpExec needs 6 ':'-separated fields "
            "IS_DEFAULT:SNIKEY:EXPPRIVCHAIN_PATH:TRUSTEDEOP_PATH:PUB_CHANNEL:OVERRIDE_XDESCRNVP, "
            f"got {len(parts)}"
        )
    is_default, snikey, chain, eop, channels, override = parts
    if is_default not in ("0", "1"):
        raise XpmgrConfigError(f"{where}: ExpExec IS_DEFAULT must be 0 or 1, got {is_default!r}")
    if snikey and not is_valid_snikey(snikey):
        raise XpmgrConfigError(
            f"{where}: ExpExec SNIKEY {snikey!r} must be 1..63 of [a-z0-9] (lowercase), or empty"
        )
    if not _list(chain):
        raise XpmgrConfigError(f"{where}: ExpExec EXPPRIVCHAIN_PATH is required")
    chans: list[bytes] = []
    for entry in channels.split(",") if channels else [""]:
        entry = entry.strip()
        try:
            raw = bytes.fromhex(entry)
        except ValueError:
            raise XpmgrConfigError(f"{where}: PUB_CHANNEL {entry!r} is not hex") from None
        if len(raw) > 32:
            raise XpmgrConfigError(f"{where}: PUB_CHANNEL {entry!r} longer than 32 bytes")
        chans.append(raw)
    for pair in filter(None, override.split(";")):
        name = pair.split("=", 1)[0]
        if "=" not in pair or not name:
            raise XpmgrConfigError(f"{where}: OVERRIDE_XDESCRNVP {pair!r} is not name=value")
        if name in PREDEFINED_XDESCR_NAMES:
            raise XpmgrConfigError(
                f"{where}: OVERRIDE_XDESCRNVP may not set {name!r} (the manager sets it)"
            )
    if override.strip():
        # checked now, not at publication time (pktxpmgr: "Cannot generate xdescr")
        text = override if override.endswith(";") else override + ";"
        try:
            parse_nvlist(text, allow_duplicates=True, allow_glob=True)
        except NVListError as e:
            raise XpmgrConfigError(
                f"{where}: OVERRIDE_XDESCRNVP {override!r} is not an xdescr name=value; list: {e}"
            ) from None
    return ExpExec(is_default == "1", snikey or None, _list(chain), _list(eop), chans,
                   override, where)  # fmt: skip


def parse_xpmgr_config(text: str, path: str = "xpmgr.conf") -> XpmgrConfig:
    cfg = XpmgrConfig(path=path)
    repeated = RepeatedKeys(path)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, *rest = line.split(None, 1)  # any run of blanks (spaces, tabs) separates
        value = rest[0].strip() if rest else ""
        where = f"{path}:{n}"
        if key == "ExpExec":
            cfg.exp_exec.append(parse_exp_exec(value, where))
            continue
        spec = _KEYS.get(key)
        if spec is None:
            hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            more = f" (did you mean {hint[0]}?)" if hint else ""
            raise XpmgrConfigError(f"{where}: unknown key {key!r}{more}")
        attr, parse = spec
        try:
            setattr(cfg, attr, parse(value))  # type: ignore[operator]
        except ValueError as e:
            raise XpmgrConfigError(f"{where}: {key} {value!r}: {e}") from None
        repeated.note(key, n, value)
    seen = cfg.lines = repeated.last_lines()
    cfg.warnings += repeated.warnings()
    for key in ("EnableExpPublication", "ControllerPrivkeyPath"):
        if key not in seen:
            why = ""
            if not seen and cfg.exp_exec:  # the tutorial's `printf ... >> FILE`
                why = (
                    " (the file holds only ExpExec lines: appended to a file that was not "
                    "there? Start from a whole one: pktlab init writes xpmgr.conf and "
                    "xpmgr.proxy.conf)"
                )
            raise XpmgrConfigError(f"{path}: {key} is required{why}")
    if not cfg.exp_exec:
        raise XpmgrConfigError(f"{path}: at least one ExpExec line is required")
    defaults = [e for e in cfg.exp_exec if e.is_default]
    if len(defaults) > 1:
        raise XpmgrConfigError(
            f"{defaults[1].where}: a second default ExpExec (at most one may have IS_DEFAULT 1)"
        )
    first: dict[str, ExpExec] = {}
    for x in cfg.exp_exec:  # both lines named (was `two ExpExec lines have the same SNIKEY`)
        if x.snikey and x.snikey in first:
            raise XpmgrConfigError(
                f"{x.where}: ExpExec has the same SNIKEY {x.snikey!r} as {first[x.snikey].where}"
            )
        if x.snikey:
            first[x.snikey] = x
    if cfg.enable_publication:
        if not cfg.broker_addr:
            raise XpmgrConfigError(f"{path}: EnableExpPublication 1 needs BrokerAddr")
        for x in cfg.exp_exec:
            if b"" in x.pub_channels and not x.trusted_eop:
                raise XpmgrConfigError(
                    f"{x.where}: an empty PUB_CHANNEL means the root EOp's channel, which "
                    "needs TRUSTEDEOP_PATH (or give explicit hex channels)"
                )
        if not cfg.pub_agent_cert:  # found at start, not once listening and publishing
            raise XpmgrConfigError(
                f"{path}: EnableExpPublication 1 needs PubAgentCertPath (the manager's "
                "agent certificate; pktlab init writes certs/agent_xc_xc.cert)"
            )
    return cfg


def load_xpmgr_config(path: str | os.PathLike[str]) -> XpmgrConfig:
    try:
        # any bytes, as the reference's C reader: paths keep theirs (os functions take
        # surrogate-escaped strings), a stray Latin-1 comment does no harm
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise XpmgrConfigError(f"cannot read {os.fspath(path)}: {e.strerror}") from None
    cfg = parse_xpmgr_config(text, os.fspath(path))
    _resolve_relative(cfg, Path(path).parent)
    return cfg


def _resolve_relative(cfg: XpmgrConfig, base: Path) -> None:
    """A relative path that names nothing from the current directory is taken from the
    config's directory: the reference template's `ExpExec 1::certs/exppriv.cert,...`
    in ~/.pktlab/xpmgr.conf failed from any other directory (`No such file or directory:
    'keys/k_xc'`)."""

    def fix(p: str) -> str:
        if not p or os.path.isabs(p) or os.path.exists(p):
            return p
        there = base / p
        return str(there) if there.exists() else p

    for attr in ("pub_agent_cert", "controller_privkey", "program_dir", "backlog_agent_cert"):
        value = getattr(cfg, attr)
        if value is not None:
            setattr(cfg, attr, fix(value))
    cfg.broker_cert_roots = [fix(p) for p in cfg.broker_cert_roots]
    cfg.proxy_cert_roots = [fix(p) for p in cfg.proxy_cert_roots]
    for x in cfg.exp_exec:
        x.chain = [fix(p) for p in x.chain]
        x.trusted_eop = [fix(p) for p in x.trusted_eop]
