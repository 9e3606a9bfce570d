"""Helpers for the proxy and xpmgr tests: real `twistd pktproxy`, `pktlab xpmgr` and
`twistd pktendpoint` processes on loopback (port 0 everywhere), a blocking manager-side
registration client, real ClientHellos, and a loopback HTTP server."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import REPO, stop_process, twistd
from httpserve import serve_http
from OpenSSL import SSL

from packetlab import wire
from packetlab.tls import AuthMode, PPKSClientCreator
from packetlab.tls.handoff import TLSHandoff

ENV = dict(os.environ)
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), ENV.get("PYTHONPATH")]))


def wait_for(
    path: Path, pattern: str, proc: subprocess.Popen[Any], timeout: float = 20.0
) -> re.Match[str]:
    """The first match of `pattern` in the file `path` (a log), waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    text = path.read_text(errors="replace") if path.exists() else ""
    raise AssertionError(
        f"{pattern!r} not seen in {path.name} (exit {proc.poll()}):\n{text[-3000:]}"
    )


class Proc:
    """A child process whose stdout+stderr go to `log`."""

    def __init__(
        self, argv: Sequence[str], log: Path, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env or ENV, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        return wait_for(self.log, pattern, self.proc, timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class ProxyProc(Proc):
    def __init__(self, tmp: Path, home: Path, *args: str, prefix: Sequence[str] = ()) -> None:
        """`prefix`: a command that runs twistd, e.g. `prlimit --nofile=N --`."""
        self.stats = tmp / f"proxy-stats-{id(self)}.json"
        argv = [*prefix, *twistd(), "-n", "--pidfile=", "--logfile=-", "pktproxy",
                "--home", str(home),
                "--setup", "tcp:0:interface=127.0.0.1", "--endpoints", "tcp:0:interface=127.0.0.1",
                "--stats-interval", "0.2", "--stats-file", str(self.stats), *args]  # fmt: skip
        super().__init__(argv, tmp / f"pktproxy-{id(self)}.log", tmp)
        self.setup = int(self.wait_log(r"setup port listening on 127\.0\.0\.1:(\d+)").group(1))
        self.endpoints = int(
            self.wait_log(r"endpoints port listening on 127\.0\.0\.1:(\d+)").group(1)
        )

    def counters(self, wait_for: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        import json

        deadline = time.monotonic() + timeout
        while True:
            try:
                stats: dict[str, Any] = json.loads(self.stats.read_text())
            except (OSError, ValueError):
                stats = {}
            if wait_for is None and stats:
                return stats
            try:
                if wait_for is not None and stats and eval(wait_for, {}, stats):  # test-written
                    return stats
            except (NameError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"counters never satisfied {wait_for!r}: {stats}")
            time.sleep(0.05)


class XpmgrProc(Proc):
    def __init__(
        self, tmp: Path, conf: Path, mlet: Sequence[str], *opts: str, addr: str = "127.0.0.1:0"
    ) -> None:
        self.results = tmp / f"results-{id(self)}.jsonl"
        argv = [sys.executable, "-m", "packetlab", "xpmgr", "-c", str(conf), "-a", addr,
                "--results", str(self.results), *opts, *mlet]  # fmt: skip
        super().__init__(argv, tmp / f"xpmgr-{id(self)}.log", tmp)

    def port(self) -> int:
        return int(self.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    def result_lines(self) -> list[dict[str, Any]]:
        import json

        if not self.results.exists():
            return []
        # whole lines only: a line of 100 KB (an mlet's 64 KiB output) read while the
        # manager writes it was cut, a JSONDecodeError (session 29, a loaded machine)
        whole = self.results.read_text().split("\n")[:-1]
        return [json.loads(line) for line in whole if line]

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"xpmgr still running after {timeout} s:\n{self.text()[-3000:]}"
            ) from None


class EndpointProc(Proc):
    """`twistd pktendpoint` over TLS with the demo home's endpt.conf (`address` None:
    broker mode, given by `args`)."""

    def __init__(self, tmp: Path, home: Path, address: str | None, *args: str) -> None:
        argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", "-c",
                str(home / "endpt.conf"), "--reconnect-delay", "0.1", *args,
                *([address] if address else [])]  # fmt: skip
        super().__init__(argv, tmp / f"pktendpoint-{id(self)}.log", tmp)


def active_conf(home: Path, out: Path, snikey: str, *extra: str) -> Path:
    """The demo xpmgr.conf in proxy mode with a fixed snikey."""
    text = (home / "xpmgr.conf").read_text().replace("ExpExec 1::", f"ExpExec 1:{snikey}:")
    out.write_text(text + "EnableProxyMode 1\n" + "".join(line + "\n" for line in extra))
    return out


def built_mlets(tmp: Path, cflags: str = "-O2 -Wall -Werror") -> Path:
    """examples/mlets copied into TMP/mlets and built by its Makefile with `cflags`
    (the test is skipped on a machine without make or cc)."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        import pytest

        pytest.skip("no make or cc on this machine")
    mlets = tmp / "mlets"
    shutil.copytree(REPO / "examples/mlets", mlets)
    subprocess.run(["make", "-s", "-C", str(mlets), f"CFLAGS={cflags}"], check=True)
    return mlets


def compile_c_mlet(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        import pytest

        pytest.skip("no C compiler (cc) on this machine")
    exe = tmp / "http_get"
    src = REPO / "examples/mlets/http_get.c"
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True,
                   capture_output=True)  # fmt: skip
    return exe


@contextmanager
def http_server(body: bytes = b"hello from the test server\n") -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    with serve_http(Handler) as port:
        yield port


def client_hello(sni: str | None, pad: int = 0) -> bytes:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    conn = SSL.Connection(ctx, None)
    if sni is not None:
        conn.set_tlsext_host_name(sni.encode())
    if pad:
        conn.set_alpn_protos([b"x" * 200] * (pad // 201 + 1))
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(1 << 20)


def receive_hello(backlog: socket.socket, hello: bytes) -> None:
    """Read from a manager's `backlog` until `hello`'s length has come; it must be `hello`
    unchanged (the proxy forwards the ClientHello as it came)."""
    got = b""
    while len(got) < len(hello):
        chunk = backlog.recv(65536)
        assert chunk, "backlog closed before the hello came"
        got += chunk
    assert got == hello


def register(
    port: int,
    snikey: str,
    *,
    echo: bytes = b"PKTLAB",
    timeout: float = 10.0,
    source: str | None = None,
) -> socket.socket:
    """Register one backlog connection for `snikey` as a manager does (blocking); the
    returned socket is the idle backlog, after the preamble and its echo. `source`: the
    local address to connect from (another loopback address is another manager's)."""
    bind = None if source is None else (source, 0)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=bind)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = TLSHandoff(
        PPKSClientCreator(None, AuthMode.AGENT).clientConnectionForTLS(None),  # type: ignore[arg-type]
        is_client=True,
    )
    sock.sendall(tls.start())
    framer = wire.Framer()
    while True:
        data = sock.recv(65536)
        assert data, "proxy closed during registration"
        step = tls.receive(data)
        out = step.out
        if step.handshake_done:
            out += tls.send(wire.encode(wire.Xreg(snikey.encode())))
        if out:
            sock.sendall(out)
        got = list(framer.feed(step.data))
        if got:
            assert got == [wire.Result()], got
            sock.sendall(tls.close())
            break
    pre = b""
    while len(pre) < 6:
        chunk = sock.recv(6 - len(pre))
        assert chunk, "proxy closed before the preamble"
        pre += chunk
    assert pre == b"PKTLAB"
    sock.sendall(echo)
    return sock


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until EOF (or RST); returns what came before it."""
    sock.settimeout(timeout)
    got = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
