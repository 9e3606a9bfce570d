"""What the TLS of a controller-side link needs and what goes wrong with it, for `link`:
the controller's credentials (`ControllerCredentials`, from a `pktlab init` home or the
reference's xpmgr.conf), the homes of an in-process link (`in_process_home`: the given
one, the default, or a demo home made once in `demo_link_cache()`), and the refusals
of a run told in one line each (`watch_refusals`: which chain we presented, what the
endpoint or we objected to). Every failure is a `LinkError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packetlab import ppks  # (its names load on first use: `run --help` needs none)
from packetlab.cli.linkargs import LinkError

if TYPE_CHECKING:
    from packetlab.ppks import PktlabHome

__all__ = [
    "CONTROLLER_FILES",
    "DEMO_LINK_FILES",
    "ENDPOINT_FILES",
    "ControllerCredentials",
    "LinkError",
    "Refusals",
    "demo_link_cache",
    "in_process_home",
    "lacking",
    "peer_clock_hint",
    "watch_refusals",
]

# The pktlab_init file names (PROTOCOL.md §4.1) each side of a demo link needs.
CONTROLLER_FILES = ("keys/k_xc", "certs/pubcmd_exper_xc.cert", "certs/exppriv_eop_exper.cert")
ENDPOINT_FILES = ("keys/k_ep", "certs/subcmd_eop_ep.cert", "keys/k_eop.pub")
#: Both sides of a demo link: what the home of an in-process TLS link must hold.
DEMO_LINK_FILES = CONTROLLER_FILES + ENDPOINT_FILES


def lacking(root: Path, names: Sequence[str]) -> list[str]:
    """Those of the pktlab_init file names `names` that `root` lacks."""
    return [f for f in names if not (root / f).is_file()]


# -- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerCredentials:
    """The controller's side of a TLS link: its chain (pubcmd → ... → exppriv, any order),
    its private key, the EOp keys it trusts endpoints under (none: any endpoint), and the
    snikey of the entry (None: random). `source` says where they were read."""

    chain: tuple[Path, ...]
    key: Path
    trusted: tuple[Path, ...]
    snikey: str | None = None
    source: str = ""

    @classmethod
    def from_home(cls, home: PktlabHome) -> ControllerCredentials:
        """From `home/xpmgr.conf` (reference form: ControllerPrivkeyPath and the default
        ExpExec entry) if there is one, else the pktlab_init file names."""
        conf = home.root / "xpmgr.conf"
        if conf.is_file():
            return cls._from_xpmgr(conf, home.root)
        missing = lacking(home.root, CONTROLLER_FILES)
        if missing:
            raise LinkError(
                f"no controller credentials in {home.root} (missing {', '.join(missing)}): "
                f"run `pktlab init --home {home.root}`, pass --home DIR, or use "
                "--insecure-plaintext with a loopback endpoint"
            )
        eop = home.pubkey_path("k_eop")
        return cls(
            (home.cert_path("pubcmd_exper_xc"), home.cert_path("exppriv_eop_exper")),
            home.key_path("k_xc"),
            (eop,) if eop.is_file() else (),
            source=str(home.root),
        )

    @classmethod
    def _from_xpmgr(cls, conf: Path, base: Path) -> ControllerCredentials:
        def path(text: str) -> Path:  # relative paths: to the home, then to the cwd
            p = Path(text.strip()).expanduser()
            return p if p.is_absolute() or not (base / p).exists() else base / p

        key: Path | None = None
        entries: list[tuple[bool, list[str]]] = []
        for n, raw in enumerate(conf.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            name, _, value = line.partition(" ")
            if name == "ControllerPrivkeyPath":
                key = path(value)
            elif name == "ExpExec":
                fields = value.strip().split(":", 5)
                if len(fields) < 4:
                    raise LinkError(
                        f"{conf}:{n}: ExpExec: expected IS_DEFAULT:SNIKEY:EXPPRIVCHAIN_PATH:"
                        f"TRUSTEDEOP_PATH:PUB_CHANNEL:OVERRIDE_XDESCRNVP, got {value.strip()!r}"
                    )
                entries.append((fields[0].strip() == "1", fields))
        if key is None:
            raise LinkError(f"{conf}: no ControllerPrivkeyPath (the controller's private key)")
        if not entries:
            raise LinkError(f"{conf}: no ExpExec entry (the controller's certificate chain)")
        fields = next((f for default, f in entries if default), entries[0][1])
        chain = tuple(path(p) for p in fields[2].split(",") if p.strip())
        trusted = tuple(path(p) for p in fields[3].split(",") if p.strip())
        for p in (key, *chain, *trusted):
            if not p.is_file():
                raise LinkError(f"{conf}: {p} does not exist")
        return cls(chain, key, trusted, fields[1].strip() or None, source=str(conf))

    def server_options(self) -> Any:
        """`PPKSServerOptions` serving this chain for its snikey and as the default entry
        (endpoints that send no SNI)."""
        from packetlab.ppks import read_public_key
        from packetlab.tls import (
            AuthMode,
            Credentials,
            PPKSServerOptions,
            ServerEntry,
            TLSConfigError,
            gen_snikey,
        )

        try:
            creds = Credentials.load(list(self.chain), self.key, any_order=True)
            roots = [read_public_key(p) for p in self.trusted]
        except (TLSConfigError, ValueError, OSError) as e:
            raise LinkError(
                f"the controller credentials from {self.source} are unusable: {e}"
            ) from None
        entry = ServerEntry(creds, AuthMode.CONTROLLER_AUTH_ENDPOINT, roots)
        return PPKSServerOptions({self.snikey or gen_snikey(): entry}, default=entry)

    def tls_server(self, reactor: Any, where: Any) -> Any:
        """`where` (a server endpoint) with TLS serving this chain; an endpoint that
        connects and never finishes the handshake is cut off, and the connections in the
        handshake are capped, as by tls_server."""
        from packetlab.controller.local import HANDSHAKE_TIMEOUT
        from packetlab.tls import PPKSServerEndpoint, default_pending_max

        return PPKSServerEndpoint(where, self.server_options(),
                                  handshake_timeout=(HANDSHAKE_TIMEOUT, reactor),
                                  pending_max=default_pending_max())  # fmt: skip

    def certificates(self) -> list[Any]:
        """Our chain's certificates, leaf first ([] when a file does not load: the TLS
        context reports that)."""
        from packetlab.ppks import load_certificates

        try:
            return [c for p in self.chain for c in load_certificates(p.read_bytes())]
        except Exception:
            return []

    def describe(self) -> str:
        """Which chain we present and which EOp root it ends at, for refusal messages."""
        from packetlab.ppks import CertType, key_id, load_certificates, read_public_key

        roots = []
        for p in self.chain:
            with contextlib.suppress(Exception):  # loading the chain reports real errors
                for cert in load_certificates(p.read_bytes()):
                    if cert.cert_type is CertType.EXPPRIV:
                        roots.append(cert.authority_key_id.hex()[:16])
        trusted = []
        for p in self.trusted:
            try:
                trusted.append(f"{p.name} (id {key_id(read_public_key(p)).hex()[:16]})")
            except Exception:
                trusted.append(p.name)
        text = "our chain " + " + ".join(p.name for p in self.chain)
        if roots:
            text += f" ends at EOp key id {', '.join(roots)}"
        if trusted:
            return text + f"; we trust endpoints under {', '.join(trusted)}"
        return text + "; we accept any endpoint"


def _peer_refused_validity(error: BaseException) -> bool:
    """Whether `error` (or what it was raised from) is the endpoint's TLS alert
    certificate_expired: by its clock, a certificate of ours expired or is not valid yet."""
    from packetlab.tls.records import CERTIFICATE_EXPIRED, PeerAlert

    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PeerAlert) and e.description == CERTIFICATE_EXPIRED:
            return True
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return False


def _utc(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def peer_clock_hint(error: BaseException, chain: Sequence[Any], now: float) -> str | None:
    """For an endpoint that refused our chain as expired or not yet valid while it is
    valid by our clock (`chain`: our certificates, `now`: our Unix seconds): the likely
    cause, the two clocks' difference (ours may be the wrong one), and by how much for
    each (a refusal on the endpoint's clock said only "a certificate has expired or is not
    valid yet"). None for another error, or a chain that is not valid here either (ours
    to renew)."""
    if not chain or not _peer_refused_validity(error):
        return None
    from packetlab.tls.credentials import time_left

    if any(not c.not_before <= now <= c.not_after for c in chain):
        return None  # (not the endpoint's clock: the chain check at start says so)
    since = max(c.not_before for c in chain)
    until = min(c.not_after for c in chain)
    return (
        f"; our chain is valid by this host's clock, from {_utc(since)} to {_utc(until)}: "
        "the endpoint's clock and ours differ (either may be wrong: a certificate issued "
        'here took this host\'s clock). "Not valid yet" there means it is more than '
        f'{time_left(now - since)} behind ours, "expired" more than '
        f"{time_left(until - now)} ahead; its log names the rule and the time it read"
    )


def _quiet_demo_home(root: Path) -> PktlabHome:
    """`pktlab init` into `root` without its listing on stdout."""
    from packetlab.cli.init import init_home

    home = ppks.PktlabHome.at(root)
    with contextlib.redirect_stdout(io.StringIO()):
        init_home(home)
    return home


def demo_link_cache() -> Path:
    """Where `pktlab run` keeps the demo certificates of its in-process link when there is
    no complete `pktlab init` home: ``$XDG_CACHE_HOME/pktlab/demo-link`` (default
    ``~/.cache/pktlab/demo-link``). Only that loopback link in one process uses them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pktlab" / "demo-link"


