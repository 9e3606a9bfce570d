"""The broker configuration file (``broker.conf``), in the ``Key value`` style of the
reference configs: one pair per line, ``#`` comments. An unknown key (``PublishListn``)
or a bad value is a `ConfigError` naming the file, the line and the key. See
docs/broker.md.

Defaults are those of a home set up by ``pktlab init``: the broker agent certificate
``certs/agent_bop_brk.cert`` and its key ``keys/k_brk``, listening on every address on
ports 20556 (publish) and 20557 (subscribe), state in memory.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packetlab.addrshare import DEFAULT_SHARE, parse_share
from packetlab.loglevel import level_name
from packetlab.paths import RepeatedKeys, config_line, config_text, expand_path
from packetlab.ppks import PktlabHome
from packetlab.wire.constants import DEFAULT_PUB_PORT, DEFAULT_SUB_PORT

__all__ = ["BROKER_CERT", "BROKER_KEY", "BrokerConfig", "ConfigError", "load_config"]

BROKER_CERT = "agent_bop_brk"  # pktlab init: k_bop -> k_brk, type agent
BROKER_KEY = "k_brk"
DEFAULT_CONFIG_NAME = "broker.conf"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says where and why."""


@dataclass
class BrokerConfig:
    cert: list[str] = field(default_factory=list)  # agent cert (+ chain), leaf first
    private_key: str | None = None
    publish: str = f"tcp:{DEFAULT_PUB_PORT}"
    subscribe: str = f"tcp:{DEFAULT_SUB_PORT}"
    store: str = "memory:"
    status: str | None = None  # endpoint string of the HTTP/JSON status page
    error_delay: float = 0.5  # first delay of an error answer (s); doubles per error
    error_delay_max: float = 30.0
    fanout_batch: int = 65536  # notifications written per reactor turn
    delivery_linger: float = 3600.0  # s a delivery record outlives its publications
    # live publications: all together, of one agent key, from one source address
    max_publications: int = 10_000
    max_per_key: int = 1_000
    max_per_address: int = 5_000
    # of each port's link budget (from the descriptor limit) one source address may hold
    per_address_share: float = DEFAULT_SHARE
    idle_timeout: float = 30.0  # s from connect (handshake included) to the first xsub/xpub
    stats_interval: float = 3600.0  # s between two counters lines in the log (0: never)
    log_level: str | None = None  # LogLevel (None: --log-level's default; packetlab.loglevel)
    warnings: list[str] = field(default_factory=list)
    # key -> where its value came from ("broker.conf:3", "--cert"), for error messages
    origins: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: str, where: str) -> None:
        handler = _HANDLERS.get(key)
        if handler is None:
            hint = difflib.get_close_matches(key, list(_HANDLERS), n=1)
            more = f"did you mean {hint[0]}?" if hint else "keys: " + ", ".join(_HANDLERS)
            raise ConfigError(f"{where}: unknown key {key!r} ({more})")
        try:
            handler(self, value.strip())
        except ConfigError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
        self.origins[key] = where

    def origin(self, key: str) -> str:
        """`key` as an error message names it: ``file:line: Key``, ``--option`` or
        ``Key (default)``."""
        where = self.origins.get(key)
        if where is None:
            return f"{key} (default)"
        return where if where.startswith("--") else f"{where}: {key}"

    def apply_home_defaults(self, home: PktlabHome) -> None:
        """Fill the credentials from a ``pktlab init`` home when none were given."""
        if not self.cert:
            self.cert = [str(home.cert_path(BROKER_CERT))]
        if self.private_key is None:
            self.private_key = str(home.key_path(BROKER_KEY))


def _seconds(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"expected seconds, got {value!r}") from None
    if not 0 <= v <= 3600:
        raise ConfigError(f"{v} is out of range [0, 3600]")
    return v


def _nonempty(value: str) -> str:
    if not value:
        raise ConfigError("empty value")
    return value


def _path(value: str) -> str:
    try:
        return str(expand_path(value))
    except ValueError as e:  # an unknown ~user, a NUL byte
        raise ConfigError(str(e)) from None


def _paths(value: str) -> list[str]:
    return [_path(p.strip()) for p in value.split(",") if p.strip()]


def _set_cert(c: BrokerConfig, v: str) -> None:
    c.cert = _paths(_nonempty(v))


def _set_key(c: BrokerConfig, v: str) -> None:
    c.private_key = _path(_nonempty(v))


