"""What `pktlab` commands parse of a link (`--listen`, `--home`, `--insecure-plaintext`)
and its error, without what running one needs: `pktlab run ping --help` imports this,
not `packetlab.cli.link` (dataclasses, tempfile, pathlib; docs/performance.md, Session
18: start-up). `packetlab.cli.link` re-exports every name."""

from __future__ import annotations

import argparse
import ipaddress

from packetlab.controller.errors import ControllerError
from packetlab.hostport import HostPortError, port_number, split_host_port, zone_problem

__all__ = ["LinkError", "add_link_arguments", "listen_description"]


class LinkError(ControllerError):
    """A link problem, in one line that says what to do about it."""


class RunError(LinkError):
    """A problem worth one line on stderr (exit status 2). Here, below `cli.run`, so that
    the modules `run` imports can raise it (`run_host`) without importing `run`."""


class BroadcastTarget(RunError):
    """The target is a broadcast address of this host's network (the in-process endpoint's
    route lookup is refused: sending there takes SO_BROADCAST). `exit_status`: the
    native tool's for it (ping 2, traceroute 1), where a command says it in its words."""

    exit_status = 2


# -- options -------------------------------------------------------------------------------------


# Wrapped by hand: the `run` commands' help keeps descriptions as written.
IN_PROCESS = (
    "By default an endpoint runs in this process. The link is TLS 1.3 with the PPKS\n"
    "certificates of a `pktlab init` home unless --insecure-plaintext."
)
LISTEN_FORMS = "ADDR (PORT, HOST:PORT, [V6]:PORT or a Twisted endpoint string like tcp:20556)"


def add_link_arguments(
    parser: argparse.ArgumentParser,
    *,
    about: str = IN_PROCESS,
    listen: str = "start no endpoint: listen on {forms} and measure from the first endpoint "
    "that connects",
) -> None:
    """--listen, --home, --insecure-plaintext (and nothing else: the command's own options
    stay the command's). `about` (the group's text) and `listen` say where the endpoints
    come from (`pktlab campaign`: only --listen; `pktlab compare`: only in-process)."""
    g = parser.add_argument_group("link", about)
    g.add_argument("--listen", metavar="ADDR", help=listen.format(forms=LISTEN_FORMS))
    g.add_argument(
        "--home",
        metavar="DIR",
        help="PacketLab home whose certificates the TLS link uses (made by `pktlab init`, or "
        "the reference pktlab_init; default: $PKTLAB_HOME or ~/.pktlab; the in-process "
        "endpoint falls back to a temporary demo home when the default one is not set up)",
    )
    g.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="plain TCP instead of TLS (endpoints only allow it to a loopback controller)",
    )


def listen_description(text: str) -> str:
    """--listen ADDR as a Twisted server endpoint string."""
    text = text.strip()
    if text.split(":", 1)[0] in ("tcp", "tcp6", "unix"):
        return text
    if text.isdigit():
        host, port = "", text
    else:
        try:  # `::1:20556` as the endpoint reads its --broker (`::1` said `':' is not ...`)
            host, maybe = split_host_port(text, reference=True)
        except HostPortError as e:
            raise LinkError(f"--listen {text}: {e}") from None
        if maybe is None:
            wanted = "[IPv6]:PORT" if ":" in text else "PORT, HOST:PORT or an endpoint string"
            raise LinkError(f"--listen {text}: expected {wanted}")
        port = maybe
    if port_number(port, 0) is None:  # (`²` raised int's ValueError)
        raise LinkError(f"--listen {text}: bad port {port!r}")
    if not host:
        return f"tcp:{port}"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise LinkError(f"--listen {text}: {host!r} is not an IP address") from None
    problem = zone_problem(host)
    if problem is not None:  # else `cannot listen on ...: [Errno 22] Invalid argument`
        raise LinkError(f"--listen {text}: {problem}")
    if ip.version == 6:
        return f"tcp6:{port}:interface={str(ip).replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={ip}"