def in_process_home(home: Path | None) -> tuple[PktlabHome, bool]:
    """The home for an in-process TLS link, and whether it is the cached demo home: the
    given home (which must be complete), else the default one if complete, else the demo
    home cached in `demo_link_cache()` (made once: issuing its certificates costs more than
    the rest of a run's start)."""
    if home is not None:
        h = ppks.PktlabHome.at(home)
        missing = lacking(h.root, DEMO_LINK_FILES)
        if missing:
            raise LinkError(
                f"--home {h.root} lacks {', '.join(missing)} (the in-process endpoint needs "
                f"both sides of a demo link): run `pktlab init --home {h.root}`, or use "
                "--insecure-plaintext"
            )
        return h, False
    h = ppks.PktlabHome.at(None)
    if not lacking(h.root, DEMO_LINK_FILES):
        return h, False
    cache = demo_link_cache()
    cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # made in place (its xpmgr.conf names its own paths), under a lock: a run started at
    # the same time waits, then finds it complete
    import fcntl
    import shutil

    with open(cache.parent / "demo-link.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lacking(cache, DEMO_LINK_FILES):
            shutil.rmtree(cache, ignore_errors=True)
            _quiet_demo_home(cache)
    return ppks.PktlabHome.at(cache), True


# -- refusals -----------------------------------------------------------------------------------


_PEER_RE = re.compile(r"host='([^']*)', port=(\d+)")


def _peer_text(peer: object) -> str:
    """ "127.0.0.1:4321" for Twisted's "IPv4Address(type='TCP', host='127.0.0.1', ...)"."""
    m = _PEER_RE.search(str(peer))
    return f"{m.group(1)}:{m.group(2)}" if m else str(peer)


@dataclass
class Refusals:
    """TLS peers refused during a run: by us (the endpoint's chain) or, in-process, by the
    endpoint (our chain), as `PeerGate` logs them. `on_refusal` hears each kind once."""

    creds: ControllerCredentials | None = None
    on_refusal: Callable[[str], object] | None = None
    on_first: Callable[[str], object] | None = None
    seen: list[str] = field(default_factory=list)
    _told: set[str] = field(default_factory=set)

    def observe(self, event: dict[str, Any]) -> None:
        fmt = event.get("log_format") or ""
        if not fmt.startswith("refused TLS peer"):
            return
        peer, rule, error = _peer_text(event.get("peer")), event.get("rule"), event.get("error")
        from packetlab.tls.gate import SILENT_PEER  # (loaded: it logged this event)

        ours = f" ({self.creds.describe()})" if self.creds is not None else ""
        if event.get("side") == "server":  # the endpoint refused the controller: our chain
            text = f"the endpoint refused our certificate chain: {rule}: {error}{ours}"
        elif rule == "connection_lost" and str(error).endswith(SILENT_PEER):
            text = (
                f"endpoint {peer} sent nothing and closed the link: an endpoint run with "
                "--insecure-plaintext waits 10 s for a plaintext controller, then closes: "
                "give --insecure-plaintext here too (or run the endpoint without it)"
            )
        elif rule == "connection_lost":
            text = (
                f"endpoint {peer} closed the TLS link before its chain was checked: that is "
                f"how an endpoint refuses a controller chain it does not trust{ours}; its "
                "log names the rule (is our EOp key in its EndpointOpPubKeyPath?). An "
                "endpoint run with --insecure-plaintext also closes it, after 10 s of "
                "waiting for a plaintext controller: then give --insecure-plaintext here too"
            )
        elif rule == "handshake_failed":
            text = (
                f"TLS handshake with endpoint {peer} failed ({error}); an endpoint with "
                "--insecure-plaintext needs a controller with --insecure-plaintext too"
            )
        else:
            text = f"refused endpoint {peer}: {error}{ours}"
        self.seen.append(text)
        if self.on_first is not None and len(self.seen) == 1:
            self.on_first(text)
        if self.on_refusal is not None and rule not in self._told:
            self._told.add(str(rule))
            self.on_refusal(text)


@contextlib.contextmanager
def watch_refusals(
    creds: ControllerCredentials | None, on_refusal: Callable[[str], object] | None
) -> Iterator[Refusals]:
    from twisted.logger import globalLogPublisher

    box = Refusals(creds, on_refusal)
    observer: Any = box.observe  # an ILogObserver: a callable taking the event dict
    globalLogPublisher.addObserver(observer)
    try:
        yield box
    finally:
        globalLogPublisher.removeObserver(observer)
