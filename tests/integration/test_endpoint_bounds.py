"""Frames at their length bounds and in the wrong state, against a real endpoint
(session 18's adversarial pass; PROTOCOL.md §1.1, §1.2, §1.4).

Each case is the exact bytes a hostile controller sends and the exact reply §1.1 gives
it: an unknown type is `result(ECTLNOTSUP)` and the session goes on, a known type whose
body breaks its length rule is `result(ECTLBADMSG)` and a close, in SETUP and in IDLE;
a request of the other phase (a second start, cdata after start) is ECTLNOTSUP. After
every case that keeps the session, an mread of the HostID still answers (it serves on);
a flood of refused frames costs a bounded number of log lines; no traceback is logged.
"""

from __future__ import annotations

import pytest
from conftest import EndpointProcess

from packetlab import wire
from packetlab.wire import vmem

BADMSG = wire.encode(wire.Result(0x10))
NOTSUP = wire.encode(wire.Result(0x11))
OK = wire.encode(wire.Result(0))
OK_MSG = wire.Result(0)
TOP = 2**32


def h(t: int, n: int, body: bytes | None = None) -> bytes:
    return bytes([t]) + n.to_bytes(3, "big") + (bytes(n) if body is None else body)


# name -> (started, bytes sent, reply expected, closed after)
CASES: dict[str, tuple[bool, bytes, bytes, bool]] = {
    # §1.1: an unknown type answers ECTLNOTSUP and the session goes on, in both phases
    "unknown 0x00 in setup": (False, h(0x00, 0), NOTSUP, False),
    "unknown 0x25 in idle": (True, h(0x25, 3), NOTSUP, False),
    "unknown 0x3f in idle": (True, h(0x3F, 0), NOTSUP, False),
    "unknown 0x8f in idle": (True, h(0x8F, 1), NOTSUP, False),
    "a result sent to the endpoint": (True, h(0x40, 0), NOTSUP, False),
    # §1.4 step 3/4: requests of the other phase
    "a second start": (True, h(0x21, 0), NOTSUP, False),
    "cdata after start": (True, h(0x20, 8, b"\x07monitor"), NOTSUP, False),
    "mread in setup": (False, wire.encode(wire.Mread(vmem.HOSTID.addr, 4)), NOTSUP, False),
    "end (0x22) in setup": (False, h(0x22, 0), NOTSUP, False),
    "cont (0x24) in idle": (True, h(0x24, 0), NOTSUP, False),
    # §1.2 length rules: one short, one long, zero; the malformed close in each phase
    "start of 1 byte": (False, h(0x21, 1), BADMSG, True),
    "yield of 7 bytes": (True, h(0x23, 7), BADMSG, True),
    "yield of 9 bytes": (True, h(0x23, 9), BADMSG, True),
    "mread of 5 bytes": (True, h(0x28, 5), BADMSG, True),
    "mread of 7 bytes": (True, h(0x28, 7), BADMSG, True),
    "mread of length 0": (True, h(0x28, 6), BADMSG, True),
    "mread one past 2^32": (
        True,
        h(0x28, 6, (TOP - 0xFFFE).to_bytes(4, "big") + b"\xff\xff"),
        BADMSG,
        True,
    ),
    "mwrite of 3 bytes": (True, h(0x29, 3), BADMSG, True),
    "mwrite one past 2^32": (True, h(0x29, 6, (TOP - 1).to_bytes(4, "big") + b"ab"), BADMSG, True),
    "nopen of 6 bytes": (True, h(0x2A, 6), BADMSG, True),
    "nclose of 0 bytes": (True, h(0x2B, 0), BADMSG, True),
    "nclose of 2 bytes": (True, h(0x2B, 2), BADMSG, True),
    "nsend of 12 bytes": (True, h(0x2C, 12), BADMSG, True),
    "ncap of 11 bytes": (True, h(0x2D, 11), BADMSG, True),
    "nctl of 11 bytes": (True, h(0x2E, 11), BADMSG, True),
    "cdata with hintlen past the body": (False, h(0x20, 5, b"\xff" + bytes(4)), BADMSG, True),
    "cdata of 0 bytes": (False, h(0x20, 0), BADMSG, True),
    "xcert (broker message) of 0 bytes": (True, h(0x30, 0), BADMSG, True),
    "xnotify with channellen 0": (True, h(0x70, 1), BADMSG, True),
    # at the bound, legal: answered, the session goes on
    "mwrite of 4 bytes (no data)": (True, h(0x29, 4), OK, False),
    "mwrite of the last byte": (True, h(0x29, 5, (TOP - 1).to_bytes(4, "big") + b"x"), OK, False),
    "nclose of a free socket": (True, h(0x2B, 1, b"\xff"), wire.encode(wire.Result(0x33)), False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_frame_at_its_bound_gets_the_spec_reply(
    shared_endpoint: EndpointProcess, name: str
) -> None:
    started, sent, reply, closes = CASES[name]
    c = shared_endpoint.accept()
    try:
        if started:
            c.start()
        c.send(sent)
        got = c.recv()
        assert wire.encode(got) == reply, (name, got)
        if closes:
            assert c.closed_by_peer(), name
        else:
            if not started:
                c.start()
            assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"  # still served
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)


def test_the_largest_mread_at_the_top_of_the_address_space(
    shared_endpoint: EndpointProcess,
) -> None:
    c = shared_endpoint.accept()
    try:
        c.start()
        assert c.mread(TOP - 0xFFFF, 0xFFFF) == bytes(0xFFFF)
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)


