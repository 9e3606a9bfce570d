"""Reflexes on a real `twistd pktendpoint` over TLS (docs/reflexes.md): the UDP responder
answers datagrams at the endpoint, the certificate decides which reflexes may run, an
operator can forbid them, and a reference-like endpoint (zeros in CAPS) is never sent
anything private."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from wasmtime import wat2wasm

from packetlab.cli.init import init_home
from packetlab.controller import EndpointSession, RequestFailed
from packetlab.controller.local import run_with_local_endpoint
from packetlab.controller.reflexes import ReflexUnsupported
from packetlab.monitor.build import build, find_clang
from packetlab.ppks import PktlabHome
from packetlab.reflex import abi
from packetlab.reflex import wire as rw
from packetlab.reflex.template import reflex_wat
from packetlab.wire import Ndata, Ntag
from packetlab.wire.constants import Status

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
TRAP = bytes(wat2wasm(reflex_wat("(unreachable)")))

pytestmark = pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")


@pytest.fixture(scope="module")
def responder() -> bytes:
    return build(REPO / "examples" / "reflexes" / "udp_responder.c")


def home_with(tmp: Path, *reflexes: bytes, conf: str = "") -> PktlabHome:
    home = PktlabHome.at(tmp / "home")
    init_home(home, reflexes=[abi.digest(r) for r in reflexes])
    if conf:
        path = home.root / "endpt.conf"
        path.write_text(path.read_text() + conf)
    return home


def checksum(data: bytes) -> bytes:
    s = 0
    for b in data[4:]:
        s = (s * 31 + b) & 0xFFFFFFFF
    return struct.pack(">I", s) + data[4:]


async def lport_of(session: EndpointSession, sktid: int) -> int:
    data = await session.mread(0x20000000 + sktid * 0x400 + 0x30, 2)
    return int.from_bytes(data, "big")


async def poll_recv(sock: socket.socket, tries: int = 200) -> bytes:
    for _ in range(tries):
        try:
            return sock.recv(2048)
        except BlockingIOError:
            await task.deferLater(reactor, 0.01)
    raise AssertionError("no reply from the reflex")


@pytest_twisted.ensureDeferred
async def test_udp_responder_over_tls(tmp_path: Path, responder: bytes) -> None:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)

    async def experiment(session: EndpointSession) -> Any:
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        port = await lport_of(session, 1)
        reflex = await session.attach_reflex(sock, responder, b"\x01")  # and pass on
        replies = []
        for i in range(5):
            payload = bytes(4) + f"probe {i}".encode()
            client.sendto(payload, ("127.0.0.1", port))
            replies.append((payload, await poll_recv(client)))
        notes = [await sock.get(5.0) for _ in range(10)]
        status = await reflex.status()
        state = await reflex.state(0, 4)
        await reflex.detach()
        client.sendto(b"after", ("127.0.0.1", port))
        after = await sock.get(5.0)
        return replies, notes, status, state, after

    replies, notes, status, state, after = await run_with_local_endpoint(
        reactor, experiment, home=home_with(tmp_path, responder), timeout=TIMEOUT
    )
    client.close()
    for payload, reply in replies:
        assert reply == checksum(payload)
    # Each probe's ndata, then its reply's ntag: cause before effect (before session 31,
    # order31, the ntag came first, 5 of 5).
    assert [type(n) for n in notes] == [Ndata, Ntag] * 5
    ndata = [n for n in notes if isinstance(n, Ndata)]
    ntags = [n for n in notes if isinstance(n, Ntag)]
    assert [n.data for n in ndata] == [p for p, _ in replies]
    for nd, nt in zip(ndata, ntags, strict=True):
        assert nt.tag == 1 and nt.time >= nd.time  # kernel RX stamp, then the reply's TX
    assert (status.stat, status.runs, status.sent, status.denied, status.passed) == (1, 5, 5, 0, 5)
    assert state == struct.pack(">I", 5)
    assert isinstance(after, Ndata) and after.data == b"after"  # detached: plain ndata


# 100 sends back to the sender per datagram: 64 leave, 36 are answered -1 in the reflex
FLOOD = bytes(
    wat2wasm(
        reflex_wat(
            """(local $i i32)
            (block $done (loop $l
              (br_if $done (i32.ge_u (local.get $i) (i32.const 100)))
              (drop (call $reflex_send (local.get $sktid) (local.get $data) (local.get $len)
                (local.get $raddr) (local.get $raddrlen) (local.get $rport) (i64.const 0)
                (i32.const 0)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $l)))
            (i32.const 0)"""
        )
    )
)


@pytest_twisted.ensureDeferred
async def test_sends_past_64_are_in_the_status(tmp_path: Path) -> None:
    """A real endpoint showed `sent=64, denied=0` for the 100 sends asked: the 36 past the
    per-call bound were counted nowhere (session 31). Now `status.refused` has them."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)

    async def experiment(session: EndpointSession) -> Any:
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        reflex = await session.attach_reflex(sock, FLOOD)
        client.sendto(b"x", ("127.0.0.1", await lport_of(session, 1)))
        got = [await poll_recv(client) for _ in range(abi.MAX_EMITS)]
        status = await reflex.status()
        await reflex.detach()
        return got, status

    got, status = await run_with_local_endpoint(
        reactor, experiment, home=home_with(tmp_path, FLOOD), timeout=TIMEOUT
    )
    client.close()
    assert got == [b"x"] * 64
    assert (status.runs, status.sent, status.denied, status.refused) == (1, 64, 0, 36)


@pytest_twisted.ensureDeferred
async def test_trapping_reflex_is_detached_and_the_session_goes_on(tmp_path: Path) -> None:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))

    async def experiment(session: EndpointSession) -> Any:
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        port = await lport_of(session, 1)
        reflex = await session.attach_reflex(sock, TRAP)
        client.sendto(b"boom", ("127.0.0.1", port))
        det = await reflex.detached
        note = await sock.get(5.0)
        status = await session.reflex_status(1)
        return det, note, status

    det, note, status = await run_with_local_endpoint(
        reactor, experiment, home=home_with(tmp_path, TRAP), timeout=TIMEOUT
    )
    client.close()
    assert isinstance(det, rw.Detached) and det.reason == rw.STAT_CRASHED
    assert "unreachable" in det.text
    assert isinstance(note, Ndata) and note.data == b"boom"
    assert status.stat == rw.STAT_CRASHED


