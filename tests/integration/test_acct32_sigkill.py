"""SIGKILL of a real `twistd pktendpoint` at seeded random moments while a controller
sends UDP, TCP and raw packets under certificate limits (acct32). After each kill the
accounting database opens cleanly (integrity_check ok), what left the endpoint (counted
by the receiving sockets) is never more than what the database says was debited, the
debited figures never go back, and a restarted endpoint continues from them: the last,
clean session can send exactly what is left, never more (limits not reset, not doubled).

ACCT32_KILLS=30 runs 30 kills (the default, 8, keeps the test under a minute)."""

from __future__ import annotations

import os
import random
import socket
import sqlite3
import threading
from pathlib import Path

from conftest import RawController
from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init

from packetlab import wire
from packetlab.endpoint.limits import PKT_CHUNK_MAX, QUOTA_CHUNK
from packetlab.measure.packets import ip_packet
from packetlab.measure.packets_transport import udp_segment
from packetlab.ppks import CertLimits
from packetlab.wire.constants import Proto, Status

LO = socket.inet_aton("127.0.0.1")
PKT = 700
KILLS = int(os.environ.get("ACCT32_KILLS", "8"))
SEED = 3232
ROUND = 3000  # nsends at most per round (3000-10000/s here: most kills land mid-send)


