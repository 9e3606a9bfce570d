"""Conformance findings of the wire/session audit (PROTOCOL.md §1-§3, session 8): each test
names the rule it holds the endpoint to, and failed before its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ep_fakes import LO4, FakeClock, Rig, errids, tcp_open, udp_open, udp_send
from hypothesis import given, settings
from hypothesis import strategies as st

from packetlab import wire
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD
from packetlab.endpoint.checks import OpenGate, RequestGate
from packetlab.endpoint.config import parse_rate
from packetlab.endpoint.limits import admit
from packetlab.endpoint.memory import SKT_BLOCK_USED, render_block, system_image
from packetlab.endpoint.policy import PolicyGate
from packetlab.endpoint.session import Session
from packetlab.ppks import (
    Accounting,
    BurstRate,
    CertLimits,
    generate_private_key,
    issue_certificate,
)
from packetlab.ppks.limits import parse_valid_dest
from packetlab.wire import vmem
from packetlab.wire.constants import SocketState, Status

NS = 1_000_000_000


def gated(make_gate: Callable[[FakeClock], RequestGate]) -> Rig:
    """A started session whose gate `make_gate` builds on the rig's clock."""
    r = Rig()
    gate = make_gate(r.clock)
    r.session = Session(r.config, r.net, r.scheduler, r.clock, gate=gate)  # type: ignore[arg-type]
    r.frames.clear()
    r.session.outbox.attach(r.frames.append)
    return r.started()


def limits_gate(tmp_path: Path, limits: CertLimits, clock: FakeClock) -> RequestGate:
    eop, exper, xc = (generate_private_key() for _ in range(3))
    certs = [
        issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1),
        issue_certificate("exppriv", eop, exper, 0, 2**31 - 1, limits=limits),
    ]
    acct = Accounting(tmp_path / "rlim.sqlite3", clock=lambda: 1_800_000_000)
    return admit(certs, acct, clock)


# ---------------------------------------------------------------- §3.3, §4.5 burst rates


def test_refused_nsend_leaves_the_certificate_burst_window_alone(tmp_path: Path) -> None:
    """An nsend refused by the endpoint's own checks (here ESKTNOTOPEN) is never sent, so it
    must not count against max_burst_rate_byte: the send after it fits the window."""
    limits = CertLimits(max_burst_rate_byte=(BurstRate(100, NS),))
    r = gated(lambda clock: limits_gate(tmp_path, limits, clock))
    assert errids(r.send(udp_send(data=b"x" * 80))) == [Status.ESKTNOTOPEN]
    assert errids(r.send(udp_open())) == [0]
    assert errids(r.send(udp_send(data=b"x" * 80))) == [0]


def test_refused_nsend_leaves_the_operator_rate_cap_alone() -> None:
    r = gated(lambda clock: PolicyGate(OpenGate(), clock, parse_rate("1/1"), None))
    assert errids(r.send(udp_send())) == [Status.ESKTNOTOPEN]
    assert errids(r.send(udp_open())) == [0]
    assert errids(r.send(udp_send())) == [0]


# ------------------------------------------------------------ §2.4 held notifications


def test_held_ntags_keep_buffer_space_so_masking_cannot_grow_memory() -> None:
    """§2.4/§3.5: held notifications keep buffer space. A controller that masks NTAG and
    keeps sending must meet ESYSNOBUFS once the held ntags fill BufMax, not make the
    endpoint hold an ever longer list; unmasking releases every ntag and the space."""
    r = Rig(buf_max=4096).started()
    assert errids(r.send(udp_open())) == [0]
    mask = vmem.skt_addr(1, vmem.SKT_NOTIFMASK)
    assert errids(r.send(wire.Mwrite(addr=mask, data=b"\x00\x02"))) == [0]
    answers = []
    for tag in range(1, 201):
        answers += errids(r.send(udp_send(tag=tag, data=b"x")))
        r.run_timer_to(r.clock.now)  # it goes out; its ntag is held
    accepted = answers.count(0)
    assert Status.ESYSNOBUFS in answers, "200 masked ntags held, none refused"
    assert set(answers) == {0, Status.ESYSNOBUFS}
    assert r.session.budget.used <= 4096
    released = r.send(wire.Mwrite(addr=mask, data=b"\x00\x00"))
    ntags = [m for m in released if isinstance(m, wire.Ntag)]
    assert [m.tag for m in ntags] == [
        t for t, e in zip(range(1, 201), answers, strict=True) if e == 0
    ]
    assert len(ntags) == accepted and errids(released) == [0]
    assert r.session.budget.used == 0
    assert r.skt(1).rbufused == 0


