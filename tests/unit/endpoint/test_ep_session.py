"""The session state machine, sockets, sends, masks and budgets over fakes (no reactor)."""

from __future__ import annotations

import errno

from ep_fakes import (
    ANY4,
    LO4,
    T0,
    Rig,
    errids,
    names,
    tcp_open,
    tcp_send,
    udp_open,
    udp_send,
)

from packetlab import wire
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD, SEND_BUF_OVERHEAD
from packetlab.endpoint.session import Phase
from packetlab.endpoint.sockets import OpenError
from packetlab.wire import vmem
from packetlab.wire.constants import NotifMask, NsendErr, NstatCode, SocketState, Status
from packetlab.wire.errors import MalformedMessage

S = Status


def skt_field(rig: Rig, sktid: int, field: vmem.Region) -> bytes:
    got = rig.send(wire.Mread(addr=vmem.skt_addr(sktid, field), len=field.size))
    assert isinstance(got[-1], wire.Mdata)
    return got[-1].data


def set_mask(rig: Rig, sktid: int, mask: int) -> list[wire.Message]:
    return rig.send(
        wire.Mwrite(addr=vmem.skt_addr(sktid, vmem.SKT_NOTIFMASK), data=mask.to_bytes(2, "big"))
    )


# ------------------------------------------------------------------------- setup phase


def test_setup_accepts_only_cdata_and_start() -> None:
    rig = Rig()
    assert errids(rig.send(wire.Mread(addr=vmem.TIME.addr, len=8))) == [S.ECTLNOTSUP]
    assert errids(rig.send(udp_open())) == [S.ECTLNOTSUP]
    assert errids(rig.send(wire.Cdata(hint=b"monitor", data=b"\x01wasm"))) == [S.ECRTBADHDAT]
    assert errids(rig.send(wire.Cdata(hint=b"filter", data=b"\x00"))) == [S.ECRTBADHDAT]
    assert errids(rig.send(wire.Cdata(hint=b"other", data=b""))) == [S.ECRTBADHINT]
    assert rig.session.phase is Phase.SETUP
    assert rig.send(wire.Start()) == [wire.Result(0)]
    assert rig.session.phase is Phase.IDLE
    # start and cdata belong to SETUP only.
    assert errids(rig.send(wire.Start(), wire.Cdata(hint=b"monitor", data=b""))) == [
        S.ECTLNOTSUP,
        S.ECTLNOTSUP,
    ]


def test_unknown_types_and_endpoint_messages_answer_notsup_and_carry_on() -> None:
    rig = Rig().started()
    got = rig.send(
        wire.Unknown(0x99, b"abc", 0),
        wire.Result(0),  # a response type sent to the endpoint
        wire.Cont(),
        wire.Mread(addr=vmem.IP4NO.addr, len=1),
    )
    assert names(got) == ["result", "result", "result", "mdata"]
    assert errids(got) == [S.ECTLNOTSUP] * 3
    assert rig.session.ended is None


def test_malformed_answers_badmsg_and_ends_the_session() -> None:
    rig = Rig().started()
    rig.send(udp_open())
    bad = wire.Malformed(0x28, b"\x00", 0, MalformedMessage(0x28, 0, "short"))
    assert rig.send(bad, wire.Mread(addr=vmem.TIME.addr, len=8)) == [wire.Result(S.ECTLBADMSG)]
    end = rig.session.ended
    assert end is not None and not end.clean
    assert rig.io(1).closed  # sockets are freed at once


def test_end_answers_notsup_and_the_session_carries_on() -> None:
    """§1.2: the reference endpoint does not handle `end` (0x22): ECTLNOTSUP, and the
    session goes on with its sockets."""
    rig = Rig().started()
    rig.send(udp_open(), tcp_open())
    got = rig.send(wire.End(), wire.Mread(addr=vmem.IP4NO.addr, len=1))
    assert names(got) == ["result", "mdata"]
    assert errids(got) == [S.ECTLNOTSUP]
    assert rig.session.ended is None
    assert rig.session.open_sockets == 2
    assert not rig.io(1).closed and not rig.io(2).closed


