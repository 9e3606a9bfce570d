"""`xpmgr.conf`, the reference experiment manager's config (PROTOCOL.md §7.2).

One ``Key value`` per line (any blanks between), ``#`` starts a comment, lists are
comma-separated, times are ns. Every key of the reference is read; `ResultsPath` is ours
(where the per-endpoint JSON lines go). A bad line is a `XpmgrConfigError` naming the
file, the line and the key.
"""

from __future__ import annotations

import difflib
import os
import stat
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


#: The largest key or certificate file taken (pktlab init's are under 1 KiB): /dev/zero
#: given as one was read until memory ran out, a FIFO blocked the start for ever.
FILE_MAX = 1 << 20
#: The largest xpmgr.conf taken (a FIFO or /dev/zero as `-c`, likewise).
CONFIG_MAX = 16 << 20


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
            raise ValueError(f"{_shown(c)} is not an ISO 3166-1 alpha-3 code (e.g. USA)")
    return out


def _shown(v: str, top: int = 60) -> str:
    """`v` quoted for an error line, cut to `top` characters: a 100,000-character value
    was echoed whole (twice, for PubCountry)."""
    if len(v) <= top:
        return repr(v)
    return f"{v[:top]!r}... ({len(v)} characters)"


def _broker_addr(v: str) -> str:
    """HOST[:PORT], as the publication reads it (port 20556 by default): a bad one was
    found only once the manager listened and published (`exp publication to broker
    failed: bad broker address`)."""
    from packetlab.hostport import (
        HostPortError,
        is_ipv6,
        port_number,
        split_host_port,
        zone_problem,
    )

    _nonempty(v)
    try:
        bare, port = split_host_port(v, reference=True)  # `::1:20556` as the reference
    except HostPortError:
        raise ValueError("expected HOST[:PORT] ([IPv6]:PORT for an IPv6 address)") from None
    if ":" in bare and not is_ipv6(bare):
        raise ValueError("expected HOST[:PORT] ([IPv6]:PORT for an IPv6 address)")
    if not bare or any(c.isspace() or c in "[]/" for c in bare):
        raise ValueError("expected HOST[:PORT]")
    if len(bare) > 253:  # a DNS name's bound
        raise ValueError(f"a host of {len(bare)} characters (at most 253)")
    if port is not None and port_number(port) is None:
        raise ValueError("expected HOST[:PORT] with PORT 1..65535")
    problem = zone_problem(bare)
    if problem is not None:  # else `cannot reach broker ...: Invalid argument` on publishing
        raise ValueError(problem)
    return v


def _str(v: str) -> str:
    return v


def _nonempty(v: str) -> str:
    """A path or an address: `Key` alone read as the current directory (ProgramDirPath),
    the default results file (ResultsPath) or `... is required` without the line."""
    if not v:
        raise ValueError("empty (give a value, or drop the line)")
    return v


def _xdescr_values(glob: bool) -> object:
    """A comma list whose entries go into the xdescr as values (checked now, not at
    publication time)."""
    allowed = VALUE_CHARS | GLOB_CHARS if glob else VALUE_CHARS

    def parse(v: str) -> list[str]:
        out = _list(v)
        for x in out:
            if len(x) > XDESCR_VALUE_MAX:
                raise ValueError(
                    f"{_shown(x)}: {len(x)} characters (an xdescr value holds at most "
                    f"{XDESCR_VALUE_MAX})"
                )
            bad = sorted({c for c in x if c not in allowed})
            if bad:
                raise ValueError(
                    f"{_shown(x)}: characters an xdescr value cannot hold: {''.join(bad)!r}"
                )
        return out

    return parse


#: The longest xdescr value (a u8 length; `-p` and `-i` have the same bound): a longer one
#: failed the publication once the manager listened.
XDESCR_VALUE_MAX = 255


