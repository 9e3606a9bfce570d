#!/usr/bin/env python3
"""HTTP GET through a PacketLab endpoint.

With no arguments everything runs on loopback: a small HTTP server, a controller listening
on 127.0.0.1, and a PacketLab endpoint in this process (the `twistd pktendpoint`
service) that connects to it over TLS 1.3. The
experiment reads the endpoint's clock and system info, then fetches the page from the
endpoint (TCP nopen, nsend, ndata until the server closes) and prints the timings the
endpoint measured.

    python examples/http_get.py
    python examples/http_get.py --url http://192.0.2.10:8080/index.html \\
        --listen tcp:20556        # wait for a remote endpoint instead of starting one
    pktlab xpmgr examples/http_get.py http://192.0.2.10:8080/   # as an mlet (docs/xpmgr.md)
"""

from __future__ import annotations

import _startup  # noqa: F401  (first: a Ctrl-C while starting is one line, 130)

# isort: split
import argparse
import socket
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

from _common import add_link_args, react, run_experiment
from twisted.internet import defer
from twisted.web import resource, server, static

from packetlab.controller import (
    EndpointSession,
    estimate_clock,
    read_system_info,
    tcp_exchange,
)

PAGE = b"<html><body><h1>hello from the packetlab loopback http server</h1></body></html>\n"


def http_target(url: str) -> tuple[str, int, str]:
    """URL's address (resolved here: the endpoint talks to IP addresses), port and path;
    ValueError in one line for what cannot be fetched (a port out of range and a name that
    does not resolve were `Port out of range 0-65535`, `[Errno -2] Name or service not
    known`, naming neither the URL nor the name)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"{url!r}: the port must be 1..65535") from None
    try:
        host = socket.gethostbyname(parts.hostname)
    except (OSError, UnicodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{url!r}: cannot resolve {parts.hostname}: {why}") from None
    return host, port, parts.path or "/"


def url_arg(text: str) -> str:
    try:
        http_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--url", type=url_arg, help="page to fetch (default: a local server this script starts)"
    )
    add_link_args(p)
    return p.parse_args(argv)


def ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f} ms"


def make_experiment(host: str, port: int, path: str) -> Any:
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: packetlab\r\n\r\n"
    ).encode()

    async def experiment(session: EndpointSession) -> dict[str, Any]:
        clock = await estimate_clock(session, samples=8)
        info = await read_system_info(session)
        got = await tcp_exchange(session, host, port, request, timeout=10.0)
        return {"peer": session.peer, "clock": clock, "info": info, "got": got}

    return experiment


def report(url: str, r: dict[str, Any]) -> None:
    clock, info, got = r["clock"], r["info"], r["got"]
    addrs = ", ".join(str(a) for a in info.ip4) or "none"
    print(f"endpoint {r['peer']}: hostid {info.hostid or '-'!r}, IPv4 {addrs}")
    print(
        f"clock offset {clock.offset / 1e6:+.3f} ms ± {clock.error / 1e6:.3f} ms "
        f"(min rtt {ms(clock.rtt)} over {len(clock.samples)} samples)"
    )
    head, _, body = got.data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1") if head else "(no response)"
    print(f"GET {url} through the endpoint")
    print(f"  status      {status}")
    print(
        f"  received    {len(got.data)} bytes in {got.chunks} ndata "
        f"(headers {len(head)}, body {len(body)})"
    )
    print(f"  connect     {ms(got.connect_ns)}  (nopen handled -> ESTABLISHED nstat)")
    print(f"  first byte  {ms(got.first_byte_ns)}  (request ntag -> first ndata)")
    if got.chunks > 1 and got.first_data_at is not None and got.last_data_at is not None:
        print(f"  transfer    {ms(got.last_data_at - got.first_data_at)}  (first -> last ndata)")
    print(f"  end         {got.end}")
    text = body_preview(body)
    if text:
        print(f"  body        {text}")


def body_preview(body: bytes, width: int = 72) -> str:
    """The body's start on one line (a page's newlines and tabs as single spaces)."""
    text = " ".join(body.decode("utf-8", "replace").split())
    return f"{text[:width]}..." if len(text) > width else text


async def main(reactor: Any, args: argparse.Namespace) -> int:
    web: Any = None
    if args.url is None:
        root = resource.Resource()
        root.putChild(b"", static.Data(PAGE, "text/html"))
        web = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
        url = f"http://127.0.0.1:{web.getHost().port}/"
    else:
        url = args.url
    host, port, path = http_target(url)  # --url was checked as it was parsed
    experiment = make_experiment(host, port, path)
    try:
        result = await run_experiment(reactor, args, experiment, targets=[host])
    finally:
        if web is not None:
            await defer.maybeDeferred(web.stopListening)
    report(url, result)
    return 0


def check(args: list[str]) -> tuple[str, int, str]:
    """The mlet's arguments: URL's address, port and path. `pktlab xpmgr` calls this once
    before it listens (docs/xpmgr.md, "Python experiments"): a bad URL is one line and
    exit status 2 there, not the same failure at every endpoint."""
    if len(args) != 1:
        _usage("usage: pktlab xpmgr ... examples/http_get.py http://IP[:PORT]/PATH")
    try:
        return http_target(args[0])
    except ValueError as e:
        _usage(str(e))


def _usage(text: str) -> NoReturn:
    print(text, file=sys.stderr)
    raise SystemExit(2)  # the usage-error status: the manager stops at the first endpoint


async def mlet(session: EndpointSession, args: list[str]) -> None:
    """As an mlet of `pktlab xpmgr` (docs/xpmgr.md): `pktlab xpmgr examples/http_get.py URL`
    fetches URL from every endpoint that connects to the manager."""
    host, port, path = check(args)
    experiment = make_experiment(host, port, path)
    report(args[0], await experiment(session))


def run(argv: list[str] | None = None) -> None:
    react(main, parse_args(argv))


if __name__ == "__main__":
    run()