def test_end_in_setup_answers_notsup_too() -> None:
    """§1.4 step 3: SETUP takes cdata and start only; `end` is ECTLNOTSUP there as well,
    and start still works after it."""
    rig = Rig()
    assert errids(rig.send(wire.End())) == [S.ECTLNOTSUP]
    assert rig.session.ended is None and rig.session.phase is Phase.SETUP
    assert rig.send(wire.Start()) == [wire.Result(0)]


def test_yield_answers_success_then_ends_and_frees_sockets() -> None:
    rig = Rig().started()
    rig.send(udp_open(), tcp_open())
    assert rig.send(wire.Yield(rhint=0), wire.Start()) == [wire.Result(0)]
    assert rig.session.ended is not None and rig.session.ended.clean
    assert rig.io(1).closed and rig.io(2).closed
    assert rig.session.open_sockets == 0


def test_yield_keeps_the_resume_hint() -> None:
    rig = Rig().started()
    assert rig.send(wire.Yield(rhint=T0 + 5)) == [wire.Result(0)]
    assert rig.session.ended is not None and rig.session.ended.rhint == T0 + 5


def test_setup_window_expiry_ends_only_in_setup() -> None:
    rig = Rig()
    assert rig.session.expire_setup()
    assert rig.session.ended is not None
    rig = Rig().started()
    assert not rig.session.expire_setup()


# ----------------------------------------------------------------------------- memory


def test_mread_time_is_sampled_at_read() -> None:
    rig = Rig().started()
    rig.clock.now = T0 + 12345
    (mdata,) = rig.send(wire.Mread(addr=vmem.TIME.addr, len=8))
    assert isinstance(mdata, wire.Mdata)
    assert T0 + 12345 <= int.from_bytes(mdata.data, "big") < T0 + 13000


def test_out_of_range_memory_requests_answer_bad_address() -> None:
    rig = Rig().started()
    # Built by hand: the decoder already rejects these as malformed.
    assert errids(rig.send(wire.Mread(addr=0, len=0))) == [S.EMEMBADADR]
    assert errids(rig.send(wire.Mread(addr=0xFFFFFFFF, len=2))) == [S.EMEMBADADR]
    assert errids(rig.send(wire.Mwrite(addr=0xFFFFFFFF, data=b"ab"))) == [S.EMEMBADADR]
    assert errids(rig.send(wire.Mwrite(addr=vmem.IP4NO.addr, data=b"\x09"))) == [0]
    (m,) = rig.send(wire.Mread(addr=vmem.IP4NO.addr, len=1))
    assert isinstance(m, wire.Mdata) and m.data == b"\x02"  # read-only: unchanged


# ----------------------------------------------------------------------------- nopen


def test_nopen_errors() -> None:
    rig = Rig(transproto_sup=frozenset({"udp"})).started()
    assert errids(rig.send(udp_open(1))) == [0]
    assert errids(rig.send(udp_open(1))) == [S.ESKTINUSE]
    assert errids(rig.send(tcp_open(2))) == [S.ESKTNOPROTO]
    raw = wire.Nopen(sktid=3, family=4, proto=0, rbufsz=0, laddr=LO4)
    assert errids(rig.send(raw)) == [S.ESKTNOPROTO]
    rig.net.fail = OpenError(S.EUDPNOPORT, "in use")
    assert errids(rig.send(udp_open(4))) == [S.EUDPNOPORT]
    assert rig.session.sockets[4] is None


def test_nopen_family_without_exported_address() -> None:
    rig = Rig(ipv6=[]).started()
    assert errids(rig.send(udp_open(1, family=6))) == [S.ESKTNOPRFAM]
    rig = Rig(ipv4=[]).started()
    assert errids(rig.send(udp_open(1, family=4))) == [S.ESKTNOPRFAM]
    assert errids(rig.send(udp_open(1, family=6))) == [0]