@pytest_twisted.ensureDeferred
async def test_the_certificate_decides(tmp_path: Path, responder: bytes) -> None:
    async def experiment(session: EndpointSession) -> Any:
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        try:
            await session.attach_reflex(sock, responder)
        except RequestFailed as e:
            return e.status
        return None

    status = await run_with_local_endpoint(
        reactor, experiment, home=home_with(tmp_path, TRAP), timeout=TIMEOUT
    )
    assert status == Status.ECRTBADHDAT


@pytest_twisted.ensureDeferred
async def test_operator_forbids_reflexes(tmp_path: Path, responder: bytes) -> None:
    async def experiment(session: EndpointSession) -> Any:
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        try:
            await session.attach_reflex(sock, responder)
        except ReflexUnsupported as e:
            return str(e)
        return None

    home = home_with(tmp_path, responder, conf="ReflexEnable 0\n")
    why = await run_with_local_endpoint(reactor, experiment, home=home, timeout=TIMEOUT)
    assert why is not None and "forbids" in why


def test_the_example_experiment_attaches_probes_and_detaches(
    tmp_path: Path, responder: bytes
) -> None:
    """examples/reflex_responder.py as docs/reflexes.md runs it (session 31: the page had
    the API's lines but no program that runs), in-process over TLS with a home whose
    certificate lists the reflex; and the hint when the home does not list it."""
    import subprocess
    import sys

    wasm = tmp_path / "udp_responder.wasm"
    wasm.write_bytes(responder)
    home = home_with(tmp_path, responder)
    cmd = [sys.executable, str(REPO / "examples" / "reflex_responder.py"), str(wasm)]
    ok = subprocess.run(
        [*cmd, "--home", str(home.root), "--count", "3"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    replies = [line for line in ok.stdout.splitlines() if ": reply " in line]
    assert len(replies) == 3
    assert "status: runs 3, sent 3, denied 0, passed 3, reports 0" in ok.stdout
    assert ok.stdout.rstrip().endswith("detached")
    other = PktlabHome.at(tmp_path / "other")
    init_home(other)  # lists no reflex
    refused = subprocess.run(
        [*cmd, "--home", str(other.root)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert refused.returncode == 1
    assert "(ECRTBADHDAT)" in refused.stderr and "pktlab init --reflex" in refused.stderr
