"""The C example mlets read the endpoint's side as libpktlab does (examples/mlets/pktframe.h):
a scripted endpoint on the other end of fd 0 (a socketpair, no manager) dribbles frames a
byte at a time (short reads), puts notifications between each request and its reply
(PROTOCOL.md §1.1: one FIFO), sends notification types nobody knows, a frame larger than
the mlet's buffer, and a reply before the ntag of its request. test_icmp_echo must lose
none of its own notifications, skip the rest, and print each reply with the RTT of the
endpoint's two stamps. Every request it writes is checked field by field (§1.2, §3.4)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO

from packetlab.measure import native
from packetlab.measure.replies import ReplyKind
from packetlab.wire.program import decode_ebpf

T0 = 1_800_000_000 * 10**9  # the endpoint's clock at the mread of TIME
SRC, DST = bytes([10, 0, 0, 1]), bytes([192, 0, 2, 1])
MS = 10**6


def compile_mlet(tmp: Path, name: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    exe = tmp / name
    subprocess.run([cc, "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O2", "-Wall", "-Wextra",
                    "-Werror", "-o", str(exe), str(REPO / f"examples/mlets/{name}.c")],
                   check=True, capture_output=True)  # fmt: skip
    return exe


@pytest.fixture(scope="module")
def icmp_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlet(tmp_path_factory.mktemp("mlet"), "test_icmp_echo")


@pytest.fixture(scope="module")
def traceroute(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_mlet(tmp_path_factory.mktemp("mlet"), "test_pktif_traceroute")


def frame(t: int, body: bytes) -> bytes:
    return struct.pack(">I", t << 24 | len(body)) + body


def cksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Endpoint:
    """The endpoint's end of the mlet's fd 0."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(10)

    def _exactly(self, n: int) -> bytes:
        got = b""
        while len(got) < n:
            chunk = self.sock.recv(n - len(got))
            assert chunk, f"mlet closed fd 0 ({len(got)} of {n} bytes)"
            got += chunk
        return got

    def request(self, want: int) -> bytes:
        (word,) = struct.unpack(">I", self._exactly(4))
        assert word >> 24 == want, f"type 0x{word >> 24:02x}, expected 0x{want:02x}"
        return self._exactly(word & 0xFFFFFF)

    def dribble(self, *frames: bytes) -> None:
        """One byte per send, so the mlet reads a frame in many short reads."""
        for b in b"".join(frames):
            self.sock.send(bytes([b]))
            time.sleep(0.0002)

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def clock(self) -> None:
        """The mlet's first request, an mread of TIME, answered with T0."""
        self.request(0x28)
        self.send(frame(0x41, struct.pack(">IQ", 0x10010000, T0)))


