"""A Twisted address as an operator reads it in a log line or on a status page."""

from __future__ import annotations

from typing import Any

__all__ = ["cannot_listen", "host_port", "join_host_port"]


def host_port(addr: Any) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) of a Twisted address, not its repr
    (``IPv4Address(type='TCP', host='0.0.0.0', port=20556)``); ``?`` for None."""
    host, port = getattr(addr, "host", None), getattr(addr, "port", None)
    if host is None or port is None:
        return "?" if addr is None else str(addr)
    return join_host_port(str(host), port)


def join_host_port(host: str, port: object) -> str:
    """``HOST:PORT``, an IPv6 host in brackets (``[::1]:20556``, not ``::1:20556``,
    whose port a reader cannot tell from the address's last group)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def cannot_listen(e: Any) -> str:
    """A `CannotListenError` in one line, its address as `join_host_port` writes it
    (Twisted's own says ``Couldn't listen on ::1:20556: ...``)."""
    return f"cannot listen on {join_host_port(e.interface or '*', e.port)}: {e.socketError}"
