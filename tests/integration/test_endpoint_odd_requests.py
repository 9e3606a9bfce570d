"""Well-formed requests with the odd values PROTOCOL.md allows on the wire, against a real
endpoint and real sockets: unspecified, broadcast, multicast and v4-mapped addresses,
port 0, datagrams the kernel refuses, sizes at the limits. Each must get one of the
statuses §1.3 gives its request (or a notification naming the failure), the session
must go on, and the endpoint's log must hold no traceback.

Only loopback and addresses that never leave the host are used: unspecified, broadcast
and multicast destinations are sent on loopback, or refused by the kernel first."""

from __future__ import annotations

import pytest
from conftest import EndpointProcess, RawController

from packetlab import wire
from packetlab.wire import vmem
from packetlab.wire.constants import Status

S = Status
LO = b"\x7f\x00\x00\x01"
ANY = bytes(4)
BCAST = b"\xff\xff\xff\xff"
MCAST = b"\xe0\x00\x00\x01"
LO6 = bytes(15) + b"\x01"
ANY6 = bytes(16)
MAPPED = bytes(10) + b"\xff\xff" + LO

OPEN_STATUSES = {0, S.ESKTNOADDR, S.EUDPNOPORT, S.ETCPNOPORT, S.ESYSNOPERM, S.EUNKFAULT}


def udp(sktid: int, family: int = 4, laddr: bytes = ANY, lport: int = 0) -> wire.Nopen:
    return wire.Nopen(
        sktid=sktid, family=family, proto=17, rbufsz=1 << 16, laddr=laddr, lport=lport
    )


def tcp(sktid: int, raddr: bytes, rport: int, family: int = 4, laddr: bytes = ANY) -> wire.Nopen:
    return wire.Nopen(
        sktid=sktid, family=family, proto=6, rbufsz=1 << 16, laddr=laddr, lport=0,
        raddr=raddr, rport=rport,
    )  # fmt: skip


def send(sktid: int, raddr: bytes, rport: int, data: bytes, family: int = 4) -> wire.Nsend:
    return wire.Nsend(
        sktid=sktid, family=family, proto=17, time=0, tag=sktid + 1, data=data, raddr=raddr,
        rport=rport,
    )  # fmt: skip


NOPENS = {
    "udp-bind-broadcast": (udp(1, laddr=BCAST), OPEN_STATUSES),
    "udp-bind-multicast": (udp(1, laddr=MCAST), OPEN_STATUSES),
    "udp-bind-port-65535": (udp(1, laddr=LO, lport=65535), OPEN_STATUSES),
    "udp6-bind-mapped": (udp(1, 6, MAPPED), OPEN_STATUSES),
    "udp6-bind-any": (udp(1, 6, ANY6), OPEN_STATUSES),
    "tcp-connect-any-port-0": (tcp(1, ANY, 0), {0}),
    "tcp-connect-broadcast": (tcp(1, BCAST, 80), {0}),
    "tcp-connect-multicast": (tcp(1, MCAST, 80), {0}),
    "tcp6-connect-mapped": (tcp(1, MAPPED, 9, 6, ANY6), {0}),
    "tcp6-connect-any": (tcp(1, ANY6, 0, 6, ANY6), {0}),
    "tcp-bind-foreign-laddr": (tcp(1, LO, 9, laddr=b"\xc0\x00\x02\x01"), OPEN_STATUSES),
}


@pytest.mark.parametrize("name", list(NOPENS))
def test_odd_nopen_answers_a_spec_status(controller: RawController, name: str) -> None:
    msg, allowed = NOPENS[name]
    assert controller.status(msg) in allowed
    controller.quiet(0.3)  # a failed connect's nstat, if any
    assert controller.status(wire.Nclose(sktid=1)) in (0, S.ESKTNOTOPEN)
    assert controller.mread(vmem.IP4NO.addr, 1) == b"\x01"  # the session goes on


SENDS = {
    "to-port-0": send(1, LO, 0, b"x"),
    "to-any": send(1, ANY, 9, b"x"),
    "to-broadcast": send(1, BCAST, 9, b"x"),
    "too-big-for-udp": send(1, LO, 9, bytes(65508)),
    "empty": send(1, LO, 9, b""),
}


@pytest.mark.parametrize("name", list(SENDS))
def test_odd_udp_nsend_is_sent_or_reported(controller: RawController, name: str) -> None:
    controller.ok(udp(1, laddr=LO))
    assert controller.status(SENDS[name]) == 0  # queued (§3.3): the outcome is the ntag
    tag = controller.notification(wire.Ntag, timeout=5)
    assert tag.tag == 2 and tag.errid in (0, S.EPKTNOTSENT)
    if tag.errid:  # NSENDERR and its tag say why (§3.3)
        err = controller.mread(vmem.skt_addr(1, vmem.SKT_NSENDERR), 3)
        assert err[0] != 0 and err[1:] == b"\x00\x02"
    controller.ok(wire.Nclose(sktid=1))
    assert controller.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_udp6_send_to_a_v4_mapped_address(controller: RawController) -> None:
    controller.ok(udp(2, 6, LO6))
    assert controller.status(send(2, MAPPED, 9, b"x", family=6)) == 0
    tag = controller.notification(wire.Ntag, timeout=5)
    assert tag.tag == 3 and tag.errid in (0, S.EPKTNOTSENT)
    controller.ok(wire.Nclose(sktid=2))


def test_no_traceback_in_the_log(shared_endpoint: EndpointProcess) -> None:
    c = shared_endpoint.accept()
    c.start()
    for name in NOPENS:
        c.status(NOPENS[name][0])
        c.status(wire.Nclose(sktid=1))
    c.close()
    log = shared_endpoint.output()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