def _set_publish(c: BrokerConfig, v: str) -> None:
    c.publish = _nonempty(v)


def _set_subscribe(c: BrokerConfig, v: str) -> None:
    c.subscribe = _nonempty(v)


def _set_store(c: BrokerConfig, v: str) -> None:
    c.store = _nonempty(v)


def _set_status(c: BrokerConfig, v: str) -> None:
    c.status = v or None


def _set_delay(c: BrokerConfig, v: str) -> None:
    c.error_delay = _seconds(v)


def _set_delay_max(c: BrokerConfig, v: str) -> None:
    c.error_delay_max = _seconds(v)


def _set_idle(c: BrokerConfig, v: str) -> None:
    t = _seconds(v)
    if t < 1:  # 0 would close every client before its handshake
        raise ConfigError(f"{t} is out of range [1, 3600]")
    c.idle_timeout = t


def _set_linger(c: BrokerConfig, v: str) -> None:
    try:
        t = float(v)
    except ValueError:
        raise ConfigError(f"expected seconds, got {v!r}") from None
    if not 0 <= t <= 7 * 86400:
        raise ConfigError(f"{t} is out of range [0, 604800] (a week)")
    c.delivery_linger = t


def _set_stats_interval(c: BrokerConfig, v: str) -> None:
    try:
        t = float(v)
    except ValueError:
        raise ConfigError(f"expected seconds, got {v!r}") from None
    if not 0 <= t <= 86400:  # (nan fails both comparisons)
        raise ConfigError(f"{t} is out of range [0, 86400] (0: never)")
    c.stats_interval = t


def _set_batch(c: BrokerConfig, v: str) -> None:
    if not v.isdigit() or not 1 <= int(v) <= 1_000_000:
        raise ConfigError(f"expected a count from 1 to 1000000, got {v!r}")
    c.fanout_batch = int(v)


def _count(v: str) -> int:
    if not v.isascii() or not v.isdigit() or not 1 <= int(v) <= 1_000_000:
        raise ConfigError(f"expected a count from 1 to 1000000, got {v!r}")
    return int(v)


def _set_max_pubs(c: BrokerConfig, v: str) -> None:
    c.max_publications = _count(v)


def _set_max_per_key(c: BrokerConfig, v: str) -> None:
    c.max_per_key = _count(v)


def _set_max_per_address(c: BrokerConfig, v: str) -> None:
    c.max_per_address = _count(v)


def _set_share(c: BrokerConfig, v: str) -> None:
    try:
        c.per_address_share = parse_share(v)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _set_log_level(c: BrokerConfig, v: str) -> None:
    try:
        c.log_level = level_name(v)
    except ValueError as e:
        raise ConfigError(str(e)) from None


_HANDLERS: dict[str, Callable[[BrokerConfig, str], None]] = {
    "BrokerCertPath": _set_cert,
    "BrokerPrivKey": _set_key,
    "PublishListen": _set_publish,
    "SubscribeListen": _set_subscribe,
    "Store": _set_store,
    "StatusListen": _set_status,
    "ErrorDelay": _set_delay,
    "ErrorDelayMax": _set_delay_max,
    "FanOutBatch": _set_batch,
    "DeliveryLinger": _set_linger,
    "MaxPublications": _set_max_pubs,
    "MaxPublicationsPerKey": _set_max_per_key,
    "MaxPublicationsPerAddress": _set_max_per_address,
    "PerAddressShare": _set_share,
    "IdleTimeout": _set_idle,
    "StatsInterval": _set_stats_interval,
    "LogLevel": _set_log_level,
}
KNOWN_KEYS = tuple(_HANDLERS)


def parse_config(lines: Iterable[str], source: str) -> BrokerConfig:
    cfg = BrokerConfig()
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


def load_config(path: str | None, home: PktlabHome | None = None) -> BrokerConfig:
    """Read `path`; None means ``broker.conf`` in the pktlab home if it exists, else the
    defaults. An explicit path that cannot be read is an error."""
    home = home or PktlabHome.at()
    if path is None:
        p = home.root / DEFAULT_CONFIG_NAME
        if not p.is_file():
            return BrokerConfig()
    else:
        p = Path(_path(str(path)))
    try:  # the home's broker.conf too: a bad one was a traceback (session 21)
        text = config_text(p)
    except OSError as e:
        raise ConfigError(f"cannot read configuration {str(p)!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return parse_config(text.splitlines(), str(p))
