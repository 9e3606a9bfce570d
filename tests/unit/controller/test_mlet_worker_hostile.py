"""The manager's end of one endpoint (`EndpointWorker`, the pktxpmgr side) against an
endpoint that stalls or floods during the setup: a clear error and bounded memory."""

from __future__ import annotations

import socket
import struct
from typing import cast

from ctl_fakes import AbortLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, Logger, formatEvent

from packetlab import wire
from packetlab.controller.mlet import MAX_LINFO, MAX_LINFO_BYTES, SETUP_TIMEOUT, EndpointWorker
from packetlab.wire import vmem
from packetlab.wire.constants import LINFO_INFO_MAX

U8 = st.integers(0, 255)


def worker() -> tuple[EndpointWorker, AbortLog, MemoryReactorClock, list[socket.socket]]:
    reactor = MemoryReactorClock()
    launched: list[socket.socket] = []
    w = EndpointWorker(
        reactor, setup_for=lambda w: [b"\x01wasm"], launch=lambda w, s: launched.append(s),
        done=lambda w: None,
    )  # fmt: skip
    t = AbortLog()
    w.makeConnection(t)
    return w, t, reactor, launched


def test_an_endpoint_that_never_answers_the_setup_is_given_up() -> None:
    w, t, reactor, launched = worker()
    w.dataReceived(wire.encode(wire.Result()))  # the cdata; start never answered
    reactor.advance(SETUP_TIMEOUT - 1)
    assert w.state == "setup" and w.error is None
    reactor.advance(1)
    assert w.error == f"endpoint did not answer start within {SETUP_TIMEOUT:g} s"
    assert t.aborted and w.state == "closed" and not launched
    assert w.result()["status"] == "failed"


def test_the_setup_timer_ends_with_the_setup() -> None:
    w, _, reactor, launched = worker()
    w.dataReceived(
        wire.encode(wire.Result())
        + wire.encode(wire.Result())
        + wire.encode(wire.Mdata(0x10030000, bytes(256)))
    )
    for s in launched:
        s.close()
    assert not [c for c in reactor.getDelayedCalls() if c.active()]


def test_a_notification_answering_the_setup_is_named() -> None:
    w, _, _, _ = worker()
    w.dataReceived(wire.encode(wire.Ndata(1, 4, 6, 0, b"x")))
    assert w.error == "endpoint refused cdata: it answered with ndata, not a result"


def test_a_linfo_flood_is_bounded() -> None:
    w, _, _, _ = worker()
    w.dataReceived(wire.encode(wire.Linfo(b"monitor", b"\0\0", b"hi")) * (MAX_LINFO + 50))
    assert len(w.linfo) == MAX_LINFO and w.linfo_dropped == 50


def test_a_frame_bigger_than_any_endpoint_sends_is_refused() -> None:
    w, t, _, _ = worker()
    w.dataReceived(b"\x62\xff\xff\xff" + bytes(100))
    assert w.error == (
        "endpoint sent a bad frame: frame at stream offset 0 announces a 16777215-byte "
        "body (limit 1048576)"
    )
    assert t.disconnecting and w.state == "closed"


