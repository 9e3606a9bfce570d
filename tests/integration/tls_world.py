"""Helpers for the endpoint TLS tests: a demo world made by the real `pktlab init`,
controller chains with chosen limits, a blocking TLS controller (stdlib ssl) that speaks
raw frames, and a real `twistd pktendpoint` over TLS."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import REPO, RawController, stop_process, twistd

from packetlab import wire
from packetlab.cli.init import init_home
from packetlab.ppks import (
    CertLimits,
    PktlabHome,
    issue_certificate,
    read_private_key,
)
from packetlab.wire.constants import Proto

NB, NA = 0, 2**31 - 1
LO4 = socket.inet_aton("127.0.0.1")


def pktlab_init(home: Path) -> PktlabHome:
    """`pktlab init --home HOME`, the real command."""
    subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return PktlabHome.at(home)


def home_fixture(
    *, scope: Literal["module", "function"] = "module", root: bool = False, command: bool = True
) -> Any:
    """The `home` fixture of a test module, bound at its top as `home = home_fixture(...)`
    (an import of a fixture makes ruff take each test's argument for a redefinition,
    F811): a `pktlab init` home, one per module (`scope="function"`: one per test).
    `root`: the fixture gives the home's Path, not its PktlabHome. `command`: made by the
    real `pktlab init` command; False: by `init_home` in this process (no interpreter to
    start, for the modules that test no part of `pktlab init`)."""

    @pytest.fixture(scope=scope, name="home")
    def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome | Path:
        where = tmp_path_factory.mktemp("home") / "home"
        if command:
            made = pktlab_init(where)
        else:
            made = PktlabHome.at(where)
            init_home(made)
        return made.root if root else made

    return home


def controller_chain(
    home: PktlabHome,
    out: Path,
    *,
    limits: CertLimits | None = None,
    not_after: int = NA,
    eop: str = "k_eop",
) -> list[Path]:
    """pubcmd(k_exper -> k_xc) + exppriv(EOP -> k_exper, `limits`) as PEM files."""
    exper = read_private_key(home.key_path("k_exper"))
    xc = read_private_key(home.key_path("k_xc"))
    eop_key = read_private_key(home.key_path(eop))
    exppriv = issue_certificate("exppriv", eop_key, exper, NB, not_after, limits=limits)
    pubcmd = issue_certificate("pubcmd", exper, xc, NB, not_after)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "pubcmd.cert", out / "exppriv.cert"]
    paths[0].write_bytes(pubcmd.to_pem())
    paths[1].write_bytes(exppriv.to_pem())
    return paths


class TLSController:
    """A loopback TLS server (the controller side of §4.6) handing out `RawController`s.

    It presents `chain` with `key` and asks no client certificate (an empty TRUSTEDEOP:
    the reference then accepts endpoints without one)."""

    def __init__(self, chain: list[Path], key: Path, workdir: Path) -> None:
        bundle = workdir / f"bundle-{id(self)}.pem"
        bundle.write_bytes(b"".join(p.read_bytes() for p in chain))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(str(bundle), str(key))
        ctx.verify_mode = ssl.CERT_NONE
        ctx.num_tickets = 0
        self.ctx = ctx
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.controllers: list[RawController] = []

    def accept(self, timeout: float = 15.0) -> RawController:
        """The next endpoint whose TLS handshake completes (ssl.SSLError if it fails)."""
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.ctx.wrap_socket(sock, server_side=True)
        ctl = RawController(tls)
        self.controllers.append(ctl)
        return ctl

    def close(self) -> None:
        for c in self.controllers:
            c.close()
        self.listener.close()


class TLSEndpoint:
    """`twistd -n pktendpoint -c HOME/endpt.conf ADDRESS` (TLS)."""

    def __init__(self, home: PktlabHome, address: str, workdir: Path, *args: str) -> None:
        self.logfile = workdir / f"pktendpoint-{time.monotonic_ns()}.log"
        self.argv = [
            *twistd(),
            "-n",
            "--pidfile=",
            f"--logfile={self.logfile}",
            "pktendpoint",
            "-c",
            str(home.root / "endpt.conf"),
            "--ipv4",
            "127.0.0.1/8",
            "--reconnect-delay",
            "0.05",
            *args,
            address,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        # SIGINT as a terminal's: a suite started in the background (`cmd &`: SIGINT
        # ignored, inherited) left twistd without its handler, and a test's SIGINT did nothing
        self.proc = subprocess.Popen(
            self.argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip

    def output(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        # A deadline, not a wait: on a loaded host twistd alone can take 10 s to start.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the endpoint log:\n{self.output()[-4000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)


def udp_sink() -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(0.5)
    return s, s.getsockname()[1]


def udp_sink_on(odd: bool) -> tuple[socket.socket, int]:
    """A `udp_sink` on an odd (or even) port: the monitor tests' policies tell them apart."""
    while True:
        s, port = udp_sink()
        if port % 2 == int(odd):
            return s, port
        s.close()


def drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(65536)
            n += 1
        except (TimeoutError, BlockingIOError):
            return n


@dataclass
class SendWorld:
    """A `pktlab init` home whose controller chain carries `limits`, a UDP sink, a TLS
    controller, and the endpoints started for it (`send_world` stops them)."""

    home: PktlabHome
    chain: list[Path]
    sink: socket.socket
    port: int
    ctl: TLSController
    workdir: Path
    eps: list[TLSEndpoint] = field(default_factory=list)

    @property
    def db(self) -> Path:
        """The accounting database (RLimDBPath of the endpt.conf `pktlab init` wrote)."""
        return self.home.root / "endpt.rlim.sqlite3"

    def endpoint(self, *args: str) -> TLSEndpoint:
        """A real endpoint that connects to this world's controller."""
        ep = TLSEndpoint(self.home, self.ctl.address, self.workdir, *args)
        self.eps.append(ep)
        return ep

    def udp_session(self, timeout: float = 15.0) -> RawController:
        """The next endpoint's session, started, with UDP socket 1 open on 127.0.0.1."""
        c = self.ctl.accept(timeout)
        c.start()
        c.ok(wire.Nopen(1, 4, int(Proto.UDP), 65536, LO4, 0))
        return c


@contextmanager
def send_world(
    tmp_path: Path, limits: CertLimits | None = None, home: PktlabHome | None = None
) -> Iterator[SendWorld]:
    """A `SendWorld` in `tmp_path` (on `home` if given: one whose endpt.conf the test
    changed), every endpoint, the controller and the sink closed after, also on failure."""
    home = home or pktlab_init(tmp_path / "home")
    chain = controller_chain(home, tmp_path / "c", limits=limits)
    sink, port = udp_sink()
    try:
        ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
        world = SendWorld(home, chain, sink, port, ctl, tmp_path)
        try:
            yield world
        finally:
            for ep in world.eps:
                ep.stop()
            ctl.close()
    finally:
        sink.close()