def test_tcp_connect_reports_established_with_the_peer() -> None:
    rig = Rig().started()
    assert rig.send(tcp_open(2)) == [wire.Result(0)]
    assert rig.skt(2).state == SocketState.OPENING
    rig.session.tcp_established(rig.skt(2), LO4, 40000, LO4, 80)
    (nstat,) = rig.new()
    assert nstat == wire.Nstat(sktid=2, family=4, proto=6, time=nstat.time, raddr=LO4, rport=80)
    assert skt_field(rig, 2, vmem.SKT_STAT) == b"\x02"


def test_tcp_connect_failure_sends_nstat_and_sets_stat() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    rig.io(2).complete = False  # the real socket queues sends while connecting
    rig.send(tcp_send(2, tag=5))
    rig.session.tcp_connect_failed(rig.skt(2), SocketState.REFUSED)
    got = rig.new()
    assert names(got) == ["ntag", "nstat"]
    assert got[0] == wire.Ntag(sktid=2, tag=5, time=got[0].time, errid=S.EPKTNOTSENT)
    assert isinstance(got[1], wire.Nstat) and got[1].code == NstatCode.RESET
    assert skt_field(rig, 2, vmem.SKT_STAT) == (SocketState.REFUSED & 0xFF).to_bytes(1, "big")
    assert rig.io(2).closed
    assert rig.session.budget.used == 0


def test_synchronous_connect_failure_answers_success_then_nstat() -> None:
    rig = Rig().started()
    rig.net.connect_fails = SocketState.UNREACH
    got = rig.send(tcp_open(2))
    assert names(got) == ["result", "nstat"]
    assert got[0] == wire.Result(0)
    assert isinstance(got[1], wire.Nstat) and got[1].code == NstatCode.UNKNOWN
    assert rig.skt(2).state == SocketState.UNREACH
    assert errids(rig.send(tcp_send(2))) == [S.ESKTNOTOPEN]  # allocated until nclose
    assert errids(rig.send(tcp_open(2))) == [S.ESKTINUSE]
    assert errids(rig.send(wire.Nclose(sktid=2), tcp_open(2))) == [0, 0]


# ----------------------------------------------------------------------------- nclose


def test_nclose() -> None:
    rig = Rig().started()
    assert errids(rig.send(wire.Nclose(sktid=9))) == [S.ESKTNOTOPEN]
    rig.send(udp_open(1))
    assert rig.send(wire.Nclose(sktid=1)) == [wire.Result(0)]
    assert rig.io(1).closed
    assert skt_field(rig, 1, vmem.SKT_STAT) == b"\x00"
    assert errids(rig.send(wire.Nclose(sktid=1))) == [S.ESKTNOTOPEN]


def test_nclose_frees_queued_sends_silently() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    got = rig.send(udp_send(tag=1, time=T0 + 10**9), udp_send(tag=2, time=T0 + 10**9))
    assert errids(got) == [0, 0]
    assert rig.session.budget.used == 2 * (1 + SEND_BUF_OVERHEAD)
    assert rig.send(wire.Nclose(sktid=1)) == [wire.Result(0)]
    assert rig.session.budget.used == 0
    assert rig.scheduler.pending() == 0
    rig.run_timer_to(T0 + 2 * 10**9)
    assert rig.new() == [] and rig.io(1).sent == []


# ------------------------------------------------------------------------------ nsend


def test_nsend_errors() -> None:
    rig = Rig(buf_max=1000).started()
    assert errids(rig.send(udp_send(1))) == [S.ESKTNOTOPEN]
    rig.send(udp_open(1))
    wrong = wire.Nsend(sktid=1, family=4, proto=6, time=0, tag=0, data=b"")
    assert errids(rig.send(wrong)) == [S.ESKTNOMATCH]
    assert errids(rig.send(udp_send(1, data=bytes(1000)))) == [S.ESYSNOBUFS]
    assert rig.io(1).sent == []


