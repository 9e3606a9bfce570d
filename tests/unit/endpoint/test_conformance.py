"""Conformance findings of the wire/session audit (PROTOCOL.md §1-§3, session 8): each test
names the rule it holds the endpoint to, and failed before its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ep_fakes import FakeClock, Rig, errids, udp_open, udp_send

from packetlab import wire
from packetlab.endpoint.checks import OpenGate, RequestGate
from packetlab.endpoint.config import parse_rate
from packetlab.endpoint.limits import admit
from packetlab.endpoint.policy import PolicyGate
from packetlab.endpoint.session import Session
from packetlab.ppks import (
    Accounting,
    BurstRate,
    CertLimits,
    generate_private_key,
    issue_certificate,
)
from packetlab.wire import vmem
from packetlab.wire.constants import Status

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