def spawn(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Endpoint]:
    """The mlet `argv` on one end of a socketpair as its fd 0; the other end is ours."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or {})  # fmt: skip
    theirs.close()
    return proc, Endpoint(ours)


def ntag(sktid: int, tag: int, t: int) -> bytes:
    return frame(0x60, struct.pack(">BHQ", sktid, tag, t))


def reply(seq: int, t: int, ident: int, src: bytes = DST) -> bytes:
    icmp = struct.pack(">BBHHH", 0, 0, 0, ident, seq) + bytes(range(0x10, 0x10 + 56))
    icmp = icmp[:2] + struct.pack(">H", cksum(icmp)) + icmp[4:]
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 7, 0, 62, 1, 0, src, SRC)
    return frame(0x62, struct.pack(">BBBQ", 1, 4, 0, t) + ip + icmp)


RESULT = frame(0x40, b"")
UNKNOWN = frame(0x6F, b"a notification type nobody defined")
NSTAT_OTHER = frame(0x61, struct.pack(">BBBQB", 9, 4, 6, T0, 3))  # another socket's


def test_icmp_echo_reads_interleaved_split_and_unknown_frames(icmp_echo: Path) -> None:
    proc, ep = spawn([str(icmp_echo), "192.0.2.1", "2", "1"], {"EPADDR": "192.0.2.7"})
    ident = proc.pid & 0xFFFF
    try:
        assert ep.request(0x28) == struct.pack(">IH", 0x10010000, 8)  # mread TIME
        ep.dribble(UNKNOWN, NSTAT_OTHER, frame(0x41, struct.pack(">IQ", 0x10010000, T0)))
        # nopen: sktid 1, IPv4, raw, rbufsz 64 KiB, laddr 0.0.0.0 (7 + 4 bytes, §1.2)
        assert ep.request(0x2A) == bytes([1, 4, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        ep.send(ntag(9, 5, T0), frame(0x7E, bytes(1_200_000)), RESULT)  # larger than its buffer
        assert ep.request(0x28) == struct.pack(">IH", 0x20000410, 16)  # socket 1's LADDR
        ep.dribble(frame(0x41, struct.pack(">I", 0x20000410) + SRC + bytes(12)))

        cap = ep.request(0x2D)
        assert cap[:3] == bytes([1, 4, 0])
        assert struct.unpack(">Q", cap[3:11])[0] == T0 + 101 * MS + 8000 * MS  # endtime
        insns = decode_ebpf(cap[11:])
        assert (insns[0].opcode, insns[0].dst, insns[0].src) == (0xBF, 6, 1)  # r6 = ctx
        assert [i.imm for i in insns if i.opcode == 0x55][-1] == ident  # the identifier
        ep.send(UNKNOWN, RESULT)

        for seq in (1, 2):
            s = ep.request(0x2C)
            sktid, fam, proto, when, tag = struct.unpack(">BBBQH", s[:13])
            assert (sktid, fam, proto, tag) == (1, 4, 0, seq)
            assert when == T0 + 100 * MS + (seq - 1) * MS  # scheduled: interval 1 ms
            ip, icmp = s[13:33], s[33:]
            assert ip[0] == 0x45 and ip[8] == 64 and ip[9] == 1, ip.hex()
            assert (ip[12:16], ip[16:20]) == (SRC, DST)
            assert len(icmp) == 64 and cksum(icmp) == 0  # a valid ICMP checksum
            typ, code, _, iid, iseq = struct.unpack(">BBHHH", icmp[:8])
            assert (typ, code, iid, iseq) == (8, 0, ident, seq)
            if seq == 2:  # notifications between this request and its result
                ep.dribble(
                    ntag(1, 1, T0 + 100 * MS + 5000),
                    reply(1, T0 + 100 * MS + 255_000, ident),
                    reply(1, T0 + 100 * MS + 300_000, ident ^ 1),  # not our identifier
                    reply(2, T0 + 100 * MS + 300_000, ident, src=SRC),  # nor from the target
                )
            ep.send(RESULT)
        # a reply before its request's ntag, then a duplicate
        ep.send(reply(2, T0 + 101 * MS + 500_000, ident), UNKNOWN, ntag(1, 2, T0 + 101 * MS),
                reply(1, T0 + 102 * MS, ident))  # fmt: skip
        assert ep.request(0x2B) == b"\x01"  # nclose
        ep.send(RESULT)
        out, err = proc.communicate(timeout=10)
    finally:
        ep.sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert proc.returncode == 0, (text, err)
    assert text.splitlines()[1:4] == [
        "64 bytes from 192.0.2.1: icmp_seq=1 ttl=62 time=0.250 ms",
        "64 bytes from 192.0.2.1: icmp_seq=2 ttl=62 time=0.500 ms",
        "64 bytes from 192.0.2.1: icmp_seq=1 ttl=62 (DUP!)",
    ], text
    assert "2 packets transmitted, 2 received, 0% packet loss" in text
    assert "rtt min/avg/max/mdev = 0.250/0.375/0.500/0.125 ms" in text
    assert b"skipping a frame of type 0x7e, 1200000 bytes" in err


@pytest.mark.parametrize(
    "args", [["300.1.1.1"], ["192.0.2.1", "0"], ["192.0.2.1", "2", "x"], ["a", "1", "1", "1"]]
)
def test_icmp_echo_bad_arguments_exit_2_before_any_request(
    icmp_echo: Path, args: list[str]
) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        done = subprocess.run([str(icmp_echo), *args], stdin=theirs.fileno(), capture_output=True,
                              timeout=10, env={})  # fmt: skip
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)  # nothing was sent
    assert done.returncode == 2 and done.stderr.startswith(b"usage: test_icmp_echo"), done


def test_icmp_echo_a_refused_request_is_named(icmp_echo: Path) -> None:
    """An endpoint without raw sockets answers nopen with an error: one clear line, exit 1."""
    proc, ep = spawn([str(icmp_echo), "192.0.2.1"])
    with ep.sock:
        ep.clock()
        ep.request(0x2A)
        ep.send(frame(0x40, struct.pack(">H", 0x35)))  # ESKTNOPROTO
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err == b"test_icmp_echo: nopen raw refused: ESKTNOPROTO (0x0035)\n"


def test_an_mlet_killed_by_eof_mid_frame_exits_1(icmp_echo: Path) -> None:
    proc, ep = spawn([str(icmp_echo), "192.0.2.1"])
    with ep.sock:
        ep.request(0x28)
        ep.send(frame(0x41, struct.pack(">IQ", 0x10010000, T0))[:7])
        ep.sock.shutdown(socket.SHUT_WR)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and b"EOF waiting for mdata of 0x10010000" in err, err


def test_icmp_echo_a_request_the_endpoint_could_not_send_is_not_counted(icmp_echo: Path) -> None:
    """An ntag with an errid (len 13, §1.2): that request was dropped, so it is neither
    transmitted nor lost, and the line names the status."""
    proc, ep = spawn([str(icmp_echo), "192.0.2.1", "2", "1"])
    with ep.sock:
        ident = proc.pid & 0xFFFF
        ep.clock()
        for req in (0x2A, 0x28, 0x2D, 0x2C, 0x2C):
            body = ep.request(req)
            ep.send(frame(0x41, body[:4] + SRC + bytes(12)) if req == 0x28 else RESULT)
        ep.send(frame(0x60, struct.pack(">BHQH", 1, 1, T0 + 100 * MS, 0x41)),
                ntag(1, 2, T0 + 101 * MS), reply(2, T0 + 101 * MS + 40_000, ident))  # fmt: skip
        waited = time.monotonic()
        ep.request(0x2B)  # at once: no reply to wait for (the linger is 3 s)
        waited = time.monotonic() - waited
        ep.send(RESULT)
        out, err = proc.communicate(timeout=10)
    assert waited < 2.0, waited
    assert proc.returncode == 0, (out, err)
    assert err == b"test_icmp_echo: icmp_seq=1 not sent: EPKTNOTSENT (0x0041)\n"
    assert b"icmp_seq=2 ttl=62 time=0.040 ms" in out
    assert b"1 packets transmitted, 1 received, 0% packet loss" in out


def icmp_error(kind: int, code: int, src: bytes, probe: bytes, t: int) -> bytes:
    """ndata: ICMP `kind`/`code` from `src` quoting the probe's IP header and 8 bytes."""
    icmp = struct.pack(">BBHI", kind, code, 0, 0) + probe[:28]
    icmp = icmp[:2] + struct.pack(">H", cksum(icmp)) + icmp[4:]
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 9, 0, 64, 1, 0, src, SRC)
    return frame(0x62, struct.pack(">BBBQ", 1, 4, 0, t) + ip + icmp)