def test_immediate_nsend_answers_then_ntags_with_the_send_time() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    got = rig.send(udp_send(1, tag=7, data=b"hello"))
    assert names(got) == ["result", "ntag"]
    (p,) = rig.io(1).sent
    assert p.data == b"hello" and p.dest == ("127.0.0.1", 53)
    assert got[1] == wire.Ntag(sktid=1, tag=7, time=got[1].time)
    assert T0 < got[1].time < rig.clock.now
    assert rig.session.budget.used == 0


def test_tag_zero_sends_no_ntag() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    assert rig.send(udp_send(1, tag=0)) == [wire.Result(0)]
    assert len(rig.io(1).sent) == 1


def test_future_nsend_waits_for_its_time() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    at = T0 + 5_000_000
    assert rig.send(udp_send(1, tag=3, time=at)) == [wire.Result(0)]
    assert rig.io(1).sent == []
    rig.run_timer_to(at)
    (ntag,) = rig.new()
    assert isinstance(ntag, wire.Ntag) and ntag.tag == 3 and ntag.time >= at


def test_tcp_ntag_waits_until_every_byte_is_written() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    rig.io(2).complete = False
    assert rig.send(tcp_send(2, tag=4)) == [wire.Result(0)]
    assert rig.session.budget.used == 3 + SEND_BUF_OVERHEAD
    rig.io(2).finish(T0 + 99)
    assert rig.new() == [wire.Ntag(sktid=2, tag=4, time=T0 + 99)]
    assert rig.session.budget.used == 0


def test_failed_udp_send_ntags_epktnotsent_and_sets_nsenderr() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    rig.io(1).error = errno.ENETUNREACH
    got = rig.send(udp_send(1, tag=11))
    assert names(got) == ["result", "ntag"] and got[1].errid == S.EPKTNOTSENT
    assert skt_field(rig, 1, vmem.SKT_NSENDERR) == bytes([NsendErr.UNREACH])
    assert skt_field(rig, 1, vmem.SKT_NSENDERRTAG) == (11).to_bytes(2, "big")
    rig.io(1).error = None
    assert names(rig.send(udp_send(1, tag=12))) == ["result", "ntag"]  # socket still usable


# ------------------------------------------------------------------------------- nctl


def test_nctl_checks() -> None:
    rig = Rig().started()
    fin = wire.Nctl(sktid=2, family=4, proto=6, time=0, command=1)
    assert errids(rig.send(fin)) == [S.ESKTNOTOPEN]
    rig.send(udp_open(1), tcp_open(2))
    assert errids(rig.send(wire.Nctl(sktid=1, family=4, proto=6, time=0, command=1))) == [
        S.ECTLNOTSUP
    ]
    assert errids(rig.send(wire.Nctl(sktid=2, family=6, proto=6, time=0, command=1))) == [
        S.ESKTNOMATCH
    ]
    assert errids(rig.send(wire.Nctl(sktid=2, family=4, proto=6, time=0, command=7))) == [
        S.ECTLBADMSG
    ]
    assert rig.session.ended is None


def test_fin_sends_earlier_data_and_drops_the_rest() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    rig.session.tcp_established(rig.skt(2), LO4, 1, LO4, 80)
    rig.new()
    t = T0 + 10**8
    got = rig.send(
        tcp_send(2, tag=1, data=b"a", time=t - 1),
        wire.Nctl(sktid=2, family=4, proto=6, time=t, command=1),
        wire.Nctl(sktid=2, family=4, proto=6, time=t - 50, command=1),  # first one wins
        tcp_send(2, tag=2, data=b"b", time=t + 1),
        tcp_send(2, tag=3, data=b"c", time=t + 2),
    )
    assert errids(got) == [0, 0, 0, 0, 0]
    rig.run_timer_to(t + 10)
    got = rig.new()
    assert [(m.tag, m.errid) for m in got if isinstance(m, wire.Ntag)] == [
        (1, 0),
        (2, S.EPKTNOTSENT),
        (3, S.EPKTNOTSENT),
    ]
    assert [p.data for p in rig.io(2).sent] == [b"a"]
    assert rig.io(2).fin
    assert rig.skt(2).nsenderr == NsendErr.WFIN
    assert errids(rig.send(tcp_send(2, tag=4))) == [S.ESKTNOTOPEN]
    rig.session.tcp_fin_sent(rig.skt(2))
    assert rig.skt(2).state == SocketState.WFIN
    rig.session.tcp_eof(rig.skt(2))
    assert rig.skt(2).state == SocketState.END
    assert rig.session.budget.used == 0