# ----------------------------------------------------------------- §2 the memory map


def _model_read(r: Rig, addr: int, length: int) -> bytes:
    """§2.2 byte by byte: the system block, the used part of each open socket's block,
    zeros everywhere else (not the reference's all-zero read that starts in a gap, a
    documented difference)."""
    s = r.session
    image = bytearray(system_image(s.config))
    t, u = vmem.TIME.addr - vmem.SYS_BASE, vmem.BUFUSED.addr - vmem.SYS_BASE
    image[t : t + 8] = r.clock.now.to_bytes(8)
    image[u : u + 4] = s.budget.used.to_bytes(4)
    out = bytearray(length)
    for i in range(length):
        a = addr + i
        if vmem.SYS_BASE <= a < vmem.SYS_BASE + vmem.SYS_SPAN:
            out[i] = image[a - vmem.SYS_BASE]
        elif vmem.SKT_BASE <= a < vmem.SKT_BASE + vmem.SKT_SPAN:
            sktid, off = divmod(a - vmem.SKT_BASE, vmem.SKT_STRIDE)
            skt = s.sockets[sktid]
            if skt is not None and off < SKT_BLOCK_USED:
                out[i] = render_block(skt)[off]
    return bytes(out)


_NEAR = [
    vmem.SYS_BASE, vmem.SYS_BASE + vmem.SYS_SPAN, vmem.TIME.addr, vmem.BUFUSED.addr,
    vmem.SKT_BASE, vmem.SKT_BASE + vmem.SKT_SPAN, vmem.HOSTID.addr, (1 << 32) - 1,
    *(vmem.skt_addr(k, f) for k in (0, 1, 2, 3, 255) for f in vmem.SKT_WRITABLE),
    *(vmem.skt_addr(k, vmem.SKT_STAT) + SKT_BLOCK_USED for k in (1, 2, 255)),
]  # fmt: skip


@st.composite
def _span(draw: st.DrawFn, max_len: int) -> tuple[int, int]:
    base = draw(st.sampled_from(_NEAR) | st.integers(0, (1 << 32) - 1))
    length = draw(st.integers(1, 16) | st.integers(1, max_len))
    at = min(max(base + draw(st.integers(-40, 40)), 0), (1 << 32) - length)
    return at, length


def _rig_with_sockets() -> Rig:
    r = Rig().started()
    r.clock.step = 0
    assert errids(r.send(udp_open(1), tcp_open(2), udp_open(255))) == [0, 0, 0]
    r.session.tcp_error(r.skt(2), SocketState.RESET)  # a failed socket: writes ignored
    assert errids(r.send(tcp_open(3))) == [0]  # OPENING: writes taken
    for k in (1, 3, 255):  # no zero bytes at the blocks' edges: an off-by-one shows
        ctfl = bytes((k + i) % 255 + 1 for i in range(vmem.SKT_CTFL.size))
        assert errids(r.send(wire.Mwrite(addr=vmem.skt_addr(k, vmem.SKT_CTFL), data=ctfl))) == [0]
    return r


@settings(max_examples=120, deadline=None, database=None)
@given(span=_span(0xFFFF))
def test_mread_is_the_map_byte_for_byte(span: tuple[int, int]) -> None:
    r = _rig_with_sockets()
    addr, length = span
    (reply,) = r.send(wire.Mread(addr=addr, len=length))
    assert reply == wire.Mdata(addr=addr, data=_model_read(r, addr, length))


@settings(max_examples=120, deadline=None, database=None)
@given(span=_span(600), fill=st.integers(0, 255))
def test_mwrite_changes_only_writable_fields_of_open_sockets(
    span: tuple[int, int], fill: int
) -> None:
    """§2.1/§2.2: an mwrite answers SUCCESS and changes exactly the RW bytes it covers of
    sockets at OPENING or above (RBUFSZ, NSENDERR, NSENDERRTAG, NOTIFMASK, CTFL)."""
    r = _rig_with_sockets()
    addr, length = span
    before = {k: bytearray(render_block(s)) for k, s in enumerate(r.session.sockets) if s}
    system = r.session.memory.read(vmem.SYS_BASE, vmem.SYS_SPAN)  # read-only: the same after
    assert errids(r.send(wire.Mwrite(addr=addr, data=bytes([fill]) * length))) == [0]
    for k, block in before.items():
        skt = r.session.sockets[k]
        assert skt is not None
        if skt.state >= SocketState.OPENING:
            base = vmem.skt_addr(k, vmem.Region(0, 0))
            for f in vmem.SKT_WRITABLE:
                for off in range(f.addr, f.addr + f.size):
                    if addr <= base + off < addr + length:
                        block[off] = fill
        assert render_block(skt) == bytes(block), f"socket {k}"
    assert r.session.memory.read(vmem.SYS_BASE, vmem.SYS_SPAN) == system


