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

This module holds the options and the runs; the credentials, homes and refusal messages
are `link_tls`'s, the in-process endpoint's configuration and start `link_endpoint`'s
(loaded when a run starts one). `LinkError` and `ControllerCredentials` are importable
from here too.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from packetlab import ppks  # (its names load on first use: `run --help` needs none)
from packetlab.cli.link_tls import (
    DEMO_LINK_FILES,
    ControllerCredentials,
    demo_link_cache,
    in_process_home,
    lacking,
    peer_clock_hint,
    watch_refusals,
)
from packetlab.cli.linkargs import (
    BroadcastTarget,
    LinkError,
    add_link_arguments,
    listen_description,
)
from packetlab.hostport import cannot_listen, split_host_port
from packetlab.paths import expand_path

if TYPE_CHECKING:
    from packetlab.cli.link_endpoint import EndpointTls

T = TypeVar("T")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Experiment = Callable[[Any], Awaitable[T]]

__all__ = [
    "BroadcastTarget",
    "ControllerCredentials",
    "Link",
    "LinkError",
    "add_link_arguments",
    "listen_description",
    "listen_on",
    "route_source",
    "run_in_process",
    "run_on_link",
]


@dataclass(frozen=True)
class Link:
    """Where the endpoint is and how the link is secured (see the module docstring).

    `listen`: None for an in-process endpoint, else where to wait: a Twisted server
    endpoint string (`tcp:20556:interface=127.0.0.1`) or what --listen takes (`20556`,
    `127.0.0.1:20556`, `[::1]:20556`). `home`: the `--home` given (a `pktlab init`
    directory; None: the default home). `plaintext`: no TLS.
    """

    listen: str | None = None
    home: Path | None = None
    plaintext: bool = False

    def __post_init__(self) -> None:
        # `listen` also takes what --listen takes (PORT, HOST:PORT, [V6]:PORT): in code
        # those were Twisted's "Unknown endpoint type: '127.0.0.1'" (session 30, eyes30).
        if self.listen is not None and _bare_listen(self.listen):
            object.__setattr__(self, "listen", listen_description(self.listen))

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
            if lacking(h.root, DEMO_LINK_FILES):
                return f"TLS 1.3, demo PPKS certificates from {demo_link_cache()}"
        return f"TLS 1.3, PPKS certificates from {self.home or ppks.default_home()}"


def _bare_listen(text: str) -> bool:
    """PORT, HOST:PORT or [V6]:PORT rather than a Twisted endpoint string."""
    text = text.strip()
    if text.isdigit() or text.startswith("["):
        return True
    host, port = split_host_port(text, reference=True)  # (raises only for a '[')
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return port is not None


def route_source(dst: Address) -> Address:
    """The address this host would send from to `dst` (a connected UDP socket's name): what
    an in-process endpoint exports to reach `dst`."""
    af = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(dst), 33434))
        except PermissionError:  # EACCES: the kernel's answer for a broadcast route only
            raise BroadcastTarget(
                f"{dst} is a broadcast address (sending there takes SO_BROADCAST, which is "
                "not a PacketLab socket option)"
            ) from None
        except OSError as e:
            raise LinkError(f"no route to {dst}: {e.strerror or e}") from None
        return ipaddress.ip_address(str(s.getsockname()[0]).split("%", 1)[0])


# -- running ------------------------------------------------------------------------------------


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
    import shutil
    import tempfile

    from packetlab.cli.link_endpoint import LoopbackServer, memory_dir, start_endpoint
    from packetlab.tls import gen_snikey

    tmp: Path | None = None  # the cached demo home's per-run accounting database
    tls: EndpointTls = None
    where: Any = LoopbackServer(reactor)
    creds: ControllerCredentials | None = None
    if not plaintext:
        h, cached = in_process_home(Path(home) if home is not None else None)
        rlim = h.accounting_db
        if cached:  # resource use is counted per run, not across the runs sharing it
            tmp = Path(tempfile.mkdtemp(prefix="pktlab-link-", dir=memory_dir()))
            rlim = tmp / "endpt.rlim.sqlite3"
        snikey = gen_snikey()
        creds = ControllerCredentials.from_home(h)
        creds = ControllerCredentials(creds.chain, creds.key, creds.trusted, snikey, creds.source)
        tls = (h, snikey, rlim)
        where = creds.tls_server(reactor, where)
    try:
        return await _run(
            reactor,
            where,
            experiment,
            timeout=timeout,
            creds=creds,
            on_refusal=on_refusal,
            start=lambda port: start_endpoint(port, addresses, transproto, tls, extra),
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


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

    from packetlab.controller import Controller

    ctl: Controller[T] = Controller(experiment, reactor=reactor, limit=1, report_failures=False)
    port = await listen_on(ctl, where)
    service: Any = None
    with watch_refusals(creds, on_refusal) as refusals:
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
            try:
                return outcome.unwrap()
            except Exception as e:
                hint = (
                    None if creds is None else peer_clock_hint(e, creds.certificates(), time.time())
                )
                if hint is None:
                    raise
                raise LinkError(f"{e}{hint}") from e
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

    creds = ControllerCredentials.from_home(ppks.PktlabHome.at(link.home))
    return creds.tls_server(reactor, serverFromString(reactor, link.listen)), creds


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


async def listen_on(ctl: Any, where: Any) -> Any:
    """`ctl.listen(where)`, a port that cannot be bound said as a `LinkError` in one line
    (`cannot listen on 127.0.0.1:20556: [Errno 98] Address already in use`): every
    command that waits for endpoints (`run`, `run --endpoints N`, `campaign`; the last
    two said `internal error: CannotListenError: ...` before session 23)."""
    from twisted.internet.error import CannotListenError

    try:
        return await ctl.listen(where)
    except CannotListenError as e:
        raise LinkError(cannot_listen(e)) from None
