"""Addresses as text: a Twisted address as an operator reads it in a log line or on a
status page, and the one reader of ``HOST[:PORT]`` every option and config line uses."""

from __future__ import annotations

from typing import Any

__all__ = [
    "HostPortError",
    "cannot_listen",
    "client_endpoint",
    "host_port",
    "is_ipv6",
    "join_host_port",
    "port_number",
    "shown_host",
    "split_host_port",
    "zone_problem",
]


def host_port(addr: Any) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) of a Twisted address, not its repr
    (``IPv4Address(type='TCP', host='0.0.0.0', port=20556)``); ``?`` for None."""
    host, port = getattr(addr, "host", None), getattr(addr, "port", None)
    if host is None or port is None:
        return "?" if addr is None else str(addr)
    return join_host_port(str(host), port)


def shown_host(host: str) -> str:
    """An IPv4-mapped IPv6 address (an IPv4 client of a dual-stack `tcp6:PORT` port,
    ``::ffff:192.0.2.9``) as its IPv4 address, the key its per-address share counts it
    under (`addrshare.source_of`); any other host as it is."""
    if host.startswith("::ffff:") and "." in host:
        import ipaddress

        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        return host if mapped is None else str(mapped)
    return host


def join_host_port(host: str, port: object) -> str:
    """``HOST:PORT``, an IPv6 host in brackets (``[::1]:20556``, not ``::1:20556``,
    whose port a reader cannot tell from the address's last group); an IPv4-mapped one
    as its IPv4 address (`shown_host`)."""
    host = shown_host(host)
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def cannot_listen(e: Any, what: str = "") -> str:
    """A `CannotListenError` in one line, its address as `join_host_port` writes it
    (Twisted's own says ``Couldn't listen on ::1:20556: ...``), `what` (``publish
    port``) in brackets after it."""
    where = join_host_port(e.interface or "*", e.port)
    return f"cannot listen on {where}{f' ({what})' if what else ''}: {e.socketError}"


def zone_problem(host: str) -> str | None:
    """Why an IPv6 `host` cannot be connected to or listened on here, else None: a
    link-local address without its zone (the kernel's `Invalid argument`, retried for
    ever), or a zone naming no interface of this host (`Name or service not known`)."""
    import ipaddress
    import socket

    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if ip.scope_id is None:
        if ip.is_link_local:
            return f"the link-local address {host} needs its interface: {host}%IFNAME"
        return None
    if not ip.scope_id.isdigit():
        try:
            socket.if_nametoindex(ip.scope_id)
        except OSError:
            return f"no interface {ip.scope_id!r} here (in {host})"
    return None


def client_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP client endpoint to `host`: an IP address directly (Twisted's
    `HostnameEndpoint` drops an IPv6 zone, `fe80::1%eth0`, and its connect failed with
    `Invalid argument`), a name through `HostnameEndpoint`."""
    import ipaddress

    from twisted.internet import endpoints

    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    kind = endpoints.TCP6ClientEndpoint if version == 6 else endpoints.TCP4ClientEndpoint
    return kind(reactor, host, port, timeout=timeout)


def _v6_then_port(host: str, port: str) -> bool:
    """Whether `HOST:PORT` split on its last ':' is an IPv6 address and a port
    (``::1:20556``), as the reference reads an unbracketed address (PROTOCOL.md §1.4);
    else the whole text is one IPv6 address (``2001:db8::1``: ``2001:db8:`` is none)."""
    import ipaddress

    if not (port.isascii() and port.isdigit()):
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


class HostPortError(ValueError):
    """`HOST[:PORT]` text no reading makes sense of; its text names no option (the
    caller's message does)."""


def split_host_port(text: str, *, reference: bool) -> tuple[str, str | None]:
    """(host, port text or None) of ``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT``;
    the caller checks the host's kind and the port (`port_number`) in its own words.

    Unbracketed text with several ':' (an IPv6 address) is read two ways:

    * ``reference=True``, as the reference splits `controller_addr`, `BrokerAddr`, and
      xpmgr's ``-a``/``-p`` (PROTOCOL.md §1.4: on the last ':', no brackets): an IPv6
      address and digits after the last ':' are a host and a port (``::1:20556``,
      ``2001:db8::1:2`` is port 2 of ``2001:db8::1``); else the text is one address
      (``2001:db8::1``, whose ``2001:db8:`` is none; ``::1``).
    * ``reference=False``, as the native tool our option stands in for reads its host
      (iperf3 ``-c``, dig's ``@``): the whole text is the host, a port goes after brackets.

    Raises HostPortError for a bracket that is not ``[IPv6]`` or ``[IPv6]:...``."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise HostPortError("expected [IPv6]:PORT")
        if not is_ipv6(host):
            raise HostPortError(f"{host!r} is not an IPv6 address")
        return host, rest[1:] if rest else None
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    if ":" not in host or (reference and _v6_then_port(host, port)):
        return host, port
    return text, None


def port_number(text: str, lowest: int = 1) -> int | None:
    """A port's ASCII digits as a number in `lowest`..65535, else None: `isdigit` alone
    took ``²`` (then int's ValueError in Python's words) and ``٣`` (port 3)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if lowest <= port <= 65535 else None


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address (a zone, ``%eth0``, allowed)."""
    import ipaddress

    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def is_address(host: str) -> bool:
    """Whether `host` is an IP address, either family (``[...]`` and a zone allowed), not a
    name: curl's test for SNI, certificate names and cookie domains."""
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