def test_an_unknown_type_during_the_setup_is_ignored_not_raised() -> None:
    # UnknownType is not a WireError: it left dataReceived as a traceback.
    w, _, _, launched = worker()
    w.dataReceived(b"\x9a\x00\x00\x01z")
    assert w.state == "setup" and w.error is None
    w.dataReceived(wire.encode(wire.Result()) * 2 + wire.encode(wire.Mdata(0x10030000, b"ep\0")))
    assert w.state == "relay" and w.hostid == "ep" and len(launched) == 1
    for s in launched:
        s.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.builds(
                lambda t, b: struct.pack(">I", t << 24 | len(b)) + b,
                st.sampled_from([0x40, 0x41, 0x60, 0x62, 0x65, 0x68, 0x21, 0x9A]) | U8,
                st.binary(max_size=24),
            ),
            st.builds(lambda n: struct.pack(">I", n), st.integers(0, 0xFFFFFFFF)),
            st.binary(max_size=8),
        ),
        max_size=12,
    ),
    st.integers(1, 16),
)
def test_hostile_streams_during_the_setup_end_in_a_stated_error_or_go_on(
    pieces: list[bytes], cut: int
) -> None:
    w, t, reactor, launched = worker()
    stream = b"".join(pieces)
    for i in range(0, len(stream), cut):
        w.dataReceived(stream[i : i + cut])  # never raises
    assert w.state in ("setup", "relay", "closed")
    assert w.state != "closed" or (w.error and t.disconnecting)
    assert len(w.linfo) <= MAX_LINFO
    reactor.advance(SETUP_TIMEOUT)
    assert w.state != "setup"  # nothing waits for ever
    for s in launched:
        s.close()


def logged(w: EndpointWorker) -> list[str]:
    """The worker's log lines from now on (its class logger, replaced on the instance)."""
    lines: list[str] = []
    w.log = Logger(observer=cast(ILogObserver, lambda e: lines.append(formatEvent(e))))
    return lines


def relaying() -> tuple[EndpointWorker, list[socket.socket]]:
    w, _, _, launched = worker()
    w.dataReceived(wire.encode(wire.Result()) * 2 + wire.encode(wire.Mdata(0x10030000, b"ep\0")))
    assert w.state == "relay"
    return w, launched


def test_frames_ignored_by_the_thousand_log_one_line_each_kind() -> None:
    # Each ignored frame logged its own line: 20,000 4-byte frames from a hostile
    # endpoint were 20,000 lines (2.9 MB of log) in the manager.
    w, _, _, launched = worker()
    lines = logged(w)
    w.dataReceived(b"\x00\x00\x00\x00" * 20000)  # unknown type, during the setup
    w.dataReceived(wire.encode(wire.Result()) * 2 + wire.encode(wire.Mdata(0x10030000, b"ep\0")))
    w.dataReceived(b"\x65\x00\x00\x00" * 20000)  # malformed linfo, while relaying
    assert w.state == "relay"
    assert len(lines) == 2, lines[:5]
    assert "unknown message type 0x00 during the setup; ignored" in lines[0]
    assert "bad linfo ignored" in lines[1]
    w.finish(None)
    assert len(lines) == 3 and "39998 more frames ignored" in lines[2], lines[2:]
    for s in launched:
        s.close()


def test_linfo_kept_and_logged_is_bounded_in_bytes() -> None:
    # 140 linfo of 1 MB each (under the 1 MiB frame cap) were all kept, logged in full and
    # written to the results file: +128 MB of memory, log and results per endpoint.
    w, launched = relaying()
    lines = logged(w)
    huge = wire.encode(wire.Linfo(b"monitor", b"\0\0", b"i" * (LINFO_INFO_MAX + 1)))
    big = wire.encode(wire.Linfo(b"monitor", b"\0\0", b"i" * LINFO_INFO_MAX))
    w.dataReceived(huge * 3 + big * 100)
    kept = sum(len(e["info"]) + len(e["name"]) + len(e["aux"]) for e in w.linfo)
    assert kept <= MAX_LINFO_BYTES and len(w.linfo) == MAX_LINFO_BYTES // (LINFO_INFO_MAX + 9)
    assert sum(len(line) for line in lines) < 8192, [len(line) for line in lines]
    assert any(f"info of {LINFO_INFO_MAX + 1} " in line for line in lines), lines
    for s in launched:
        s.close()


def test_the_hostid_is_at_most_the_field_it_was_read_from() -> None:
    w, _, _, launched = worker()
    w.dataReceived(
        wire.encode(wire.Result()) * 2
        + wire.encode(wire.Mdata(0x10030000, b"h" * 300 + b"\n" + b"x" * 300000))
    )
    assert w.hostid == "h" * vmem.HOSTID.size
    for s in launched:
        s.close()
