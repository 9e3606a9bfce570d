"""The seam where request checks plug in: resource limits (PROTOCOL.md §4.5) and monitors (§8).

The session asks its `RequestGate` before handling nopen, nclose, nsend and ncap (monitors
run before the endpoint's own checks, §8.5), tells it the outcome afterwards, and asks it
about every received chunk before an ndata goes out. `OpenGate`, the default, allows
everything; the limits and monitor implementations replace it.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from packetlab.endpoint.sockets import Skt
from packetlab.wire.constants import Status
from packetlab.wire.messages import Message, Ncap, Nsend, Result

__all__ = [
    "NDATA_DELIVER",
    "NDATA_DROP",
    "NDATA_DROP_COUNTED",
    "NOPEN_LIMITS",
    "OpenGate",
    "RequestGate",
    "SessionRefused",
    "socket_error",
]

NDATA_DELIVER = -1  # check_ndata: send the ndata
NDATA_DROP = -2  # check_ndata: drop it silently (any value >= 0 is an nblock monerrid)
NDATA_DROP_COUNTED = -3  # check_ndata: drop it and count it (DROPSTAT, ndrop): a quota
#: A limit's refusals of an nopen (max_socket_count, valid_dest): answered only after the
#: session's socket checks (ESKTINUSE, ESKTNOPRFAM, ESKTNOPROTO, ESKTNOADDR), §1.3.
NOPEN_LIMITS = (int(Status.ENORES), int(Status.ESKTOPNDENY))


def socket_error(msg: Nsend | Ncap, skt: Skt | None) -> Status | None:
    """What an nsend/ncap is answered for its socket (§1.3): ESKTNOTOPEN when it is
    free, ESKTNOMATCH when the request's family/proto differ from the socket's. These come
    before a limit's ESKTPKTDENY (the session; the monitors' result callbacks)."""
    if skt is None:
        return Status.ESKTNOTOPEN
    if msg.family != skt.family or msg.proto != skt.proto:
        return Status.ESKTNOMATCH
    return None


class SessionRefused(Exception):
    """The controller's chain does not allow a session now (§1.4 step 2): the endpoint
    disconnects without one. `rule` names the limit."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule


class RequestGate(Protocol):
    #: Whether `check_ndata` must be called (False keeps it off the receive hot path).
    checks_ndata: bool

    def program(self, hint: bytes, data: bytes) -> Status | Deferred[Status]:
        """A `cdata` program during SETUP (hint "filter" or "monitor"): its result, or a
        Deferred of it while the program compiles in a worker thread (the session handles
        no further request until it fires; cancelled when the session ends first)."""
        ...

    def start(self) -> tuple[Result | None, list[bytes]]:
        """On `start`: an error result (the session then ends), or None and the frames to
        send after the start result (one linfo per monitor)."""
        ...

    def check(self, msg: Message) -> Result | None:
        """Before nopen/nclose/nsend/ncap: None to go on, or the result that answers it."""
        ...

    def done(self, msg: Message, errid: int) -> None:
        """After nopen/nclose/nsend/ncap was answered with `errid`."""

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        """NDATA_DELIVER, NDATA_DROP(_COUNTED), or a monerrid (0..65535) to send as nblock."""
        ...

    def close(self) -> None:
        """The session is over (flush persistent state)."""


class OpenGate:
    """No limits and no monitors."""

    #: The session skips the per-chunk call when this is False (the hot path).
    checks_ndata = False

    def program(self, hint: bytes, data: bytes) -> Status:
        return Status.ECRTBADHDAT  # no chain, so no digest can match (§1.4 step 3)

    def start(self) -> tuple[Result | None, list[bytes]]:
        return None, []

    def check(self, msg: Message) -> Result | None:
        return None

    def done(self, msg: Message, errid: int) -> None:
        pass

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        return NDATA_DELIVER

    def close(self) -> None:
        pass
