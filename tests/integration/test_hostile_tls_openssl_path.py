"""A KeyUpdate flood against a real ``twistd pktendpoint`` on the pyOpenSSL record path
(`PACKETLAB_TLS_RECORDS=openssl`; session 20, tlsbp20). OpenSSL answers each KeyUpdate
with update_requested at once; a controller that sends them (a byte of an mwrite after
every 31, OpenSSL's own limit being 32 in a row) and reads nothing grew the endpoint
without bound (+18.5 MiB for 930,000). Now the endpoint stops reading from it once 16 KiB
of its answers wait unsent (`packetlab.tls.backlog`): the controller's writes stall, the
endpoint's RSS stays flat, and once the controller reads, the link serves on.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procstat import sample
from record_controller import RecordSocket
from test_hostile_tls_records import RSS_BOUND_KIB, World, warmed

from packetlab import wire
from packetlab.tls import records as record_layer
from packetlab.tls.records import MAX_KEY_UPDATES
from packetlab.wire import vmem

CYCLES = 30_000  # 31 KeyUpdates and a byte of data each: 930,000 KeyUpdates at most
BATCH = 100
STALL = 3.0  # seconds without progress: the endpoint has stopped reading


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("PACKETLAB_TLS_RECORDS", "openssl")
    w = World(tmp_path)
    # Small buffers on the controller's side, so the stall comes after fewer KeyUpdates.
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        w.ctl.listener.setsockopt(socket.SOL_SOCKET, opt, 32 * 1024)
    with warmed(w) as w:
        yield w


def push(s: RecordSocket, data: bytes, *, read: bool) -> int:
    """Write `data` without blocking; with `read`, read (and open) what the endpoint sent
    meanwhile. The bytes written: fewer when nothing moved for `STALL` seconds."""
    sock = s.sock
    sent, last = 0, time.monotonic()
    sock.setblocking(False)
    try:
        while sent < len(data):
            if read:
                drain(s)
            try:
                n = sock.send(data[sent : sent + (1 << 16)])
            except BlockingIOError:
                if time.monotonic() - last > STALL:
                    break
                select.select([sock] if read else [], [sock], [], 0.1)
                continue
            sent += n
            last = time.monotonic()
    finally:
        sock.settimeout(20)
    s.raw_out += sent
    return sent


def drain(s: RecordSocket) -> None:
    while True:
        try:
            raw = s.sock.recv(1 << 20)
        except BlockingIOError:
            return
        assert raw, "the endpoint closed the link"
        got = s.records.receive(raw)
        s.other_records += got.records - len(got.chunks)
        assert not got.data and not got.out


def test_an_unread_keyupdate_flood_stalls_the_controller_not_the_endpoints_memory(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint answers each KeyUpdate (OpenSSL): our controller reads them all in a
    # row, past the limit its own record layer would enforce (not what is tested here).
    monkeypatch.setattr(record_layer, "MAX_KEY_UPDATES", 1 << 40)
    c, s = world.session()
    s.sendall(b"\x29" + (4 + CYCLES).to_bytes(3, "big") + vmem.SKT_BASE.to_bytes(4, "big"))
    records = s.records

    def cycle() -> bytes:  # (each KeyUpdate moves the write keys on)
        updates = b"".join(records.key_update(request=True) for _ in range(MAX_KEY_UPDATES - 1))
        return updates + records.write.seal(b"\x00")

    done, rest = 0, b""
    while done < CYCLES:
        batch = b"".join(cycle() for _ in range(BATCH))
        done += BATCH
        sent = push(s, batch, read=False)
        if sent < len(batch):
            rest = batch[sent:]
            break
    assert rest, f"the endpoint read all {done * (MAX_KEY_UPDATES - 1):,} KeyUpdates"
    assert world.base is not None
    held = sample(world.ep.proc.pid)
    assert held.rss_kib - world.base.rss_kib <= RSS_BOUND_KIB, (world.base, held)
    # The controller reads at last: the endpoint reads again, and the link serves on.
    assert push(s, rest, read=True) == len(rest)
    s.sendall(b"\x00" * (CYCLES - done))  # the rest of the mwrite
    assert c.response(timeout=60) == wire.Result(0)
    assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"  # both sides' keys agree
    assert s.other_records >= done * (MAX_KEY_UPDATES - 1)  # an answer each (OpenSSL)
    c.close()
    world.check()
    log = world.ep.output()
    assert "unread for" not in log, log[-3000:]