def _xdescr_value(v: str) -> str:
    if len(v) > XDESCR_VALUE_MAX:
        raise ValueError(f"{len(v)} characters (an xdescr value holds at most {XDESCR_VALUE_MAX})")
    bad = sorted({c for c in v if c not in VALUE_CHARS})
    if bad:
        raise ValueError(f"characters an xdescr value cannot hold: {''.join(bad)!r}")
    return v


# key -> (attribute, parser)
_KEYS: dict[str, tuple[str, object]] = {
    "EnableExpPublication": ("enable_publication", _bool),
    "BrokerAddr": ("broker_addr", _broker_addr),
    "PubAgentCertPath": ("pub_agent_cert", _nonempty),
    "BrokerCertRootPath": ("broker_cert_roots", _list),
    "PubControllerAddr": ("pub_controller_addr", _xdescr_value),
    "PubPeriod": ("pub_period_ns", _uint),
    "PubExpPriority": ("pub_exp_priority", _priority),
    "PubCountry": ("pub_country", _country),
    "PubLocation": ("pub_location", _xdescr_values(glob=True)),
    "GreetPeriodAfterPubEnd": ("greet_after_pub_end_ns", _uint),
    "ControllerPrivkeyPath": ("controller_privkey", _nonempty),
    "ProgramDirPath": ("program_dir", _nonempty),
    "EnableProxyMode": ("enable_proxy", _bool),
    "BacklogConnAgentCertPath": ("backlog_agent_cert", _nonempty),
    "ProxyCertRootPath": ("proxy_cert_roots", _list),
    "TargetBacklogConn": ("target_backlog", _backlogs),
    "BacklogConnTimeout": ("backlog_timeout_ns", _pos),
    "BootstrapBacklogTimeout": ("bootstrap_timeout_ns", _pos),
    "ResultsPath": ("results_path", _nonempty),
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
            f"{where}: ExpExec SNIKEY {_shown(snikey)} must be 1..63 of [a-z0-9] "
            "(lowercase), or empty"
        )
    if not _list(chain):
        raise XpmgrConfigError(f"{where}: ExpExec EXPPRIVCHAIN_PATH is required")
    chans: list[bytes] = []
    for entry in channels.split(",") if channels else [""]:
        entry = entry.strip()
        try:
            raw = bytes.fromhex(entry)
        except ValueError:
            raise XpmgrConfigError(f"{where}: PUB_CHANNEL {_shown(entry)} is not hex") from None
        if len(raw) > 32:
            raise XpmgrConfigError(f"{where}: PUB_CHANNEL {_shown(entry)} longer than 32 bytes")
        chans.append(raw)
    for pair in filter(None, override.split(";")):
        name = pair.split("=", 1)[0]
        if "=" not in pair or not name:
            raise XpmgrConfigError(f"{where}: OVERRIDE_XDESCRNVP {_shown(pair)} is not name=value")
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
                f"{where}: OVERRIDE_XDESCRNVP {_shown(override)} is not an xdescr "
                f"name=value; list: {e}"
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
        if "\0" in line:  # no path nor value holds one (a path's open failed with a traceback)
            raise XpmgrConfigError(f"{where}: {key.split(chr(0))[0]}: the line holds a NUL byte")
        if key == "ExpExec":
            cfg.exp_exec.append(parse_exp_exec(value, where))
            continue
        spec = _KEYS.get(key)
        if spec is None:
            hint = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            more = f" (did you mean {hint[0]}?)" if hint else ""
            raise XpmgrConfigError(f"{where}: unknown key {_shown(key)}{more}")
        attr, parse = spec
        try:
            setattr(cfg, attr, parse(value))  # type: ignore[operator]
        except ValueError as e:
            raise XpmgrConfigError(f"{where}: {key} {_shown(value)}: {e}") from None
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
    name = os.fspath(path)
    why = _file_problem(name, CONFIG_MAX, "a config")
    if why:
        raise XpmgrConfigError(f"cannot read {why}")
    try:
        # any bytes, as the reference's C reader: paths keep theirs (os functions take
        # surrogate-escaped strings), a stray Latin-1 comment does no harm
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise XpmgrConfigError(f"cannot read {name}: {e.strerror}") from None
    cfg = parse_xpmgr_config(text, name)
    _resolve_relative(cfg, Path(path).parent)
    _check_files(cfg)
    return cfg


