"""BusyPollUs on a real (private, not the global) EPollReactor: pins the private Twisted
details `packetlab.endpoint.busypoll` relies on, so a Twisted upgrade that changes them
fails here rather than silently turning busy-polling off."""

from __future__ import annotations

import inspect
import resource
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor

from packetlab.controller.local import twistd_command
from packetlab.endpoint.busypoll import SpinningPoller, install


class Reader(FileDescriptor):
    def __init__(self, sock: socket.socket, reactor: EPollReactor) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.got = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.got += self.sock.recv(4096)


@pytest.fixture
def world() -> Iterator[tuple[EPollReactor, Reader, socket.socket]]:
    reactor = EPollReactor()
    a, b = socket.socketpair()
    reader = Reader(a, reactor)
    reactor.addReader(reader)
    try:
        yield reactor, reader, b
    finally:
        reactor.removeAll()
        reactor.waker.connectionLost(None)
        reactor._poller.close()
        a.close()
        b.close()


def test_pinned_twisted_attributes() -> None:
    """doPoll polls `self._poller` (an epoll object) with (timeout s, maxevents)."""
    reactor = EPollReactor()
    try:
        assert isinstance(reactor._poller, select.epoll)
        assert "self._poller.poll(timeout, len(self._selectables))" in inspect.getsource(
            EPollReactor.doPoll
        )
    finally:
        reactor.waker.connectionLost(None)
        reactor._poller.close()


def test_the_reactor_spins_after_io_and_blocks_when_idle(world: tuple) -> None:
    reactor, reader, peer = world
    poller = install(reactor, 200_000)  # 200 ms: long enough to be sure on a loaded host
    assert isinstance(poller, SpinningPoller) and reactor._poller is poller
    peer.send(b"one")
    reactor.doIteration(1.0)
    assert reader.got == b"one"
    peer.send(b"two")  # arrives before the next turn: found while spinning
    reactor.doIteration(1.0)
    assert reader.got == b"onetwo"
    assert poller.spins == 1
    # No I/O for the whole window: it spins 200 ms, then blocks for the rest.
    reactor.doIteration(0.3)
    assert poller.spins == 1
    # Idle now: the next turn blocks at once and burns (almost) no CPU.
    before = resource.getrusage(resource.RUSAGE_SELF)
    reactor.doIteration(0.2)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.05, f"an idle turn used {cpu:.3f} s of CPU"


def test_install_zero_leaves_the_reactor_alone(world: tuple) -> None:
    reactor, _, _ = world
    epoll = reactor._poller
    assert install(reactor, 0) is None
    assert reactor._poller is epoll


def test_twistd_with_another_reactor_says_so_in_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("BusyPollUs 200\n")
    got = subprocess.run(
        [*twistd_command(), "-n", "--reactor=poll", "--pidfile=", "pktendpoint", "-c", str(conf),
         "--insecure-plaintext", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert got.returncode == 1
    last = (got.stdout + got.stderr).strip().splitlines()[-1]
    assert last.endswith("BusyPollUs needs Twisted's epoll reactor; this one is PollReactor "
                         "(run twistd with --reactor=epoll, or set BusyPollUs 0)")  # fmt: skip
    assert "Traceback" not in got.stderr


def test_the_endpoint_busy_polls_when_configured(tmp_path: Path) -> None:
    conf, log = tmp_path / "endpt.conf", tmp_path / "endpoint.log"
    conf.write_text("BusyPollUs 150\n")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint", "-c",
             str(conf), "--insecure-plaintext", f"127.0.0.1:{port}"],
            cwd=tmp_path,
        )  # fmt: skip
        try:
            conn, _ = listener.accept()  # the endpoint came up and connected
            conn.close()
            assert "busy-poll: 150 µs after each reactor turn with I/O" in log.read_text()
        finally:
            proc.terminate()
            proc.wait(30)
