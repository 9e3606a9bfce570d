"""What `stress/soak.py` and its `--system` mode (`stress/soak_system.py`) share: the echo
servers their workloads talk to, and the CSV rows and the least-squares slope of their
reports (one copy for both, so neither script imports the other's module for them)."""

from __future__ import annotations

import csv
import socket
import socketserver
import threading
from pathlib import Path


def append_row(csv_path: Path, rows: list[dict[str, float]], row: dict[str, float]) -> None:
    """`row` kept in `rows` and written to the CSV (its header with the first row)."""
    rows.append(row)
    with csv_path.open("a" if len(rows) > 1 else "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if len(rows) == 1:
            w.writeheader()
        w.writerow(row)


def slope_per_hour(rows: list[dict[str, float]], key: str, since_s: float) -> float | None:
    pts = [(r["t_s"], r[key]) for r in rows if r["t_s"] >= since_s and key in r]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(t for t, _ in pts) / n
    my = sum(v for _, v in pts) / n
    sxx = sum((t - mx) ** 2 for t, _ in pts)
    sxy = sum((t - mx) * (v - my) for t, v in pts)
    return sxy / sxx * 3600 if sxx else None


class TcpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class EchoTcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def udp_echo(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)

    def run() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65536)
                sock.sendto(data, addr)
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return sock, t