@pytest.mark.parametrize("icmp", [False, True])
def test_traceroute_probes_and_answers_in_any_order(traceroute: Path, icmp: bool) -> None:
    """Each probe as Butskoy's (60 bytes, TTL n, port 33434 + n - 1, a valid UDP
    checksum; -I: an echo request, sequence n, a valid ICMP checksum); answers matched by
    the quoted probe whatever comes around them: another run's (source port or
    identifier), an answer before its ntag, one quoting a probe not sent yet; -I ends at
    the target's echo reply."""
    r1, r2 = bytes([10, 0, 0, 2]), bytes([10, 0, 1, 2])
    argv = [str(traceroute), *(["-I"] if icmp else []), "192.0.2.1", "9"]
    proc, ep = spawn(argv)
    with ep.sock:
        ep.clock()
        assert ep.request(0x2A) == bytes([1, 4, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        ep.send(RESULT)
        ep.request(0x28)
        ep.send(frame(0x41, struct.pack(">I", 0x20000410) + SRC + bytes(12)))
        cap = ep.request(0x2D)
        assert struct.unpack(">Q", cap[3:11])[0] == T0 + (9 * 3000 + 30000) * MS
        key = [i.imm for i in decode_ebpf(cap[11:]) if i.opcode == 0x55][-1]
        ep.send(RESULT)
        answers = [(r1, 11, 0), (r2, 11, 0), (DST, 0, 0) if icmp else (DST, 3, 3)]
        for ttl, (src, kind, code) in enumerate(answers, start=1):
            s = ep.request(0x2C)
            assert s[:3] == bytes([1, 4, 0]) and struct.unpack(">QH", s[3:13]) == (0, ttl)
            probe = s[13:]
            assert len(probe) == 60 and probe[0] == 0x45 and probe[8] == ttl
            assert (probe[9], probe[12:16], probe[16:20]) == (1 if icmp else 17, SRC, DST)
            sent = T0 + ttl * 10 * MS
            if icmp:
                typ, code_, _, ident, seq = struct.unpack(">BBHHH", probe[20:28])
                assert (typ, code_, ident, seq) == (8, 0, key, ttl) and cksum(probe[20:]) == 0
                other = probe[:24] + struct.pack(">H", key ^ 1) + probe[26:]
                later = probe[:26] + struct.pack(">H", ttl + 1) + probe[28:]
            else:
                sp, dp, ulen = struct.unpack(">HHH", probe[20:26])
                assert (sp, dp, ulen) == (key, 33434 + ttl - 1, 40)
                assert cksum(SRC + DST + struct.pack(">BBH", 0, 17, 40) + probe[20:]) == 0
                other = probe[:20] + struct.pack(">H", key ^ 1) + probe[22:]
                later = probe[:22] + struct.pack(">H", dp + 1) + probe[24:]
            ep.send(RESULT)
            answer = (
                reply(ttl, sent + ttl * 100_000, key)
                if kind == 0
                else icmp_error(kind, code, src, probe, sent + ttl * 100_000)
            )
            ep.send(
                icmp_error(11, 0, r2, other, sent + 1000),  # another traceroute's
                icmp_error(11, 0, r2, later, sent + 1000),  # quotes a probe not sent yet
                answer,  # before its ntag
                UNKNOWN,
                ntag(1, ttl, sent),
            )
        ep.request(0x2B)
        ep.send(RESULT)
        out, err = proc.communicate(timeout=10)
    assert (proc.returncode, err) == (0, b""), (out, err)
    assert out.decode().splitlines() == [
        "traceroute to 192.0.2.1 (192.0.2.1), 9 hops max, 60 byte packets",
        " 1  10.0.0.2  0.100 ms",
        " 2  10.0.1.2  0.200 ms",
        " 3  192.0.2.1  0.300 ms",
    ]
    assert native.parse_traceroute(out.decode(), method="icmp" if icmp else "udp").path() == [
        (1, "10.0.0.2"), (2, "10.0.1.2"), (3, "192.0.2.1")
    ]  # fmt: skip


def test_traceroute_marks_an_unreachable_from_a_router_and_stops(traceroute: Path) -> None:
    proc, ep = spawn([str(traceroute), "192.0.2.1"])
    with ep.sock:
        ep.clock()
        ep.request(0x2A)
        ep.send(RESULT)
        ep.request(0x28)
        ep.send(frame(0x41, struct.pack(">I", 0x20000410) + SRC + bytes(12)))
        ep.request(0x2D)
        ep.send(RESULT)
        probe = ep.request(0x2C)[13:]
        ep.send(RESULT, ntag(1, 1, T0), icmp_error(3, 1, bytes([10, 0, 0, 2]), probe, T0 + 50_000))
        ep.request(0x2B)
        ep.send(RESULT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1  # the target never answered
    assert out.decode().splitlines()[1:] == [" 1  10.0.0.2  0.050 ms !H"]
    [hop] = native.parse_traceroute(out.decode()).hops
    assert hop.reply_type == ReplyKind.DEST_UNREACHABLE and hop.code == 1, hop
