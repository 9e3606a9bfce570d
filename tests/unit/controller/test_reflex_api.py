"""The controller's reflex API over fakes: the CAPS probe keeps a reference endpoint from
ever seeing a private type; attach/detach frames byte for byte; reports and detach
notices reach the handle; malformed private notifications do not end the session."""

from __future__ import annotations

import pytest
from ctl_fakes import Rig, frames, on_string_transport, result_of

from packetlab import wire
from packetlab.controller import RequestFailed
from packetlab.controller.reflexes import ReflexUnsupported
from packetlab.reflex import abi
from packetlab.reflex import wire as rw
from packetlab.wire import Mdata, Result, Status
from packetlab.wire.framer import Unknown

WASM = b"\0asm\x01\0\0\0"


def test_a_reference_endpoint_sees_only_an_mread() -> None:
    r = Rig()
    r.run(r.session.ready)
    with pytest.raises(ReflexUnsupported, match="does not support"):
        r.run(r.session.attach_reflex(1, WASM))
    assert not [m for m in r.endpoint.received if isinstance(m, Unknown)]
    assert r.endpoint.requests()[-1] == "mread"


def test_attach_detach_reports_and_notices() -> None:
    s, t, _ = on_string_transport()
    d = s.attach_reflex(3, WASM, b"\x01\x02")
    assert t.writes[-1] == wire.encode(wire.Mread(rw.CAPS, rw.CAPS_LEN))
    caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
    s.dataReceived(frames(Mdata(rw.CAPS, caps.encode())))
    want = rw.Attach(3, abi.digest(WASM), b"\x01\x02", b"\x01" + WASM).frame()
    assert t.writes[-1] == want
    s.dataReceived(frames(Result()))
    reflex = result_of(d)
    assert s.reflex(3) is reflex
    s.dataReceived(rw.Report(3, 5, b"hi").frame() + rw.frame(rw.RREPORT, b"\x03"))  # 2nd short
    assert result_of(reflex.next_report()) == rw.Report(3, 5, b"hi")
    s.dataReceived(rw.Detached(3, 6, rw.STAT_SLOW, "deadline").frame())
    notice = result_of(reflex.detached)
    assert notice.reason == rw.STAT_SLOW and s.reflex(3) is None
    d2 = s.detach_reflex(3)
    assert t.writes[-1] == rw.detach_frame(3)
    s.dataReceived(frames(Result(int(Status.ESKTNOTOPEN))))
    with pytest.raises(RequestFailed, match="ESKTNOTOPEN"):
        result_of(d2)
    assert s.close_reason is None  # the session goes on


def test_forbidden_and_bad_arguments() -> None:
    s, _t, _ = on_string_transport()
    d = s.attach_reflex(1, WASM)
    s.dataReceived(frames(Mdata(rw.CAPS, rw.Caps(flags=0).encode())))
    with pytest.raises(ReflexUnsupported, match="forbids"):
        result_of(d)
    with pytest.raises(ValueError):
        result_of(s.attach_reflex(1, WASM, bytes(1025)))
    with pytest.raises(ValueError):
        result_of(s.reflex_state(1, 1000, 100))
    with pytest.raises(ValueError):
        result_of(s.configure_reflex(1, bytes(10), 1020))


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (Status.ECRTBADHDAT, "not listed in the certificate chain"),
        (Status.EUNKFAULT, "reflex_init returned non-zero or crashed"),
        (Status.ESKTINUSE, "attached to this socket already"),
    ],
)
def test_a_refused_attach_says_why_in_reflex_terms(status: Status, words: str) -> None:
    """The generic texts said "bad eBPF" (ECRTBADHDAT) and "a raw socket could not be
    opened" (EUNKFAULT, a crashing reflex_init)."""
    s, _t, _ = on_string_transport()
    d = s.attach_reflex(2, WASM)
    caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
    s.dataReceived(frames(Mdata(rw.CAPS, caps.encode())))
    s.dataReceived(frames(Result(int(status))))
    with pytest.raises(RequestFailed) as caught:
        result_of(d)
    text = str(caught.value)
    assert words in text and "reflex on socket 2" in text and status.name in text
    assert "eBPF" not in text and "raw socket" not in text
    assert caught.value.status == status


def test_a_module_over_the_endpoints_cap_is_refused_before_sending() -> None:
    from packetlab.endpoint.monitors import MAX_MODULE

    assert abi.MAX_MODULE == MAX_MODULE
    s, t, _ = on_string_transport()
    sent = len(t.writes)
    with pytest.raises(ValueError, match="at most 1048576"):
        result_of(s.attach_reflex(1, WASM + bytes(MAX_MODULE)))
    assert len(t.writes) == sent


