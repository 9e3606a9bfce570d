"""A raw socket capturing on an endpoint, shared by the measurements that probe with
packets they build themselves (traceroute, MDA, ping, alias resolution, DNS's closed-port
check): pick the source address, open the raw socket with an ncap filter, read its
notifications with a deadline, parse what it captured, and read a probe's ntag time."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred

from packetlab.afterinput import timeout_after_input
from packetlab.clockstep import steady
from packetlab.controller import (
    ControllerError,
    EndpointSession,
    Note,
    RequestFailed,
    Socket,
    StopSignal,
    SystemInfo,
    read_system_info,
    read_time,
    tcpdump_filter,
)
from packetlab.measure.replies import ParseError, Reply, parse_reply
from packetlab.wire import Ndata, Ntag, Status, TransSup

__all__ = [
    "CAPTURE_FILTERS",
    "MeasureError",
    "RawCapture",
    "as_target",
    "close_capture",
    "next_note",
    "ntag_time",
    "open_capture",
    "parse_ndata",
    "pick_source",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Only ICMP of the probe's family: errors quoting our probes and echo replies. Everything
# else stays in the endpoint's kernel.
CAPTURE_FILTERS = {4: "icmp", 6: "icmp6"}
SETUP_SLACK_S = 30.0  # capture time beyond what the probes need (request round trips)


class MeasureError(ControllerError):
    """The endpoint cannot run this measurement (no raw sockets, no address of the family)."""


def as_target(value: str | Address) -> Address:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"target {value!r} is not an IPv4 or IPv6 address") from None


def pick_source(addresses: Sequence[Address], dst: Address) -> Address:
    """The exported address to send from: of dst's family, loopback only for a loopback
    dst, link-local only for a link-local dst; the first one that fits otherwise."""
    same = [a for a in addresses if a.version == dst.version]
    if not same:
        raise MeasureError(
            f"the endpoint exports no IPv{dst.version} address, so it cannot probe {dst}"
        )

    def scope(a: Address) -> int:  # 0 = the same kind of address as dst, larger = worse
        if a.is_loopback != dst.is_loopback:
            return 2
        return int(a.is_link_local != dst.is_link_local)

    return min(same, key=scope)


@dataclass
class RawCapture:
    """An open raw socket capturing `expression` on the endpoint until `endtime` (ns)."""

    session: EndpointSession
    sktid: int
    sock: Socket
    src: Address
    endtime: int
    opened_at: int  # endpoint time read just before the nopen


async def open_capture(
    session: EndpointSession,
    dst: Address,
    *,
    src: Address | None,
    duration_s: float,
    expression: str | None = None,
    known: tuple[SystemInfo, int] | None = None,
) -> RawCapture:
    """Read the endpoint's addresses (unless `src` is given), open a raw socket there and
    capture for `duration_s` seconds (plus slack) with a tcpdump filter (default: ICMP of
    dst's family). Raises MeasureError when the endpoint has no raw sockets. `known`:
    the system block and the endpoint's time, read moments ago (no reads then: against
    the reference endpoint, which holds every answer with a body for the peer's delayed
    ACK, each batch of reads costs ~40 ms)."""
    if known is not None:
        info, now = known
    else:
        info_d = read_system_info(session)
        time_d = read_time(session)
        info = await info_d
        now = await time_d
    if not info.transsup & TransSup.RAW:
        raise MeasureError(
            "the endpoint does not offer raw sockets (TRANSSUP has no raw; it needs "
            "TransprotoSup raw,... in endpt.conf and CAP_NET_RAW)"
        )
    if src is None:
        src = pick_source(info.addresses, dst)
    elif src.version != dst.version:
        raise ValueError(f"source {src} and target {dst} are different IP versions")
    program = tcpdump_filter(expression or CAPTURE_FILTERS[dst.version])
    sktid = session.free_sktid()
    try:
        sock = await session.nopen_raw(sktid, laddr=src)
    except RequestFailed as e:
        if e.status != Status.ESKTNOADDR:
            raise
        have = ", ".join(str(a) for a in info.addresses) or "none"
        raise MeasureError(
            f"ESKTNOADDR: {src} is not one of the endpoint's addresses (it has {have})"
        ) from None
    endtime = now + int((duration_s + SETUP_SLACK_S) * 1e9)
    try:
        await session.ncap(sktid, program, endtime=endtime)
    except BaseException:
        await close_capture(RawCapture(session, sktid, sock, src, endtime, now))
        raise
    return RawCapture(session, sktid, sock, src, endtime, now)


async def close_capture(cap: RawCapture) -> None:
    """nclose, ignoring a session that already ended (its error is reported elsewhere)."""
    if cap.sock.ended:
        return
    try:
        await cap.session.nclose(cap.sktid)
    except ControllerError:
        pass


async def next_note(
    cap: RawCapture, deadline: float, stop: StopSignal | None = None
) -> Note | None:
    """The capture socket's next notification, or None once `deadline` (reactor seconds)
    has passed or `stop` was requested. Raises MeasureError when the endpoint closed the
    socket."""
    left = deadline - steady(cap.session.reactor)
    if left <= 0 or (stop is not None and stop.requested):
        return None
    got = cap.sock.get(timeout=left)
    asked: Deferred[str] | None = None
    if stop is not None:
        asked = stop.when_requested()
        asked.addCallback(lambda _: got.cancel())
        asked.addErrback(lambda f: f.trap(CancelledError))
    try:
        note = await got
    except CancelledError:
        return None
    finally:
        if asked is not None and not asked.called:
            asked.cancel()
    if note is None and cap.sock.ended:
        raise MeasureError("the endpoint closed the capture socket")
    return note


def parse_ndata(note: object) -> tuple[Reply, int] | None:
    """(reply, kernel receive time) of a captured packet, or None for anything else."""
    if not isinstance(note, Ndata):
        return None
    try:
        return parse_reply(note.data), note.time
    except ParseError:
        return None


async def ntag_time(d: Deferred[Ntag] | None, reactor: Any, timeout: float) -> int | None:
    """The send time of an ntag Deferred, None if it does not come within `timeout`."""
    if d is None:
        return None
    box: list[int | None] = [None]

    def got(tag: Ntag) -> None:
        box[0] = tag.time

    d.addCallback(got)
    await timeout_after_input(d, timeout, reactor)
    return box[0]