def _file_problem(p: str, top: int, what: str, *, missing: bool = False) -> str | None:
    """Why `p` cannot be read as a file of at most `top` bytes (`what`: "a key or
    certificate"), or None. A missing file is left to the reader (its own words, as
    before) unless `missing`."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return f"{p}: No such file or directory" if missing else None
    except OSError as e:  # a name too long (a traceback before), a loop, no permission
        return f"{p[:200]}{'...' * (len(p) > 200)}: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{p}: Is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        return f"{p}: not a regular file ({kind})"
    if st.st_size > top:
        return f"{p}: {st.st_size} bytes, too large for {what} (at most {top})"
    return None


def _check_files(cfg: XpmgrConfig) -> None:
    """The files the manager reads, checked before it reads them: each problem names
    the file, line and key. The publication's and the proxy's are checked only when
    used, and then a missing one too (it was found only once the manager listened)."""
    what = "a key or certificate"
    single = [("ControllerPrivkeyPath", cfg.controller_privkey, False)]
    lists: list[tuple[str, list[str], bool]] = []
    if cfg.enable_publication:
        single.append(("PubAgentCertPath", cfg.pub_agent_cert, True))
        lists.append(("BrokerCertRootPath", cfg.broker_cert_roots, True))
    if cfg.enable_proxy:
        single.append(("BacklogConnAgentCertPath", cfg.backlog_agent_cert, True))
        lists.append(("ProxyCertRootPath", cfg.proxy_cert_roots, True))
    for key, value, missing in single:
        lists.append((key, [value] if value else [], missing))
    for key, paths, missing in lists:
        for p in paths:
            why = _file_problem(p, FILE_MAX, what, missing=missing)
            if why:
                raise XpmgrConfigError(f"{cfg.where(key)}: {why}")
    if cfg.program_dir:
        try:
            st = os.stat(cfg.program_dir)
        except FileNotFoundError:
            st = None  # ProgramDir says it
        except OSError as e:
            raise XpmgrConfigError(f"{cfg.where('ProgramDirPath')}: {e.strerror}") from None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise XpmgrConfigError(
                f"{cfg.where('ProgramDirPath')}: {cfg.program_dir}: Not a directory"
            )
    for x in cfg.exp_exec:
        for field_name, paths in (
            ("EXPPRIVCHAIN_PATH", x.chain),
            ("TRUSTEDEOP_PATH", x.trusted_eop),
        ):
            for p in paths:
                why = _file_problem(p, FILE_MAX, what)
                if why:
                    raise XpmgrConfigError(f"{x.where}: ExpExec {field_name}: {why}")


def _resolve_relative(cfg: XpmgrConfig, base: Path) -> None:
    """A relative path that names nothing from the current directory is taken from the
    config's directory: the reference template's `ExpExec 1::certs/exppriv.cert,...`
    in ~/.pktlab/xpmgr.conf failed from any other directory (`No such file or directory:
    'keys/k_xc'`)."""

    def fix(p: str) -> str:
        if not p or os.path.isabs(p) or os.path.exists(p):
            return p
        there = os.path.join(base, p)  # os.path.exists: False, not an OSError, for a
        return there if os.path.exists(there) else p  # name too long

    for attr in ("pub_agent_cert", "controller_privkey", "program_dir", "backlog_agent_cert"):
        value = getattr(cfg, attr)
        if value is not None:
            setattr(cfg, attr, fix(value))
    cfg.broker_cert_roots = [fix(p) for p in cfg.broker_cert_roots]
    cfg.proxy_cert_roots = [fix(p) for p in cfg.proxy_cert_roots]
    for x in cfg.exp_exec:
        x.chain = [fix(p) for p in x.chain]
        x.trusted_eop = [fix(p) for p in x.trusted_eop]