def test_reports_nobody_takes_are_kept_within_a_byte_budget() -> None:
    """A hostile endpoint's rreports: up to 100,000 of up to 1 MiB each were kept for a
    reflex whose reports the experiment does not take (GBs). Now a report longer than
    any reflex writes (`abi.MAX_REPORT`) is not taken as one (counted as unknown), and
    at most `MAX_REPORT_BYTES` of the rest are kept, the oldest dropped and counted."""
    from packetlab.controller.reflexes import MAX_REPORT_BYTES

    s, _, _ = on_string_transport()
    d = s.attach_reflex(3, WASM)
    caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
    s.dataReceived(frames(Mdata(rw.CAPS, caps.encode()), Result()))
    reflex = result_of(d)
    for _ in range(20):
        s.dataReceived(rw.Report(3, 1, b"x" * 1_000_000).frame())
    assert not reflex.reports and s.unknown_messages == 20
    n = MAX_REPORT_BYTES // abi.MAX_REPORT + 100
    for i in range(n):
        s.dataReceived(rw.Report(3, i, b"r" * abi.MAX_REPORT).frame())
    assert reflex.reports_dropped == 100
    assert sum(len(r.data) for r in reflex.reports) <= MAX_REPORT_BYTES
    assert result_of(reflex.next_report()).time == 100  # the oldest kept
    assert s.close_reason is None


def test_detaching_a_reflex_the_endpoint_detached_says_so() -> None:
    """After a reflex crashed (rdetached), `reflex.detach()` failed with `rdetach failed:
    ESKTNOTOPEN (0x33): that socket is not open` (seen against a real endpoint, session
    31): the socket was open, only the reflex was gone. Now the words are the reflex's,
    with the endpoint's reason."""
    s, t, _ = on_string_transport()
    d = s.attach_reflex(1, WASM)
    caps = rw.Caps(flags=rw.CAPS_ALLOWED, params_len=1024, state_len=1024, max_emits=64)
    s.dataReceived(frames(Mdata(rw.CAPS, caps.encode()), Result()))
    reflex = result_of(d)
    s.dataReceived(rw.Detached(1, 6, rw.STAT_SLOW, "deadline of 100 ms exceeded").frame())
    d2 = reflex.detach()
    assert t.writes[-1] == rw.detach_frame(1)
    s.dataReceived(frames(Result(int(Status.ESKTNOTOPEN))))
    with pytest.raises(RequestFailed) as caught:
        result_of(d2)
    text = str(caught.value)
    assert text == (
        "no reflex is attached to socket 1 (the endpoint detached it: deadline of 100 ms "
        "exceeded) (ESKTNOTOPEN)"
    )
    assert caught.value.status == Status.ESKTNOTOPEN
    d3 = s.detach_reflex(4)  # never attached: no reason to give
    s.dataReceived(frames(Result(int(Status.ESKTNOTOPEN))))
    with pytest.raises(RequestFailed, match=r"^no reflex is attached to socket 4 \(ESKTNOTOPEN\)$"):
        result_of(d3)
    assert s.close_reason is None


def test_a_refused_sends_errid_is_named() -> None:
    """A flooding reflex against a real endpoint: `status()` gave `denied=48,
    lasterr=57`, a number to look up; `lasterr_text` names it as an nsend's refusal."""
    from packetlab.controller.reflexes import ReflexStatus

    st = ReflexStatus(1, 2, 80, 48, 0, 0, int(Status.ESKTPKTDENY), bytes(32))
    assert st.lasterr_text.startswith("ESKTPKTDENY (0x39): send denied")
    assert ReflexStatus(1, 2, 80, 0, 0, 0, 0, bytes(32)).lasterr_text == ""


def test_status_shows_the_sends_the_reflex_was_refused() -> None:
    """`status()` had no field for the sends past 64 a call (answered -1 to the reflex):
    a flooding reflex showed `sent=128, denied=0` for 200 asked. Now `refused`, read
    from the block's u32 at 0x01C (zeros from an older endpoint: 0)."""
    s, _t, _ = on_string_transport()
    d = s.reflex_status(1)
    head = rw.BLOCK_HEAD.pack(1, 2, 128, 0, 0, 32, 0, 80, bytes(32))
    s.dataReceived(frames(Mdata(rw.block_addr(1), head)))
    st = result_of(d)
    assert (st.runs, st.sent, st.denied, st.reports, st.refused) == (2, 128, 0, 32, 80)
    d = s.reflex_status(1)
    old = bytes(head[: rw.B_REFUSED]) + bytes(4) + head[rw.B_REFUSED + 4 :]
    s.dataReceived(frames(Mdata(rw.block_addr(1), old)))
    assert result_of(d).refused == 0