def test_masked_ndrops_add_up_in_one_episode_instead_of_one_held_frame_each() -> None:
    """A datagram that does not fit is truncated, counted, and ends its drop episode with
    an ndrop (ours, docs/endpoint.md). With NDROP masked those ndrops were held one per
    datagram, at no cost: a peer's flood grew the endpoint's memory without bound. While
    NDROP is masked the drops now add up in one episode, reported once it is unmasked."""
    r = Rig().started()
    assert errids(r.send(udp_open(rbufsz=200))) == [0]
    mask = vmem.skt_addr(1, vmem.SKT_NOTIFMASK)
    assert errids(r.send(wire.Mwrite(addr=mask, data=b"\x00\x10"))) == [0]
    skt = r.skt(1)
    for _ in range(1000):
        r.session.udp_received(skt, bytes(500), r.clock.now, LO4, 53)
    got = r.new()
    assert [m.NAME for m in got] == ["ndata"] * 1000  # every datagram, truncated to fit
    assert len(skt.held) <= 1, f"{len(skt.held)} notifications held"
    released = r.send(wire.Mwrite(addr=mask, data=b"\x00\x00"))
    (ndrop,) = [m for m in released if isinstance(m, wire.Ndrop)]
    assert (ndrop.unitcnt, ndrop.bytecnt) == (1000, 1000 * (500 - 78))
    assert (skt.drop_pkts, skt.drop_bytes) == (1000, 1000 * (500 - 78))