# ------------------------------------------------------------------------ TCP receive


def test_tcp_receive_eof_and_errors() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    skt = rig.skt(2)
    rig.session.tcp_established(skt, LO4, 1, LO4, 80)
    rig.session.tcp_received(skt, b"data", T0 + 1)
    rig.session.tcp_eof(skt)
    got = rig.new()
    assert names(got) == ["nstat", "ndata", "nstat"]
    assert got[1] == wire.Ndata(sktid=2, family=4, proto=6, time=T0 + 1, data=b"data")
    assert isinstance(got[2], wire.Nstat) and got[2].code == NstatCode.PEERCLOSED
    assert skt.state == SocketState.EOF
    rig.send(tcp_open(3))
    rig.io(3).complete = False
    rig.send(tcp_send(3, tag=8))
    rig.session.tcp_error(rig.skt(3), SocketState.RESET)
    got = rig.new()
    assert names(got) == ["ntag", "nstat"] and got[0].errid == S.EPKTNOTSENT
    assert isinstance(got[1], wire.Nstat) and got[1].code == NstatCode.RESET
    assert rig.skt(3).nsenderr == NsendErr.RESET


def test_a_tcp_send_that_fails_inside_the_kernel_call_is_dropped_once() -> None:
    """netio's send() on a stream the peer reset: the send joins the stream's unsent
    ones and the socket fails inside the call, while the send is still the session's
    queued one. It was dropped twice: two ntag(EPKTNOTSENT) for one tag, its charge
    given back twice (BUFUSED below zero: the next mread of it crashed the session;
    `run throughput --bidir` when the server closed its streams)."""
    rig = Rig().started()
    rig.send(tcp_open(3))
    skt = rig.skt(3)
    rig.session.tcp_established(skt, LO4, 1, LO4, 80)
    rig.new()
    rig.io(3).fails_inside = SocketState.RESET
    got = rig.send(tcp_send(3, tag=8, data=b"x" * 100))
    got += rig.new()
    assert names(got) == ["result", "ntag", "nstat"], names(got)
    assert got[1].tag == 8 and got[1].errid == S.EPKTNOTSENT
    assert rig.session.budget.used == 0 and not skt.queued
    read = rig.send(wire.Mread(addr=vmem.BUFUSED.addr, len=4))
    assert read == [wire.Mdata(addr=vmem.BUFUSED.addr, data=bytes(4))]


def test_tcp_budget_blocks_reading_until_frames_are_written() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2, rbufsz=4096))
    skt = rig.skt(2)
    rig.session.tcp_established(skt, LO4, 1, LO4, 80)
    assert rig.session.recv_room(skt) == 4096 - RECV_BUF_OVERHEAD
    rig.session.outbox.pause()  # the controller connection is full
    rig.session.tcp_received(skt, bytes(2000), T0)
    rig.session.tcp_received(skt, bytes(1700), T0)
    assert rig.session.recv_room(skt) == 4096 - 3700 - 3 * RECV_BUF_OVERHEAD
    rig.session.tcp_received(skt, bytes(100), T0)
    assert rig.session.recv_room(skt) <= 0
    rig.session.tcp_blocked(skt)
    assert rig.io(2).resumed == 0
    assert int.from_bytes(skt_field_paused(rig, 2), "big") == 3800 + 3 * RECV_BUF_OVERHEAD
    rig.session.outbox.resume()
    assert rig.io(2).resumed == 1
    assert skt.rbufused == 0 and rig.session.budget.used == 0
    assert names(rig.new()) == ["nstat", "ndata", "ndata", "ndata"]


