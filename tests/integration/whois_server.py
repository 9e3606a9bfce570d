"""A small RADB-style whois server for traceroute -A tests (loopback only).

``python whois_server.py PORT ROUTES...``: each ROUTE is ``PREFIX=AS[,AS...]`` (e.g.
``127.0.0.0/8=AS64500``); a query (one line, an address) is answered with a ``route:``
(``route6:``) object for every prefix that holds the address, one per origin, as RADB
answers, then the connection is closed; no match: RADB's "No entries found". Prints
``listening`` once bound; stops after 60 s, or on SIGTERM. Each query is appended to the
file named by ``WHOIS_LOG`` when set (one line each).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time


def answer(query: str, routes: list[tuple[ipaddress._BaseNetwork, str]]) -> bytes:
    try:
        addr = ipaddress.ip_address(query.strip())
    except ValueError:
        return b"%  No entries found for the selected source(s).\n"
    out = ""
    for net, origin in routes:
        if addr.version == net.version and addr in net:
            kind = "route:  " if net.version == 4 else "route6: "
            out += (
                f"{kind}    {net}\ndescr:      test route\norigin:     {origin}\n"
                "mnt-by:     MAINT-TEST\nsource:     RADB\n\n"
            )
    return (out or "%  No entries found for the selected source(s).\n").encode()


def serve(conn: socket.socket, routes: list[tuple[ipaddress._BaseNetwork, str]]) -> None:
    with conn:
        conn.settimeout(5)
        data = b""
        try:
            while b"\n" not in data and len(data) < 1024:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return
        query = data.decode("latin-1").split("\n")[0].rstrip("\r")
        log = os.environ.get("WHOIS_LOG")
        if log:
            with open(log, "a") as f:
                f.write(query + "\n")
        conn.sendall(answer(query, routes))


def main() -> None:
    port = int(sys.argv[1])
    routes = []
    for spec in sys.argv[2:]:
        prefix, _, origins = spec.partition("=")
        for origin in origins.split(","):
            routes.append((ipaddress.ip_network(prefix, strict=False), origin))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.settimeout(0.5)
    print("listening", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        threading.Thread(target=serve, args=(conn, routes), daemon=True).start()


if __name__ == "__main__":
    main()
