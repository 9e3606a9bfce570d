"""A Twisted address as an operator reads it in a log line or on a status page."""

from __future__ import annotations

from typing import Any

__all__ = ["host_port"]


def host_port(addr: Any) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) of a Twisted address, not its repr
    (``IPv4Address(type='TCP', host='0.0.0.0', port=20556)``); ``?`` for None."""
    host, port = getattr(addr, "host", None), getattr(addr, "port", None)
    if host is None or port is None:
        return "?" if addr is None else str(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