def skt_field_paused(rig: Rig, sktid: int) -> bytes:
    return rig.session.memory.read(vmem.skt_addr(sktid, vmem.SKT_RBUFUSED), 4)


def test_global_bufmax_limits_all_sockets() -> None:
    rig = Rig(buf_max=3000).started()
    rig.send(tcp_open(2, rbufsz=1 << 20))
    skt = rig.skt(2)
    rig.session.outbox.pause()
    rig.session.tcp_received(skt, bytes(2000), T0)
    assert rig.session.recv_room(skt) == 3000 - 2000 - 2 * RECV_BUF_OVERHEAD
    (mdata,) = [rig.session.memory.read(vmem.BUFUSED.addr, 4)]
    assert int.from_bytes(mdata, "big") == 2000 + RECV_BUF_OVERHEAD


# ------------------------------------------------------------------------ UDP receive


def test_udp_over_budget_truncates_then_drops_and_counts() -> None:
    rig = Rig().started()
    extra = RECV_BUF_OVERHEAD + 4 + 2
    rig.send(udp_open(1, rbufsz=2 * extra + 150))
    skt = rig.skt(1)
    rig.session.outbox.pause()
    rig.session.udp_received(skt, bytes(100), T0 + 1, LO4, 53)  # fits
    rig.session.udp_received(skt, bytes(100), T0 + 2, LO4, 53)  # truncated to 50
    rig.session.udp_received(skt, bytes(30), T0 + 3, LO4, 53)  # dropped
    rig.session.udp_received(skt, bytes(40), T0 + 4, LO4, 53)  # dropped
    assert skt.drop_pkts == 3 and skt.drop_bytes == 50 + 30 + 40
    dropstat = rig.session.memory.read(vmem.skt_addr(1, vmem.SKT_DROPSTAT), 8)
    assert dropstat == (120).to_bytes(4, "big") + (3).to_bytes(4, "big")
    rig.session.outbox.resume()
    got = rig.new()
    assert names(got) == ["ndata", "ndrop", "ndata", "ndrop"]
    assert got[1] == wire.Ndrop(
        sktid=1, family=4, proto=17, tfirst=T0 + 2, tlast=T0 + 2, unitcnt=1, bytecnt=50
    )
    assert len(got[2].data) == 50
    # The socket has room again once the ndata left: that ends the second episode.
    assert got[3] == wire.Ndrop(
        sktid=1, family=4, proto=17, tfirst=T0 + 3, tlast=T0 + 4, unitcnt=2, bytecnt=70
    )
    rig.session.udp_received(skt, b"ok", T0 + 5, LO4, 53)
    got = rig.new()
    assert got[0] == wire.Ndata(
        sktid=1, family=4, proto=17, time=T0 + 5, data=b"ok", raddr=LO4, rport=53
    )


def test_udp_ipv6_ndata_carries_the_source() -> None:
    rig = Rig().started()
    rig.send(udp_open(1, family=6))
    src = bytes(15) + b"\x01"
    rig.session.udp_received(rig.skt(1), b"v6", T0, src, 5353)
    assert rig.new() == [
        wire.Ndata(sktid=1, family=6, proto=17, time=T0, data=b"v6", raddr=src, rport=5353)
    ]


# -------------------------------------------------------------------- notification masks