@pytest.mark.parametrize("cut", [1, 3, 4 + 100])
def test_a_frame_cut_short_by_the_close_ends_the_session_quietly(
    shared_endpoint: EndpointProcess, cut: int
) -> None:
    """A header (or a 16 MiB body) cut short by the controller's close: nothing to
    answer, the session ends with one line, the next session is served."""
    c = shared_endpoint.accept()
    c.start()
    c.send(h(0x29, 0xFFFFFF, b"")[:cut] + bytes(max(0, cut - 4)))
    c.close()
    shared_endpoint.controllers.remove(c)
    nxt = shared_endpoint.accept()
    nxt.start()
    assert nxt.mread(vmem.HOSTID.addr, 4) == b"pkte"
    nxt.close()
    shared_endpoint.controllers.remove(nxt)


def test_refused_frames_by_the_thousand_cost_a_few_log_lines(
    shared_endpoint: EndpointProcess,
) -> None:
    """5,000 malformed private-use (reflex) frames, each answered ECTLBADMSG with the
    session kept: were 5,000 log lines; now at most 20 a minute. Unknown types and
    refused requests log nothing per frame."""
    c = shared_endpoint.accept()
    c.start()
    before = shared_endpoint.logfile.read_text().count("\n")
    c.send(h(0x90, 3) * 5000 + h(0x00, 0) * 5000 + h(0x2B, 1, b"\x07") * 5000)
    for _ in range(15000):
        assert isinstance(c.recv(), wire.Result)
    assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"
    text = shared_endpoint.logfile.read_text()
    grew = text.count("\n") - before
    assert grew <= 25, text[-3000:]
    c.close()
    shared_endpoint.controllers.remove(c)
    assert "Traceback" not in text and "Unhandled" not in text, text[-3000:]


def _boundaries() -> list[int]:
    """Each named region's first and last byte and the bytes either side: the system
    block, socket blocks 0, 1, 254 and 255, the address space's ends (§2.2)."""
    addrs = {vmem.SYS_BASE + vmem.SYS_SPAN, vmem.SKT_BASE + vmem.SKT_SPAN, TOP - 1}
    for name in dir(vmem):
        region = getattr(vmem, name)
        if not isinstance(region, vmem.Region):
            continue
        if region.addr < vmem.SKT_STRIDE:  # a socket field: in four socket blocks
            bases = [vmem.SKT_BASE + k * vmem.SKT_STRIDE for k in (0, 1, 254, 255)]
        else:
            bases = [0]
        for base in bases:
            start = base + region.addr
            for a in (start - 1, start, start + region.size - 1, start + region.size):
                if 0 <= a < TOP:
                    addrs.add(a)
    return sorted(addrs)


def test_every_region_boundary_read_and_written(shared_endpoint: EndpointProcess) -> None:
    """mread of 1 to 65,535 bytes and mwrite of 1 to 8 bytes at every boundary of the
    map, with sockets 1 and 255 open: every answer as §2.1 says
    (mdata of the length asked, SUCCESS), the budgets back to 0 at the end."""
    c = shared_endpoint.accept()
    try:
        c.start()
        lo = b"\x7f\x00\x00\x01"
        for sktid in (1, 255):
            c.send(wire.Nopen(sktid=sktid, family=4, proto=17, rbufsz=1 << 20, laddr=lo, lport=0))
            assert c.response() == wire.Result(0)
        reads = writes = 0
        for a in _boundaries():
            for n in (1, 2, 4, 8, 0xFFFF):
                if a + n <= TOP:
                    r = c.request(wire.Mread(addr=a, len=n))
                    assert isinstance(r, wire.Mdata) and (r.addr, len(r.data)) == (a, n), (a, n)
                    reads += 1
            for n in (1, 2, 3, 8):
                if a + n <= TOP:  # odd bytes into RBUFSZ, NOTIFMASK...: all legal
                    assert c.request(wire.Mwrite(addr=a, data=bytes([a & 0xFF]) * n)) == OK_MSG
                    writes += 1
        assert reads > 1000 and writes > 800
        for sktid in (1, 255):  # whatever the writes left in the masks and budgets
            c.send(wire.Nclose(sktid=sktid))
            assert c.response() == wire.Result(0)
        assert c.mread(vmem.BUFUSED.addr, 4) == bytes(4)
        assert "Traceback" not in shared_endpoint.output()
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)
