"""A hostile controller below the frame layer, against a real ``twistd pktendpoint`` over
TLS 1.3 (session 20, hard20): the controller writes its own records
(`record_controller.RecordController`) — a message cut into a record per byte, hundreds
of messages in one record, a 1 MiB nsend trickled a byte per record, KeyUpdate floods,
data after close_notify, a half-close.

Each case checks the spec's answer byte for byte, then that the endpoint is alive, logged
no traceback, and holds no more descriptors and at most `RSS_BOUND_KIB` more memory.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import RawController
from procstat import Sample, sample, settle
from record_controller import RecordController, RecordSocket
from tls_world import TLSEndpoint, pktlab_init

from packetlab import wire
from packetlab.tls.records import MAX_KEY_UPDATES, UNEXPECTED_MESSAGE, PeerAlert
from packetlab.wire import vmem

RSS_BOUND_KIB = 16 * 1024
LO = b"\x7f\x00\x00\x01"
HOSTID = wire.Mread(addr=vmem.HOSTID.addr, len=4)


class World:
    def __init__(self, tmp: Path) -> None:
        home = pktlab_init(tmp / "home")
        self.ctl = RecordController(home)
        self.ep = TLSEndpoint(home, self.ctl.address, tmp)
        self.base: Sample | None = None

    def session(self) -> tuple[RawController, RecordSocket]:
        c = self.ctl.accept()
        c.start()
        assert isinstance(c.sock, RecordSocket)
        return c, c.sock

    def served(self) -> Sample:
        """A fresh session answers; then the endpoint's figures (descriptors settled)."""
        c, _ = self.session()
        assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"
        pid = self.ep.proc.pid
        s = settle(pid, fds=self.base.fds, seconds=10) if self.base else sample(pid)
        c.close()
        return s

    def check(self) -> None:
        assert self.ep.proc.poll() is None, self.ep.output()[-3000:]
        after = self.served()
        assert self.base is not None
        assert after.fds <= self.base.fds, (self.base, after)
        assert after.rss_kib - self.base.rss_kib <= RSS_BOUND_KIB, (self.base, after)
        log = self.ep.output()
        assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]


@contextmanager
def warmed(w: World) -> Iterator[World]:
    """`w` after a first session (its imports and caches) with `base` taken; stopped
    after."""
    try:
        c, _ = w.session()
        c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))
        c.close()
        w.base = w.served()
        yield w
    finally:
        w.ep.stop()
        w.ctl.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with warmed(World(tmp_path)) as w:
        yield w


def test_messages_cut_at_every_byte_and_packed_in_one_record(world: World) -> None:
    c, s = world.session()
    frame = wire.encode(HOSTID)
    s.send_records(frame * 3, 1)  # every byte its own record, across frame boundaries
    for size in (2, 3, 5, 7):  # records cutting frames at every offset
        s.send_records(frame * size, size)
    assert [c.response() for _ in range(3 + 2 + 3 + 5 + 7)] == [
        wire.Mdata(HOSTID.addr, b"pkte")
    ] * 20
    s.sendall(frame * 1000)  # 1,000 requests in one 10 KB record
    assert [c.response() for _ in range(1000)] == [wire.Mdata(HOSTID.addr, b"pkte")] * 1000
    c.close()
    world.check()


