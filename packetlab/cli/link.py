"""The link options every controller-side command shares, and running an experiment on it.

One option set (`add_link_arguments`) for `pktlab run ...` and the examples:

* **where the endpoint is**: by default an endpoint runs *in this process* (the
  `pktendpoint` service, `packetlab.endpoint.tap.makeService`, in the same reactor,
  connecting over loopback); `--listen ADDR` starts none and waits for an endpoint started
  elsewhere to connect to ADDR;
* **how the link is secured**: TLS 1.3 with PPKS chains (§4.6) from a `pktlab init` home
  (`--home`, default `$PKTLAB_HOME` or `~/.pktlab`; the reference pktlab_init layout and
  its `xpmgr.conf` are read as they are); `--insecure-plaintext` (plain TCP, loopback
  endpoints only) only when asked.

`run_on_link(reactor, link, experiment, ...)` runs an experiment function on the first
endpoint of that link and returns its result; every failure on the way is a one-line
`LinkError` (a `ControllerError`) that says what to do. A TLS refusal is diagnosed on the
side that sees it and reported here: which chain we presented, which root it ends at,
what the endpoint (in-process: its own words) or we (the endpoint's chain) objected to.

`run_in_process(reactor, experiment, ...)` is the in-process endpoint on its own, for
controllers written against the API (docs/controller.md).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import ipaddress
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from packetlab import ppks  # (its names load on first use: `run --help` needs none)
from packetlab.cli.linkargs import LinkError, add_link_arguments, listen_description
from packetlab.paths import expand_path

if TYPE_CHECKING:
    from packetlab.ppks import PktlabHome

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Experiment = Callable[[Any], Awaitable[T]]

__all__ = [
    "ControllerCredentials",
    "Link",
    "LinkError",
    "add_link_arguments",
    "listen_description",
    "route_source",
    "run_in_process",
    "run_on_link",
]

# The pktlab_init file names (PROTOCOL.md §4.1) each side of a demo link needs.
CONTROLLER_FILES = ("keys/k_xc", "certs/pubcmd_exper_xc.cert", "certs/exppriv_eop_exper.cert")
ENDPOINT_FILES = ("keys/k_ep", "certs/subcmd_eop_ep.cert", "keys/k_eop.pub")


@dataclass(frozen=True)
class Link:
    """Where the endpoint is and how the link is secured (see the module docstring).

    `listen`: None for an in-process endpoint, else the Twisted server endpoint string to
    wait on. `home`: the `--home` given (None: the default home). `plaintext`: no TLS.
    """

    listen: str | None = None
    home: Path | None = None
    plaintext: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Link:
        listen = getattr(args, "listen", None)
        home = getattr(args, "home", None)
        try:
            root = expand_path(home) if home is not None else None
        except ValueError as e:  # ~nosuchuser: was "internal error: RuntimeError"
            raise LinkError(f"--home {e}") from None
        return cls(
            listen_description(listen) if listen is not None else None,
            root,
            bool(getattr(args, "insecure_plaintext", False)),
        )

    @property
    def in_process(self) -> bool:
        return self.listen is None

    def describe(self) -> str:
        """ "TLS 1.3, PPKS certificates from ~/.pktlab" and the like, for a status line."""
        if self.plaintext:
            return "plain TCP (--insecure-plaintext)"
        if self.in_process and self.home is None:  # what run_in_process will use
            h = ppks.PktlabHome.at(None)
            if not all((h.root / f).is_file() for f in CONTROLLER_FILES + ENDPOINT_FILES):
                return f"TLS 1.3, demo PPKS certificates from {demo_link_cache()}"
        return f"TLS 1.3, PPKS certificates from {self.home or ppks.default_home()}"


def route_source(dst: Address) -> Address:
    """The address this host would send from to `dst` (a connected UDP socket's name): what
    an in-process endpoint exports to reach `dst`."""
    af = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(dst), 33434))
        except OSError as e:
            raise LinkError(f"no route to {dst}: {e.strerror or e}") from None
        return ipaddress.ip_address(str(s.getsockname()[0]).split("%", 1)[0])


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
        missing = [f for f in CONTROLLER_FILES if not (home.root / f).is_file()]
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


def _quiet_demo_home(root: Path) -> PktlabHome:
    """`pktlab init` into `root` without its listing on stdout."""
    from packetlab.cli.init import init_home

    home = ppks.PktlabHome.at(root)
    with contextlib.redirect_stdout(io.StringIO()):
        init_home(home)
    return home


# -- refusals -----------------------------------------------------------------------------------


_PEER_RE = re.compile(r"host='([^']*)', port=(\d+)")


def _peer_text(peer: object) -> str:
    """ "127.0.0.1:4321" for Twisted's "IPv4Address(type='TCP', host='127.0.0.1', ...)"."""
    m = _PEER_RE.search(str(peer))
    return f"{m.group(1)}:{m.group(2)}" if m else str(peer)


@dataclass
class _Refusals:
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
        ours = f" ({self.creds.describe()})" if self.creds is not None else ""
        if event.get("side") == "server":  # the endpoint refused the controller: our chain
            text = f"the endpoint refused our certificate chain: {rule}: {error}{ours}"
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
def _watch_refusals(
    creds: ControllerCredentials | None, on_refusal: Callable[[str], object] | None
) -> Iterator[_Refusals]:
    from twisted.logger import globalLogPublisher

    box = _Refusals(creds, on_refusal)
    observer: Any = box.observe  # an ILogObserver: a callable taking the event dict
    globalLogPublisher.addObserver(observer)
    try:
        yield box
    finally:
        globalLogPublisher.removeObserver(observer)


# -- running ------------------------------------------------------------------------------------


def _endpoint_options(
    port: int,
    addresses: Sequence[Address],
    transproto: str,
    tls: tuple[PktlabHome, str, Path] | None,
    extra: Sequence[str] = (),
) -> list[str]:
    """pktendpoint options for the in-process endpoint: loopback controller at `port`,
    `addresses` exported, then `extra`; ~/.pktlab/endpt.conf is not read."""
    opts = ["--config", os.devnull, "--transproto", transproto, "--host-id", "pktlab-run"]
    for version, flag in ((4, "--ipv4"), (6, "--ipv6")):
        mine = [str(a) for a in addresses if a.version == version]
        if mine:
            opts += [flag, ",".join(mine)]
    opts += ["--reconnect-delay", "0.05", "--retry-delay", "0.5"]
    if tls is None:
        opts.append("--insecure-plaintext")
    else:
        home, snikey, rlim = tls
        opts += [
            "--cert-chain",
            str(home.cert_path("subcmd_eop_ep")),
            "--private-key",
            str(home.key_path("k_ep")),
            "--eop-pubkey",
            str(home.pubkey_path("k_eop")),
            "--snikey",
            snikey,
            "--rlim-db",
            str(rlim),
        ]
    return [*opts, *extra, f"127.0.0.1:{port}"]


def _in_process_home(home: Path | None) -> tuple[PktlabHome, bool]:
    """The home for an in-process TLS link, and whether it is the cached demo home: the
    given home (which must be complete), else the default one if complete, else the demo
    home cached in `demo_link_cache()` (made once: issuing its certificates costs more than
    the rest of a run's start)."""
    need = CONTROLLER_FILES + ENDPOINT_FILES
    if home is not None:
        h = ppks.PktlabHome.at(home)
        missing = [f for f in need if not (h.root / f).is_file()]
        if missing:
            raise LinkError(
                f"--home {h.root} lacks {', '.join(missing)} (the in-process endpoint needs "
                f"both sides of a demo link): run `pktlab init --home {h.root}`, or use "
                "--insecure-plaintext"
            )
        return h, False
    h = ppks.PktlabHome.at(None)
    if all((h.root / f).is_file() for f in need):
        return h, False
    cache = demo_link_cache()
    cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # made in place (its xpmgr.conf names its own paths), under a lock: a run started at
    # the same time waits, then finds it complete
    with open(cache.parent / "demo-link.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((cache / f).is_file() for f in need):
            shutil.rmtree(cache, ignore_errors=True)
            _quiet_demo_home(cache)
    return ppks.PktlabHome.at(cache), True


def _memory_dir() -> str | None:
    """Where a run's throwaway files go: a memory file system ($XDG_RUNTIME_DIR, else
    /dev/shm) when there is one, since making and removing them on a disk waits for its
    journal (0.02 s, up to 0.3 s on a busy disk, at the end of every run); else None,
    the temporary directory."""
    for where in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if where and os.path.isdir(where) and os.access(where, os.W_OK | os.X_OK):
            return where
    return None


def demo_link_cache() -> Path:
    """Where `pktlab run` keeps the demo certificates of its in-process link when there is
    no complete `pktlab init` home: ``$XDG_CACHE_HOME/pktlab/demo-link`` (default
    ``~/.cache/pktlab/demo-link``). Only that loopback link in one process uses them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pktlab" / "demo-link"


class _LoopbackServer:
    """The in-process link's listening side, a TCP port on 127.0.0.1 that the system
    picks: what ``serverFromString(reactor, "tcp:0:interface=127.0.0.1")`` makes (Twisted's
    `TCP4ServerEndpoint`, backlog 50), without importing `twisted.internet.endpoints` and
    the stdio, SNI, systemd and plugin helpers it loads (docs/performance.md, pktlab run,
    Session 11)."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def listen(self, protocolFactory: Any) -> Any:
        from twisted.internet import defer

        return defer.execute(
            self._reactor.listenTCP, 0, protocolFactory, backlog=50, interface="127.0.0.1"
        )


async def run_in_process(
    reactor: Any,
    experiment: Experiment[T],
    *,
    addresses: Sequence[Address] = (ipaddress.IPv4Address("127.0.0.1"),),
    transproto: str = "tcp,udp",
    plaintext: bool = False,
    home: str | os.PathLike[str] | None = None,
    timeout: float | None = 30.0,
    on_refusal: Callable[[str], object] | None = None,
    extra: Sequence[str] = (),
) -> T:
    """Run `experiment(session)` on an endpoint started in this reactor, then stop it.

    The endpoint is the `twistd pktendpoint` service itself, exporting `addresses` and
    offering `transproto` ("tcp,udp"; "raw,tcp,udp" for raw sockets, which need root or
    CAP_NET_RAW + CAP_BPF). It connects to a controller listening on 127.0.0.1 over TLS
    with the certificates of `home` (a `pktlab init` home; None: ~/.pktlab when it has
    both sides of the demo link, else a demo home made once in `demo_link_cache()`), or
    plain TCP with `plaintext`.
    Returns the experiment's result or raises its error; `timeout` (seconds, None: no
    limit) bounds the whole run. `extra`: more pktendpoint options (DNS servers, BufMax).
    """
    from packetlab.tls import PPKSServerEndpoint, gen_snikey

    tmp: Path | None = None  # the cached demo home's per-run accounting database
    tls: tuple[PktlabHome, str, Path] | None = None
    where: Any = _LoopbackServer(reactor)
    creds: ControllerCredentials | None = None
    if not plaintext:
        h, cached = _in_process_home(Path(home) if home is not None else None)
        rlim = h.accounting_db
        if cached:  # resource use is counted per run, not across the runs sharing it
            tmp = Path(tempfile.mkdtemp(prefix="pktlab-link-", dir=_memory_dir()))
            rlim = tmp / "endpt.rlim.sqlite3"
        snikey = gen_snikey()
        creds = ControllerCredentials.from_home(h)
        creds = ControllerCredentials(creds.chain, creds.key, creds.trusted, snikey, creds.source)
        tls = (h, snikey, rlim)
        from packetlab.controller.local import HANDSHAKE_TIMEOUT

        where = PPKSServerEndpoint(
            where,
            creds.server_options(),
            handshake_timeout=(HANDSHAKE_TIMEOUT, reactor),
        )
    try:
        return await _run(
            reactor,
            where,
            experiment,
            timeout=timeout,
            creds=creds,
            on_refusal=on_refusal,
            start=lambda port: _start_endpoint(port, addresses, transproto, tls, extra),
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _start_endpoint(
    port: Any,
    addresses: Sequence[Address],
    transproto: str,
    tls: tuple[PktlabHome, str, Path] | None,
    extra: Sequence[str] = (),
) -> Any:
    """The `pktendpoint` service, configured for our listening `port`, started."""
    from twisted.python import usage

    from packetlab.endpoint.tap import Options, makeService

    options = Options()
    # the daemon's SIGTERM/SIGHUP handlers (makeService installs them when the reactor
    # runs) are not the run's: its own (cli.interrupt: a Ctrl-C's stop) are put back
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        opts = _endpoint_options(port.getHost().port, addresses, transproto, tls, extra)
        options.parseOptions(opts)
        service = makeService(options)
    except usage.UsageError as e:
        raise LinkError(f"cannot configure the in-process endpoint: {e}") from None
    finally:
        for s, handler in handlers.items():
            if handler is not None:
                signal.signal(s, handler)
    service.startService()
    return service


async def _run(
    reactor: Any,
    where: Any,
    experiment: Experiment[T],
    *,
    timeout: float | None,
    creds: ControllerCredentials | None,
    on_refusal: Callable[[str], object] | None,
    start: Callable[[Any], Any] | None = None,
    on_listening: Callable[[Any], object] | None = None,
) -> T:
    """Listen on `where`, call `start(port)` (the in-process endpoint; returns a service to
    stop) or `on_listening(port)`, run `experiment` on the first endpoint, stop all."""
    from twisted.internet import defer
    from twisted.internet.error import CannotListenError

    from packetlab.controller import Controller

    ctl: Controller[T] = Controller(experiment, reactor=reactor, limit=1, report_failures=False)
    try:
        port = await ctl.listen(where)
    except CannotListenError as e:
        where_ = f"{e.interface or '*'}:{e.port}"
        raise LinkError(f"cannot listen on {where_}: {e.socketError}") from None
    service: Any = None
    with _watch_refusals(creds, on_refusal) as refusals:
        try:
            if start is not None:
                service = start(port)
            if on_listening is not None:
                on_listening(port)
            d = ctl.next_outcome()
            if timeout is not None:
                d.addTimeout(timeout, reactor)
            if start is not None:  # in-process: a refusal will not go away by waiting

                def give_up(text: str) -> None:
                    if not d.called:
                        d.errback(LinkError(text))

                refusals.on_first = lambda text: reactor.callLater(0, give_up, text)
            try:
                outcome = await d
            except defer.TimeoutError:
                why = "the experiment did not end"
                if not ctl.accepted:
                    why = "no endpoint connected"
                    if refusals.seen:
                        why += "; " + refusals.seen[-1]
                raise LinkError(f"no result within {timeout:g} s: {why}") from None
            return outcome.unwrap()
        finally:
            await ctl.stop()
            if service is not None:
                stopped = service.stopService()
                if stopped is not None:
                    await stopped


def listening_endpoint(reactor: Any, link: Link) -> tuple[Any, ControllerCredentials | None]:
    """What to listen on for `link.listen` (TLS with the home's credentials unless
    plaintext), and those credentials."""
    assert link.listen is not None
    if link.plaintext:
        return link.listen, None
    from twisted.internet.endpoints import serverFromString

    from packetlab.controller.local import HANDSHAKE_TIMEOUT
    from packetlab.tls import PPKSServerEndpoint

    creds = ControllerCredentials.from_home(ppks.PktlabHome.at(link.home))
    # an endpoint that connects and never finishes the handshake is cut off, as by tls_server
    where = PPKSServerEndpoint(
        serverFromString(reactor, link.listen),
        creds.server_options(),
        handshake_timeout=(HANDSHAKE_TIMEOUT, reactor),
    )
    return where, creds


async def run_on_link(
    reactor: Any,
    link: Link,
    experiment: Experiment[T],
    *,
    addresses: Sequence[Address] = (),
    transproto: str = "tcp,udp",
    timeout: float | None = None,
    on_listening: Callable[[Any], object] | None = None,
    on_refusal: Callable[[str], object] | None = None,
    extra: Sequence[str] = (),
) -> T:
    """Run `experiment(session)` on the first endpoint of `link` and return its result.

    In-process: the endpoint exports `addresses` (default 127.0.0.1) and offers
    `transproto`. With `link.listen`: `on_listening(port)` once listening (say where we
    wait). `on_refusal(text)` hears each TLS refusal as it happens (a wrong chain, an
    untrusted endpoint). `timeout` (seconds, None: none) bounds the whole run.
    """
    if link.in_process:
        return await run_in_process(
            reactor,
            experiment,
            addresses=addresses or (ipaddress.IPv4Address("127.0.0.1"),),
            transproto=transproto,
            plaintext=link.plaintext,
            home=link.home,
            timeout=timeout,
            on_refusal=on_refusal,
            extra=extra,
        )
    where, creds = listening_endpoint(reactor, link)
    return await _run(
        reactor,
        where,
        experiment,
        timeout=timeout,
        creds=creds,
        on_refusal=on_refusal,
        on_listening=on_listening,
    )