def test_masked_notifications_are_held_then_flushed_in_order() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    skt = rig.skt(1)
    assert set_mask(rig, 1, NotifMask.NDATA | NotifMask.NTAG) == [wire.Result(0)]
    rig.session.udp_received(skt, b"one", T0 + 1, LO4, 53)
    assert names(rig.send(udp_send(1, tag=5))) == ["result"]
    rig.session.udp_received(skt, b"two", T0 + 2, LO4, 53)
    assert rig.new() == []
    assert skt.rbufused > 0  # held ndata keep their budget
    # Clearing NDATA only releases the ndata, in order, before the mwrite's result.
    got = set_mask(rig, 1, NotifMask.NTAG)
    assert names(got) == ["ndata", "ndata", "result"]
    assert [m.data for m in got[:2]] == [b"one", b"two"]  # type: ignore[attr-defined]
    assert skt.rbufused == 0
    got = set_mask(rig, 1, 0)
    assert names(got) == ["ntag", "result"]
    assert skt_field(rig, 1, vmem.SKT_NOTIFMASK) == b"\x00\x00"


def test_masked_nblock_is_flushed_too() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))

    class Blocking:
        checks_ndata = True

        def check_ndata(self, *args: object) -> int:
            return 7

    rig.session.gate.checks_ndata = True
    rig.session.gate.check_ndata = Blocking().check_ndata  # type: ignore[assignment]
    set_mask(rig, 1, NotifMask.NBLOCK)
    rig.session.udp_received(rig.skt(1), b"no", T0, LO4, 53)
    assert rig.new() == []
    got = set_mask(rig, 1, 0)
    assert got[0] == wire.Nblock(sktid=1, family=4, proto=17, monerrid=7, time=T0)


def test_socket_writes_need_state_opening_or_more() -> None:
    rig = Rig().started()
    rig.send(tcp_open(2))
    rig.session.tcp_connect_failed(rig.skt(2), SocketState.TIMEDOUT)
    rig.new()
    assert set_mask(rig, 2, NotifMask.NDATA) == [wire.Result(0)]
    assert rig.skt(2).notifmask == 0
    assert errids(rig.send(wire.Mwrite(addr=vmem.skt_addr(5, vmem.SKT_RBUFSZ), data=b"1234"))) == [
        0
    ]


def test_rw_fields_round_trip_and_read_only_bytes_are_ignored() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    base = vmem.skt_addr(1, vmem.Region(0, 0))
    # One write across STAT (read-only) and ... nothing writable: dropped.
    rig.send(wire.Mwrite(addr=base, data=b"\x09\x09\x09"))
    assert skt_field(rig, 1, vmem.SKT_STAT) == b"\x02"
    rig.send(wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_RBUFSZ), data=(5000).to_bytes(4, "big")))
    rig.send(wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_NSENDERR), data=b"\x06\x00\x2a"))
    rig.send(wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_CTFL), data=b"ctfl"))
    assert rig.skt(1).rbufsz == 5000
    assert rig.skt(1).nsenderr == 6 and rig.skt(1).nsenderrtag == 42
    assert skt_field(rig, 1, vmem.SKT_CTFL)[:4] == b"ctfl"


# ------------------------------------------------------------------------------ close


def test_close_frees_everything() -> None:
    rig = Rig().started()
    rig.send(udp_open(1), tcp_open(2))
    rig.send(udp_send(1, tag=1, time=T0 + 10**9))
    set_mask(rig, 1, NotifMask.NDATA)
    rig.session.udp_received(rig.skt(1), b"held", T0, LO4, 53)
    assert rig.session.budget.used > 0
    rig.session.close()
    assert rig.session.budget.used == 0
    assert rig.scheduler.pending() == 0
    assert all(io.closed for io in rig.net.ios.values())
    assert rig.session.open_sockets == 0
    assert rig.session.ended is not None


def test_ndata_for_udp_reports_the_any_address_bound() -> None:
    rig = Rig().started()
    rig.send(udp_open(1))
    assert skt_field(rig, 1, vmem.SKT_LADDR) == ANY4 + bytes(12)
    assert skt_field(rig, 1, vmem.SKT_LPORT) == (40000).to_bytes(2, "big")
    assert skt_field(rig, 1, vmem.SKT_FAMILY) + skt_field(rig, 1, vmem.SKT_PROTO) == b"\x04\x11"