class _RejectingMonitor(OpenGate):
    """What a monitor that rejects every received chunk with reason 7 tells the session
    (§8.3: nblock(monerrid=7) instead of the ndata)."""

    checks_ndata = True

    def check_ndata(
        self, skt: object, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        return 7


def test_held_nblocks_keep_buffer_space_like_the_ndata_they_replace() -> None:
    """With NBLOCK masked every rejected datagram left a held nblock at no cost (memory
    grew with the peer's traffic; the reference never even releases them). A held nblock
    now keeps RECV_BUF_OVERHEAD of the socket's budget, like the ndata it stands for; once
    that is used up a rejected datagram is dropped and counted, as one that does not fit."""
    r = gated(lambda clock: _RejectingMonitor())
    assert errids(r.send(udp_open(rbufsz=1000))) == [0]
    mask = vmem.skt_addr(1, vmem.SKT_NOTIFMASK)
    assert errids(r.send(wire.Mwrite(addr=mask, data=b"\x00\x20"))) == [0]
    skt = r.skt(1)
    for _ in range(100):
        r.session.udp_received(skt, b"x" * 10, r.clock.now, LO4, 53)
    assert r.new() == []
    assert len(skt.held) == 1000 // RECV_BUF_OVERHEAD, f"{len(skt.held)} nblocks held"
    assert skt.drop_pkts == 100 - len(skt.held)
    assert skt.rbufused == r.session.budget.used == len(skt.held) * RECV_BUF_OVERHEAD
    released = r.send(wire.Mwrite(addr=mask, data=b"\x00\x00"))
    assert [m.NAME for m in released].count("nblock") == 1000 // RECV_BUF_OVERHEAD
    assert {m.monerrid for m in released if isinstance(m, wire.Nblock)} == {7}
    assert skt.rbufused == r.session.budget.used == 0


def test_nblocks_waiting_for_a_slow_controller_keep_buffer_space_too() -> None:
    """Unmasked, an nblock went into the outbox at no cost: while the controller read
    slowly (its transport paused) every datagram a monitor rejected queued one more, so a
    peer's flood grew the endpoint's memory without bound (session 30, mon30: 68 -> 220
    MiB of RSS over 2,000,000 datagrams of 16 bytes; bounded without the monitor). Like
    the ndata it stands for, a queued nblock now keeps RECV_BUF_OVERHEAD of the socket's
    budget until it is written; past that a rejected datagram is dropped and counted."""
    r = gated(lambda clock: _RejectingMonitor())
    assert errids(r.send(udp_open(rbufsz=1000))) == [0]
    skt = r.skt(1)
    r.session.outbox.pause()  # the controller reads nothing for now
    for _ in range(100):
        r.session.udp_received(skt, b"x" * 10, r.clock.now, LO4, 53)
    assert r.new() == []
    queued = len(r.session.outbox)
    assert queued == 1000 // RECV_BUF_OVERHEAD, f"{queued} nblocks queued"
    assert skt.drop_pkts == 100 - queued
    assert skt.rbufused == r.session.budget.used == queued * RECV_BUF_OVERHEAD
    r.session.outbox.resume()
    *blocks, ndrop = r.new()  # the nblocks, then the drops' ndrop once there is room
    assert [m.NAME for m in blocks] == ["nblock"] * queued
    assert {m.monerrid for m in blocks} == {7}
    assert isinstance(ndrop, wire.Ndrop) and ndrop.unitcnt == 100 - queued
    assert skt.rbufused == r.session.budget.used == 0
    r.session.udp_received(skt, b"x" * 10, r.clock.now, LO4, 53)
    assert [m.NAME for m in r.new()] == ["nblock"]


# ---------------------------------------------------------- §3.3 order of nsend checks


def test_nsend_socket_errors_come_before_certificate_limits(tmp_path: Path) -> None:
    """§3.3: which checks an nsend gets depends on its socket (raw: source and valid_dest,
    UDP: valid_dest), so the socket is looked up first: an nsend on a FREE socket is
    ESKTNOTOPEN and one whose family/proto differ is ESKTNOMATCH, whatever its
    destination; ESKTPKTDENY is for a send the socket could make."""
    limits = CertLimits(valid_dest=parse_valid_dest("valid_dest", "127.0.0.1/32"))
    r = gated(lambda clock: limits_gate(tmp_path, limits, clock))
    far = b"\xc0\x00\x02\x01"
    send = wire.Nsend(sktid=1, family=4, proto=17, time=0, tag=0, data=b"x", raddr=far, rport=9)
    assert errids(r.send(send)) == [Status.ESKTNOTOPEN]
    assert errids(r.send(udp_open())) == [0]
    v6 = wire.Nsend(sktid=1, family=6, proto=17, time=0, tag=0, data=b"x", raddr=bytes(16), rport=9)
    assert errids(r.send(v6)) == [Status.ESKTNOMATCH]
    assert errids(r.send(send)) == [Status.ESKTPKTDENY]
    assert errids(r.send(udp_send())) == [0]  # 127.0.0.1 is allowed


# ---------------------------------------------------------- §1.3 order of nopen checks


def test_nopen_socket_errors_come_before_certificate_limits(tmp_path: Path) -> None:
    """§1.3: ESKTINUSE is for an nopen on a sktid that is not FREE, ESKTNOPRFAM/ESKTNOPROTO
    for a family/protocol not offered, whatever the chain's limits say; ESKTOPNDENY
    (valid_dest) and ENORES (max_socket_count) are for a socket that could be opened.
    They answered before the socket checks (as ESKTPKTDENY did for nsend)."""
    limits = CertLimits(
        valid_dest=parse_valid_dest("valid_dest", "127.0.0.1/32"), max_socket_count=2
    )
    r = gated(lambda clock: limits_gate(tmp_path, limits, clock))
    far = b"\xc0\x00\x02\x01"

    def tcp(sktid: int, raddr: bytes = far) -> wire.Nopen:
        return wire.Nopen(
            sktid=sktid, family=4, proto=6, rbufsz=1, laddr=bytes(4), lport=0, raddr=raddr, rport=80
        )

    raw = wire.Nopen(sktid=4, family=4, proto=0, rbufsz=1, laddr=bytes(4))  # raw not offered
    assert errids(r.send(udp_open(1))) == [0]
    assert errids(r.send(tcp(1))) == [Status.ESKTINUSE]  # was ESKTOPNDENY
    assert errids(r.send(tcp(2))) == [Status.ESKTOPNDENY]
    assert errids(r.send(udp_open(2))) == [0]  # the quota (2) is used up now
    assert errids(r.send(udp_open(2))) == [Status.ESKTINUSE]  # was ENORES
    assert errids(r.send(raw)) == [Status.ESKTNOPROTO]  # was ENORES
    assert errids(r.send(udp_open(3))) == [Status.ENORES]


# ------------------------------------------------------ §3.1 UDP nopen with a peer


def test_udp_nopen_with_a_peer_binds_and_ignores_the_peer() -> None:
    """§3.1: "UDP binds laddr:lport (raddr ignored) and reports SUCCESS at once": a UDP
    nopen in the TCP-connect form (laddr lport raddr rport) is taken, the peer ignored
    (it was malformed: ECTLBADMSG and the session closed)."""
    r = Rig().started()
    frame = bytes.fromhex("2a00001301 04 11 00010000 00000000 0000 7f000001 0035".replace(" ", ""))
    for item in wire.Framer().feed(frame):
        r.session.handle(item)
    assert errids(r.new()) == [0]
    assert r.session.ended is None
    skt = r.skt(1)
    assert (skt.proto, skt.raddr, skt.rport) == (17, bytes(4), 0)  # RADDR/RPORT stay 0
    assert errids(r.send(udp_send(1, tag=0))) == [0]  # sends go where each nsend says


# ------------------------------------------ §1.2, §1.3, §9.3 nopen of an odd length


def feed(r: Rig, hexframe: str) -> list[int]:
    for item in wire.Framer().feed(bytes.fromhex(hexframe.replace(" ", ""))):
        r.session.handle(item)
    return errids(r.new())


def test_nopen_of_an_odd_length_is_a_bad_address_length_not_a_malformed_frame() -> None:
    """§1.2 decodes an nopen of len >= 7 with family 4/6 and proto 0/6/17 (§9.3: "the TCP
    nopen decoder accepts lengths it does not parse"); §1.3 answers a bad address or port
    length ESKTNOADDR. It was ECTLBADMSG and the session closed."""
    r = Rig()
    assert feed(r, "2a000011 03 04 06 00010000 00000000 0000 c6336407") == [Status.ECTLNOTSUP]
    r.started()
    tcp_no_rport = "2a000011 03 04 06 00010000 00000000 0000 c6336407"
    assert feed(r, tcp_no_rport) == [Status.ESKTNOADDR]
    assert feed(r, "2a00000c 04 04 00 00010000 0000000000") == [Status.ESKTNOPROTO]  # raw
    assert feed(r, "2a00000b 05 04 11 00010000 00000000") == [Status.ESKTNOADDR]  # no lport
    assert r.session.ended is None
    assert errids(r.send(udp_open(1))) == [0]
    assert feed(r, "2a00000c 01 04 11 00010000 00000000 00") == [Status.ESKTINUSE]
    assert feed(r, "2a000010 07 06 11 00010000 00000000000000000000") == [Status.ESKTNOADDR]
    assert r.session.ended is None
    assert all(r.session.sockets[i] is None for i in (3, 4, 5, 7))
    # What the decoder still refuses: shorter than 7 bytes, a bad family or protocol.
    assert feed(r, "2a00000d 02 05 11 00010000 00000000 0000") == [Status.ECTLBADMSG]
    assert r.session.ended is not None


def test_nopen_shorter_than_7_bytes_is_malformed() -> None:
    r = Rig().started()
    assert feed(r, "2a000006 02 04 11 000100") == [Status.ECTLBADMSG]
    assert r.session.ended is not None


# ----------------------------------------------- §1.2, §2.3, §9.3 nctl longer than 12


def test_nctl_longer_than_12_bytes_is_read_as_the_reference_reads_it() -> None:
    """§1.2 nctl [QUIRK]: the reference's decoder checks len >= 11 and reads the command
    at byte 11, so bytes after the command are ignored; the spec's fix ("require 12") is
    a minimum. An nctl of 13 or more bytes was ECTLBADMSG and the session closed (a
    reference peer could tell); now it is the nctl of its first 12 bytes: FIN answered
    SUCCESS, an unknown command ECTLBADMSG with the session kept, ECTLNOTSUP in SETUP.
    Still malformed: 11 bytes, or a proto that is not TCP (the decoder's rules)."""
    r = Rig()
    fin13 = "2e00000d 02 04 06 0000000000000000 01 00"
    assert feed(r, fin13) == [Status.ECTLNOTSUP]  # SETUP
    r.started()
    assert feed(r, "2e00000d 02 04 06 0000000000000000 01 ff") == [Status.ESKTNOTOPEN]
    r.send(tcp_open(2))
    r.session.tcp_established(r.skt(2), LO4, 1, LO4, 80)
    r.new()
    assert feed(r, "2e000010 02 04 06 0000000000000000 07 616263 64") == [Status.ECTLBADMSG]
    assert r.session.ended is None
    assert feed(r, fin13) == [0]
    assert r.skt(2).fin_time == 0
    assert r.session.ended is None
    assert feed(r, "2e00000d 02 04 11 0000000000000000 01 00") == [Status.ECTLBADMSG]
    assert r.session.ended is not None


def test_nctl_of_11_bytes_is_still_malformed() -> None:
    r = Rig().started()
    assert feed(r, "2e00000b 02 04 06 0000000000000000") == [Status.ECTLBADMSG]
    assert r.session.ended is not None