def test_a_large_nsend_trickled_a_byte_per_record(world: World) -> None:
    """Slowloris over TLS: 64 KiB of nsend a byte per record (~22 bytes of TLS each) is
    answered once it is whole, and the link serves on."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(10)
    try:
        c, s = world.session()
        c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 20, laddr=LO, lport=0))
        data = bytes(range(256)) * 255
        send = wire.Nsend(
            sktid=1, family=4, proto=17, time=0, tag=9, data=data, raddr=LO,
            rport=sink.getsockname()[1],
        )  # fmt: skip
        frame = wire.encode(send)
        for i in range(0, len(frame), 4096):  # 4 KiB of one-byte records per write
            s.send_records(frame[i : i + 4096], 1)
        assert c.response(timeout=60) == wire.Result(0)
        assert sink.recv(70000) == data
        assert c.notification(wire.Ntag).tag == 9
        assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"
        c.close()
    finally:
        sink.close()
    world.check()


def test_a_keyupdate_flood_while_reading_nothing_gets_one_answer(world: World) -> None:
    """32 KeyUpdates (update_requested) then one byte of a 64 KiB mwrite, 2,000 times,
    the controller reading nothing. Each KeyUpdate was answered at once: 64,000 records
    queued for a controller that need not read them (800,000 grew the endpoint 19 MB).
    One answer now; the one owed goes before the mwrite's answer."""
    c, s = world.session()
    cycles = 2000
    s.sendall(b"\x29" + (4 + cycles).to_bytes(3, "big") + vmem.SKT_BASE.to_bytes(4, "big"))
    records = s.records

    def cycle() -> bytes:  # (each KeyUpdate moves the write keys on)
        updates = b"".join(records.key_update(request=True) for _ in range(MAX_KEY_UPDATES))
        return updates + records.write.seal(b"\x00")

    for _ in range(cycles // 100):
        s.write_raw(b"".join(cycle() for _ in range(100)))
    assert c.response(timeout=60) == wire.Result(0)
    assert s.other_records == 2, s.other_records  # was 64,000
    assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"  # both sides' keys agree
    c.close()
    world.check()


def test_keyupdates_without_data_past_the_limit_end_the_link(world: World) -> None:
    c, s = world.session()
    s.key_updates(MAX_KEY_UPDATES + 1, request=True)
    with pytest.raises(PeerAlert) as alert:
        c.recv(10)
    assert alert.value.description == UNEXPECTED_MESSAGE  # readable: was bad_record_mac
    c.close()
    log = world.ep.wait_log("KeyUpdates without application data")
    assert log.count("KeyUpdates without application data") == 1
    world.check()


def read_to_the_end(c: RawController) -> list[wire.Message]:
    got = []
    with pytest.raises(EOFError):
        while True:
            got.append(c.recv(10))
    return got


def test_requests_then_close_notify_in_one_write_are_answered(world: World) -> None:
    """The answers used to be lost: the requests reached the session after the link was
    shut by the close_notify that followed them in the same read."""
    c, s = world.session()
    s.write_raw(s.records.seal(wire.encode(HOSTID) * 3) + s.records.close_notify())
    assert read_to_the_end(c) == [wire.Mdata(HOSTID.addr, b"pkte")] * 3
    assert s.records.closed  # then the endpoint's close_notify
    c.close()
    world.check()


def test_close_notify_after_more_requests_than_the_link_buffers(world: World) -> None:
    """TLS 1.3 closes one side at a time (RFC 8446 §6.1): 400 pipelined 64 KiB mreads and
    a close_notify, read after a while, get 400 answers (126 before: the endpoint
    answered the close_notify with its own at once, dropping what was queued)."""
    c, s = world.session()
    big = wire.Mread(addr=vmem.SYS_BASE, len=65535)
    s.sendall(wire.encode(big) * 200)
    s.sendall(wire.encode(big) * 200)
    s.close_notify()
    time.sleep(0.5)  # the endpoint reads the close_notify while answers wait (not a sync)
    got = read_to_the_end(c)
    assert len(got) == 400 and all(isinstance(m, wire.Mdata) for m in got)
    assert s.records.closed
    c.close()
    world.check()


def test_bytes_after_close_notify_are_ignored(world: World) -> None:
    c, s = world.session()
    s.write_raw(s.records.seal(wire.encode(HOSTID)) + s.records.close_notify())
    try:
        s.sendall(wire.encode(HOSTID))  # after close_notify: not data any more (§6.1)
        s.write_raw(b"\x17\x03\x03\x00\x20" + bytes(32))  # nor garbage
    except OSError:
        pass  # the endpoint has closed already
    try:
        assert read_to_the_end(c) in ([], [wire.Mdata(HOSTID.addr, b"pkte")])
    except ConnectionResetError:
        pass  # its close met our late bytes (the controller broke TLS first)
    c.close()
    world.check()


def test_a_half_close_gets_every_answer_then_the_close(world: World) -> None:
    c, s = world.session()
    s.sendall(wire.encode(HOSTID) * 50)
    s.sock.shutdown(socket.SHUT_WR)  # FIN without close_notify: a truncation
    got = []
    deadline = time.monotonic() + 10
    with pytest.raises(EOFError):
        while time.monotonic() < deadline:
            got.append(c.recv(10))
    assert got == [wire.Mdata(HOSTID.addr, b"pkte")] * 50
    c.close()
    world.check()
