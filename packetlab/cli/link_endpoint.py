"""The in-process endpoint of a link (`link.run_in_process`): the `pktendpoint` service
itself, configured for the controller's loopback port (`endpoint_options`) and started
in this reactor (`start_endpoint`); the port it connects to (`LoopbackServer`) and where
a run's throwaway files go (`memory_dir`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from packetlab.cli.link_tls import LinkError

if TYPE_CHECKING:
    from packetlab.controller.addresses import IPAddress as Address
    from packetlab.ppks import PktlabHome

__all__ = ["EndpointTls", "LoopbackServer", "endpoint_options", "memory_dir", "start_endpoint"]

#: A TLS endpoint's home (its chain and key), the snikey it asks for and its accounting
#: database; None: plain TCP.
EndpointTls: TypeAlias = "tuple[PktlabHome, str, Path] | None"


def endpoint_options(
    port: int,
    addresses: Sequence[Address],
    transproto: str,
    tls: EndpointTls,
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


def memory_dir() -> str | None:
    """Where a run's throwaway files go: a memory file system ($XDG_RUNTIME_DIR, else
    /dev/shm) when there is one, since making and removing them on a disk waits for its
    journal (0.02 s, up to 0.3 s on a busy disk, at the end of every run); else None,
    the temporary directory."""
    for where in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if where and os.path.isdir(where) and os.access(where, os.W_OK | os.X_OK):
            return where
    return None


class LoopbackServer:
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


def start_endpoint(
    port: Any,
    addresses: Sequence[Address],
    transproto: str,
    tls: EndpointTls,
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
        opts = endpoint_options(port.getHost().port, addresses, transproto, tls, extra)
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
