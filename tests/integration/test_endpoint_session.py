"""A real `twistd pktendpoint` process: session state machine, memory map, teardown,
NoSub connect/reconnect behaviour."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

import pytest
from conftest import EndpointProcess, RawController
from testkit.poll import poll_until

from packetlab import wire
from packetlab.wire import vmem
from packetlab.wire.constants import Status

S = Status


def test_setup_phase(shared_endpoint: EndpointProcess) -> None:
    c = shared_endpoint.accept()
    try:
        assert c.status(wire.Mread(addr=vmem.TIME.addr, len=8)) == S.ECTLNOTSUP
        assert c.status(wire.Cdata(hint=b"monitor", data=b"\x01\x00asm")) == S.ECRTBADHDAT
        assert c.status(wire.Cdata(hint=b"nope", data=b"")) == S.ECRTBADHINT
        c.start()
        assert c.status(wire.Start()) == S.ECTLNOTSUP
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)


def test_unknown_type_then_carry_on(controller: RawController) -> None:
    controller.send(b"\x9a\x00\x00\x03abc")
    assert controller.response() == wire.Result(S.ECTLNOTSUP)
    assert controller.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_many_requests_in_one_write_are_answered_in_order(controller: RawController) -> None:
    reqs = [wire.Mread(addr=vmem.HOSTID.addr, len=n) for n in range(1, 200)]
    controller.send(*reqs)
    for n in range(1, 200):
        r = controller.response()
        assert r == wire.Mdata(
            addr=vmem.HOSTID.addr, data=b"pktendpoint-test\0"[:n].ljust(n, b"\0")
        )


def test_malformed_answers_badmsg_and_disconnects(controller: RawController) -> None:
    controller.send(b"\x28\x00\x00\x03abc")  # mread with a 3-byte body
    assert controller.response() == wire.Result(S.ECTLBADMSG)
    assert controller.closed_by_peer()


def test_memory_ranges_past_4gib_are_malformed_on_the_wire(controller: RawController) -> None:
    # EMEMBADADR cannot be reached: the decoder already rejects these frames (§1.2).
    controller.send(b"\x28\x00\x00\x06\xff\xff\xff\xff\x00\x02")
    assert controller.response() == wire.Result(S.ECTLBADMSG)


def test_nopen_of_an_odd_length_answers_esktnoaddr_and_the_session_carries_on(
    controller: RawController,
) -> None:
    # §1.2 (len >= 7), §9.3 (the TCP nopen decoder accepts lengths it does not parse),
    # §1.3 (ESKTNOADDR: bad addr/port length): not ECTLBADMSG and a close.
    body = bytes.fromhex("03 04 06 00010000 00000000 0000 7f000001".replace(" ", ""))
    controller.send(b"\x2a" + len(body).to_bytes(3, "big") + body)
    assert controller.response() == wire.Result(S.ESKTNOADDR)
    assert controller.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_end_answers_notsup_and_the_session_carries_on(controller: RawController) -> None:
    # §1.2: the reference endpoint does not handle `end`.
    controller.send(wire.End())
    assert controller.response() == wire.Result(S.ECTLNOTSUP)
    assert controller.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_yield_answers_success_then_closes(controller: RawController) -> None:
    controller.ok(wire.Yield(rhint=0))
    assert controller.closed_by_peer()


def test_system_block_from_the_config(controller: RawController) -> None:
    sys_block = controller.mread(vmem.SYS_BASE, 16)
    assert sys_block[:2] == b"\x01\x01"  # one IPv4, one IPv6 address
    assert sys_block[2:6] == (0b110).to_bytes(4, "big")  # TCP, UDP
    assert controller.mread(vmem.IP4LS.addr, 8) == bytes([127, 0, 0, 1, 255, 0, 0, 0])
    assert controller.mread(vmem.IP6LS.addr, 16) == ipaddress.IPv6Address("::1").packed
    assert controller.mread(vmem.IP4DNSNO.addr, 2) == b"\x01\x00"
    assert controller.mread(vmem.IP4DNSLS.addr, 4) == bytes([127, 0, 0, 53])
    assert controller.mread(vmem.BUFMAX.addr, 8) == (8388608).to_bytes(4, "big") + bytes(4)
    assert controller.mread(vmem.HOSTID.addr, 20) == b"pktendpoint-test" + bytes(4)
    # A read starting in a gap still returns the mapped bytes after it.
    assert controller.mread(vmem.IP4LS.addr - 4, 8) == bytes(4) + bytes([127, 0, 0, 1])


def test_time_is_the_endpoint_clock(controller: RawController) -> None:
    before = time.time_ns()
    t = int.from_bytes(controller.mread(vmem.TIME.addr, 8), "big")
    after = time.time_ns()
    assert before <= t <= after


def test_read_only_writes_succeed_and_change_nothing(controller: RawController) -> None:
    controller.mwrite(vmem.HOSTID.addr, b"hacked")
    controller.mwrite(vmem.skt_addr(4, vmem.SKT_NOTIFMASK), b"\xff\xff")  # FREE socket
    assert controller.mread(vmem.HOSTID.addr, 6) == b"pktend"
    assert controller.mread(vmem.skt_addr(4, vmem.Region(0, 0)), 0x400) == bytes(0x400)


def test_eof_frees_every_socket(shared_endpoint: EndpointProcess) -> None:
    # A session that holds sockets and queued sends, then the controller goes away.
    c = shared_endpoint.accept()
    c.start()
    baseline = shared_endpoint.open_fds()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    udp.close()
    c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=b"\x7f\0\0\1", lport=port))
    ls = socket.create_server(("127.0.0.1", 0))
    tcp = wire.Nopen(
        sktid=2, family=4, proto=6, rbufsz=4096, laddr=bytes(4), lport=0,
        raddr=b"\x7f\0\0\1", rport=ls.getsockname()[1],
    )  # fmt: skip
    c.ok(tcp)
    c.notification(wire.Nstat)
    far = time.time_ns() + 3600 * 10**9
    c.ok(
        wire.Nsend(
            sktid=1, family=4, proto=17, time=far, tag=1, data=b"x", raddr=b"\x7f\0\0\1", rport=9
        )
    )
    assert shared_endpoint.open_fds() == baseline + 2
    c.close()
    shared_endpoint.controllers.remove(c)
    # The next session can bind the same UDP port again: the old socket is gone.
    c2 = shared_endpoint.accept()
    try:
        c2.start()
        assert shared_endpoint.open_fds() == baseline
        c2.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=b"\x7f\0\0\1", lport=port))
        assert c2.quiet(0.2) == []  # nothing of the old session leaks into this one
    finally:
        c2.close()
        shared_endpoint.controllers.remove(c2)
        ls.close()


def test_connect_retries_until_the_controller_listens(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    # Nothing listens until the endpoint has been refused twice (it retries every second,
    # refused at once); polled, not slept, so a slow start-up cannot outrun the test.
    ep = endpoint_factory(defer_listen=True)
    poll_until(lambda: ep.output().count("retrying in 1.0 s") >= 2, timeout=30, what=ep.output)
    ep.listen()
    c = ep.accept(timeout=5)
    c.start()


def test_gives_up_after_five_seconds_then_starts_a_new_cycle(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(defer_listen=True, args=["--retry-delay", "0.5"])
    poll_until(lambda: "gave up reaching controller" in ep.output(), timeout=15, what=ep.output)
    ep.listen()
    ep.accept(timeout=5).start()


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
def test_controller_over_ipv4_and_ipv6(
    endpoint_factory: Callable[..., EndpointProcess], family: str
) -> None:
    ep = endpoint_factory(listen=family)
    c = ep.accept()
    c.start()
    assert c.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_session_limit_exits_cleanly(endpoint_factory: Callable[..., EndpointProcess]) -> None:
    ep = endpoint_factory(args=["--sessions", "1"])
    c = ep.accept()
    c.start()
    c.ok(wire.Yield(rhint=0))
    assert ep.proc.wait(10) == 0