class Sinks:
    """A UDP socket (UDP and raw datagrams land here) and a TCP listener, each counting
    what it receives in a thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pkts = 0  # UDP + raw datagrams
        self.bytes = 0  # their payloads + TCP stream bytes
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.udp.settimeout(0.2)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(64)
        self.tcp.settimeout(0.2)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._udp), threading.Thread(target=self._tcp)]
        for t in self.threads:
            t.start()

    def _count(self, pkts: int, n: int) -> None:
        with self.lock:
            self.pkts += pkts
            self.bytes += n

    def _udp(self) -> None:
        while not self.stop.is_set():
            try:
                self._count(1, len(self.udp.recv(65536)))
            except TimeoutError:
                pass

    def _tcp(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._stream, args=(conn,), daemon=True).start()

    def _stream(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self._count(0, len(data))

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.udp.close()
        self.tcp.close()


def debited(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db, timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(con.execute("SELECT counter, max(used) FROM rlim GROUP BY counter"))
    finally:
        con.close()


def open_socket(c: RawController, kind: str, sinks: Sinks) -> None:
    if kind == "udp":
        c.ok(wire.Nopen(1, 4, int(Proto.UDP), 65536, LO, 0))
    elif kind == "tcp":
        port = sinks.tcp.getsockname()[1]
        c.ok(wire.Nopen(1, 4, int(Proto.TCP), 65536, LO, 0, LO, port), timeout=15)
    else:
        c.ok(wire.Nopen(1, 4, int(Proto.RAW), 65536, LO))


def nsend(kind: str, port: int) -> wire.Nsend:
    payload = b"k" * PKT
    if kind == "udp":
        return wire.Nsend(1, 4, int(Proto.UDP), 0, 0, payload, LO, port)
    if kind == "tcp":
        return wire.Nsend(1, 4, int(Proto.TCP), 0, 0, payload)
    dgram = udp_segment("127.0.0.1", "127.0.0.1", 9, port, payload[:-28])
    return wire.Nsend(1, 4, int(Proto.RAW), 0, 0, ip_packet("127.0.0.1", "127.0.0.1", 17, dgram))


def send_until_dead(c: RawController, msg: wire.Nsend) -> int:
    """Pipelined nsends (a few in flight) until the endpoint dies, at most ROUND of them
    (then it waits for the kill); returns the successes."""
    ok = 0
    try:
        for _ in range(ROUND // 4):
            c.send(msg, msg, msg, msg)
            for _ in range(4):
                r = c.response(timeout=15)
                assert isinstance(r, wire.Result), r
                assert r.errid in (0, int(Status.ESKTPKTDENY)), r
                ok += r.errid == 0
        c.recv(timeout=15)  # EOFError when the kill comes
    except (EOFError, ConnectionError, OSError):
        return ok
    raise AssertionError("the endpoint was not killed")


def _status(c: RawController) -> int:
    r = c.response(timeout=15)
    assert isinstance(r, wire.Result), r
    return r.errid


# Not `serial` (pass 1 since session 35): it times nothing. Its claims hold at any
# moment of a kill; load only moves the moments (still seeded, still 0.02-0.4 s after the
# session starts) and slows the sends (further from the burst window the last session
# must not meet first).
def test_sigkill_at_random_moments_never_sends_undebited(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    home = pktlab_init(tmp_path / "home")
    conf = home.root / "endpt.conf"
    conf.write_text(conf.read_text() + "\nTransprotoSup raw,tcp,udp\n")
    db = home.root / "endpt.rlim.sqlite3"
    # Each round spends at most ROUND and loses at most one reservation (up to
    # PKT_CHUNK_MAX packets, typically far fewer): the limit lasts through the kills and
    # the last session still has some to spend.
    limit_pkts = (ROUND + 600) * KILLS
    limits = CertLimits(max_send_pkt=limit_pkts, max_send_byte=limit_pkts * PKT)
    chain = controller_chain(home, tmp_path / "c", limits=limits)
    sinks = Sinks()
    port = sinks.udp.getsockname()[1]
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    eps: list[TLSEndpoint] = []
    before = {"max_send_pkt": 0, "max_send_byte": 0}
    sent = 0
    try:
        for i in range(KILLS):
            kind = ("udp", "tcp", "raw")[i % 3]
            ep = TLSEndpoint(home, ctl.address, tmp_path)
            eps.append(ep)
            c = ctl.accept(timeout=60)
            c.start()
            open_socket(c, kind, sinks)
            killer = threading.Timer(rng.uniform(0.02, 0.4), ep.kill9)
            killer.start()
            sent += send_until_dead(c, nsend(kind, port))
            killer.join()
            c.close()
            got = debited(db)
            with sinks.lock:
                pkts, nbytes = sinks.pkts, sinks.bytes
            # Nothing leaves the host before it is debited.
            assert pkts <= got["max_send_pkt"] and nbytes <= got["max_send_byte"], (i, got)
            # A kill never gives back: the debited figures only grow, by at most what was
            # sent this round and one unspent reservation per counter.
            assert got["max_send_pkt"] >= before["max_send_pkt"]
            assert got["max_send_byte"] >= before["max_send_byte"]
            assert got["max_send_pkt"] <= sent + KILLS * PKT_CHUNK_MAX
            assert got["max_send_byte"] <= sent * PKT + KILLS * 2 * QUOTA_CHUNK
            before = got
            print(f"kill {i} {kind}: sent {sent} received {pkts} pkt {nbytes} B debited {got}")
        # A clean session on a restarted endpoint spends exactly what is left.
        left = limit_pkts - before["max_send_pkt"]
        ep = TLSEndpoint(home, ctl.address, tmp_path)
        eps.append(ep)
        c = ctl.accept(timeout=60)
        c.start()
        open_socket(c, "udp", sinks)
        statuses: list[int] = []
        # Small datagrams: the built-in burst window (10 Mb/s over 10 s, 17857 of PKT)
        # must not be what refuses first.
        msg = wire.Nsend(1, 4, int(Proto.UDP), 0, 0, b"s" * 64, LO, port)
        while not statuses or statuses[-1] == 0:
            c.send(*[msg] * 16)
            statuses += [_status(c) for _ in range(16)]
        c.close()
        last = statuses.count(0)
        assert statuses.index(int(Status.ESKTPKTDENY)) == last  # none after the first refusal
        ep.wait_log("session over")
        print(f"clean session: left {left} sent {last}")
        assert last == left  # not reset (more), not doubled (less)
        got = debited(db)
        assert got["max_send_pkt"] == limit_pkts
    finally:
        for e in eps:
            e.stop()
        ctl.close()
        sinks.close()
    out = "".join(e.output() for e in eps)
    assert "Traceback" not in out
