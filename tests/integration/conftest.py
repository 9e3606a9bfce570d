"""Fixtures that run a real ``twistd -n pktendpoint`` process against a test-side
controller speaking raw wire frames on loopback.

* `endpoint_factory` starts endpoints with a given config/options; each one connects to a
  listener this process holds, and `EndpointProcess.accept()` gives a `RawController` on
  the next connection. Everything is stopped at teardown, also on failure (the endpoint's
  log is then printed).
* `shared_endpoint` is one module-wide endpoint (default config plus ::1) that reconnects
  0.05 s after each session; `controller` is a started session on it for one test.
* `procs`: a list a test appends the processes it starts to (anything with `stop()`);
  each is stopped at the test's end, the last first, also on failure.
* A module's `pktlab init` home: `home = tls_world.home_fixture(...)` at its top.
* `clean_reactor` (testkit.dirty, autouse): a test that leaves delayed calls or open
  sockets on the global reactor fails, naming them.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from testkit.dirty import clean_reactor  # noqa: F401 (autouse: every test leaves the reactor clean)

from packetlab import wire

REPO = Path(__file__).resolve().parents[2]
M = TypeVar("M", bound=wire.Message)

DEFAULT_CONFIG = """\
# endpoint config used by the integration tests
BufMax 8388608
TransprotoSup tcp,udp
VMemLocalAddrStrIPv4 127.0.0.1/8
VMemLocalAddrStrIPv6 ::1
VMemLocalDNSAddrStrIPv4 127.0.0.53
HostID pktendpoint-test
NoSubMode 1
"""


def twistd() -> list[str]:
    exe = Path(sys.executable).with_name("twistd")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM a child that still runs; SIGKILL it if it is not gone within 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class RawController:
    """One accepted endpoint connection; blocking socket, raw frames, bounded waits.

    `request()` sends a request and returns its response (result or mdata); notifications
    that arrive meanwhile are kept in order in `notes` for `notification()`.
    """

    RESPONSES = (wire.Result, wire.Mdata)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = wire.Framer()
        self.ready: list[wire.Item] = []
        self.notes: list[wire.Message] = []
        self.log: list[wire.Item] = []  # everything received, in order

    def send(self, *msgs: wire.Message | bytes) -> None:
        self.sock.sendall(b"".join(m if isinstance(m, bytes) else wire.encode(m) for m in msgs))

    def recv(self, timeout: float = 5.0) -> wire.Message:
        """The next frame from the endpoint (TimeoutError if none, EOFError on close)."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no frame from the endpoint within {timeout} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                raise EOFError("endpoint closed the connection")
            self.ready.extend(self.framer.feed(data))
        item = self.ready.pop(0)
        self.log.append(item)
        assert isinstance(item, wire.Message), f"endpoint sent a bad frame: {item!r}"
        return item

    def next(self, timeout: float = 5.0) -> wire.Message:
        """The next frame in arrival order, held-back notifications first."""
        if self.notes:
            return self.notes.pop(0)
        return self.recv(timeout)

    def response(self, timeout: float = 5.0) -> wire.Message:
        while True:
            msg = self.recv(timeout)
            if isinstance(msg, self.RESPONSES):
                return msg
            self.notes.append(msg)

    def request(self, msg: wire.Message | bytes, timeout: float = 5.0) -> wire.Message:
        self.send(msg)
        return self.response(timeout)

    def ok(self, msg: wire.Message | bytes, timeout: float = 5.0) -> None:
        r = self.request(msg, timeout)
        assert r == wire.Result(0), f"{msg!r} answered {r!r}"

    def status(self, msg: wire.Message | bytes, timeout: float = 5.0) -> int:
        r = self.request(msg, timeout)
        assert isinstance(r, wire.Result), r
        return r.errid

    def notification(
        self, cls: type[M], where: Callable[[M], bool] = lambda m: True, timeout: float = 5.0
    ) -> M:
        """The first held-back or newly arriving `cls` notification matching `where`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.notes):
                if isinstance(m, cls) and where(m):
                    del self.notes[i]
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {cls.__name__} within {timeout} s; have {self.notes}")
            msg = self.recv(left)
            if isinstance(msg, self.RESPONSES):
                raise AssertionError(f"unexpected response {msg!r} while waiting for {cls}")
            self.notes.append(msg)

    def quiet(self, seconds: float = 0.2) -> list[wire.Message]:
        """Everything that arrives within `seconds` (kept in `notes` too)."""
        got: list[wire.Message] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.recv(left)
            except TimeoutError:
                break
            got.append(msg)
            self.notes.append(msg)
        return got

    def start(self) -> None:
        self.ok(wire.Start())

    def mread(self, addr: int, length: int) -> bytes:
        r = self.request(wire.Mread(addr=addr, len=length))
        assert isinstance(r, wire.Mdata), r
        assert r.addr == addr
        return r.data

    def mwrite(self, addr: int, data: bytes) -> None:
        self.ok(wire.Mwrite(addr=addr, data=data))

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        try:
            while True:
                self.recv(timeout)
        except EOFError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class EndpointProcess:
    """A ``twistd -n pktendpoint --insecure-plaintext`` child connected to our listener."""

    def __init__(
        self,
        workdir: Path,
        config: str | None = DEFAULT_CONFIG,
        args: Sequence[str] = (),
        listen: str = "127.0.0.1",
        defer_listen: bool = False,
        nofile: int | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((listen, 0))
        if not defer_listen:  # else: the endpoint finds no listener until listen()
            self.listen()
        port = self.listener.getsockname()[1]
        self.address = f"[{listen}]:{port}" if ":" in listen else f"{listen}:{port}"
        self.logfile = workdir / f"pktendpoint-{port}.log"
        argv = [*twistd(), "-n", "--pidfile=", f"--logfile={self.logfile}", "pktendpoint"]
        if config is not None:
            conf = workdir / f"endpt-{port}.conf"
            conf.write_text(config)
            argv += ["--config", str(conf)]
        argv += ["--insecure-plaintext", *args, self.address]
        self.argv = argv
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

        def limit() -> None:
            if nofile is not None:  # a small descriptor limit, to reach ENORES
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
        self.controllers: list[RawController] = []

    def listen(self) -> None:
        self.listener.listen(8)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def accept(self, timeout: float = 15.0) -> RawController:
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            raise TimeoutError(
                f"endpoint did not connect within {timeout} s:\n{self.output()}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctl = RawController(sock)
        self.controllers.append(ctl)
        return ctl

    def output(self) -> str:
        text = ""
        if self.logfile.exists():
            text = self.logfile.read_text(errors="replace")
        return "\n".join(text.splitlines()[-60:])

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> None:
        for c in self.controllers:
            c.close()
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.listener.close()


@pytest.fixture
def endpoint_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., EndpointProcess]]:
    """`start(config=DEFAULT_CONFIG, args=(), listen="127.0.0.1", defer_listen=False,
    nofile=None)` returns a running `EndpointProcess`."""
    started: list[EndpointProcess] = []

    def start(
        config: str | None = DEFAULT_CONFIG,
        args: Sequence[str] = (),
        listen: str = "127.0.0.1",
        defer_listen: bool = False,
        nofile: int | None = None,
    ) -> EndpointProcess:
        ep = EndpointProcess(tmp_path, config, args, listen, defer_listen, nofile)
        started.append(ep)
        return ep

    yield start
    failed = getattr(request.node, "rep_call", None)
    for ep in started:
        if failed is not None and failed.failed:
            print(f"--- endpoint log ({' '.join(ep.argv)}) ---\n{ep.output()}")
        ep.stop()


class Stoppable(Protocol):
    def stop(self) -> None: ...


@pytest.fixture
def procs() -> Iterator[list[Stoppable]]:
    """The processes a test starts (appended by the test), stopped at its end, the last
    first, also when it fails."""
    started: list[Stoppable] = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture(scope="module")
def shared_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    ep = EndpointProcess(tmp_path_factory.mktemp("endpoint"), args=["--reconnect-delay", "0.05"])
    yield ep
    ep.stop()


@pytest.fixture
def controller(shared_endpoint: EndpointProcess) -> Iterator[RawController]:
    """A started (IDLE) session on the shared endpoint; closed (EOF) after the test."""
    ctl = shared_endpoint.accept()
    ctl.start()
    yield ctl
    ctl.close()
    shared_endpoint.controllers.remove(ctl)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def readline(stream: Any) -> str:
    """One line from a child's pipe, read a byte at a time: nothing is left in a Python
    buffer, so a later `communicate()` gets the rest whole."""
    out = bytearray()
    while not out.endswith(b"\n"):
        byte = os.read(stream.fileno(), 1)
        if not byte:
            break
        out += byte
    return out.decode()
