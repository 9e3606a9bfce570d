"""Exceptions of the controller API.

Every failure a researcher's experiment can see is one of these, so `except ControllerError`
catches them all. The status code of a failed request is kept as a `Status` member when the
code is known, as a plain int otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packetlab.wire import Message
    from packetlab.wire.constants import Status


def status_name(code: int) -> str:
    """`ESKTINUSE` for 0x32; `0x1234` for a code the protocol does not define."""
    from packetlab.wire.constants import status_name  # (`pktlab run --help`: no wire enums)

    return status_name(code)


def status_text(code: int) -> str:
    """`ESKTNOADDR (0x36): the local address is not one the endpoint exports...`: the
    name, the code and the one-line meaning declared with `Status`."""
    from packetlab.wire.constants import Status

    try:
        st = Status(code)
    except ValueError:
        return f"0x{code:04x} (a status code PacketLab does not define)"
    return f"{st.name} (0x{code:02x}): {st.meaning}"


def as_status(code: int) -> Status | int:
    from packetlab.wire.constants import Status

    try:
        return Status(code)
    except ValueError:
        return code


# Codes that are about what an nopen asked for (its socket id, protocol, addresses): the
# message repeats the request, since a bare "ESKTNOADDR" does not say which address.
_NOPEN_CODES = frozenset(
    (0x32, 0x34, 0x35, 0x36, 0x3A, 0x40, 0x42)
)  # ESKTINUSE ESKTNOPRFAM ESKTNOPROTO ESKTNOADDR ESKTOPNDENY ETCPNOPORT EUDPNOPORT


def _asked(request: Message, errid: int) -> str:
    """` (asked: UDP socket 0 from 10.9.9.9)` for a failed nopen; else empty."""
    from packetlab.wire import Nopen

    if not isinstance(request, Nopen) or errid not in _NOPEN_CODES:
        return ""
    from packetlab.controller.addresses import unpack_address

    proto = {0x00: "raw", 0x06: "TCP", 0x11: "UDP"}.get(request.proto, f"proto {request.proto}")
    text = f"{proto} socket {request.sktid}"
    try:
        local = unpack_address(request.family, request.laddr)
        if not local.is_unspecified or request.lport:
            text += f" from {local}" + (f" port {request.lport}" if request.lport else "")
        if request.raddr is not None and request.rport:
            text += f" to {unpack_address(request.family, request.raddr)} port {request.rport}"
    except ValueError:  # a hand-made Nopen with odd fields: say what is certain
        pass
    return f" (asked: {text})"


class ControllerError(Exception):
    """Base of every controller API error."""


class RequestFailed(ControllerError):
    """The endpoint answered a request with a non-SUCCESS `result`.

    `status` is the code (a `Status` when known), `name` its name, `request` the message
    that failed; `monindx`/`monerrid` are set for ECTLMONREJ / ECTLMONUKN (§1.2).
    """

    def __init__(
        self,
        request: Message,
        errid: int,
        monindx: int | None = None,
        monerrid: int | None = None,
    ) -> None:
        self.request = request
        self.status = as_status(errid)
        self.name = status_name(errid)
        self.monindx = monindx
        self.monerrid = monerrid
        text = f"{request.NAME} failed: {status_text(errid)}{_asked(request, errid)}"
        if monindx is not None:
            text += f", monitor {monindx}"
        if monerrid is not None:
            text += f" error {monerrid}"
        super().__init__(text)


class SendFailed(ControllerError):
    """An `ntag` reported that a queued nsend was not sent (errid ≠ SUCCESS, §3.3)."""

    def __init__(self, sktid: int, tag: int, time: int, errid: int) -> None:
        self.sktid = sktid
        self.tag = tag
        self.time = time
        self.status = as_status(errid)
        self.name = status_name(errid)
        super().__init__(f"nsend on socket {sktid} tag {tag} not sent: {status_text(errid)}")


class SocketClosed(ControllerError):
    """The socket was closed (nclose) before the awaited event happened."""

    def __init__(self, sktid: int, what: str = "event") -> None:
        self.sktid = sktid
        super().__init__(f"socket {sktid} was closed before its {what}")


# What a failed connect's state means. Our endpoint reports a refusal as the nstat RESET
# and an unreachable host as the nstat UNKNOWN; the reference only sets STAT (REFUSED,
# UNREACH, ...). `wait_connected` names the failure by STAT when the nstat is vaguer.
CONNECT_MEANING = {
    "REFUSED": "connection refused: the host answered the SYN with a reset, nothing "
    "listens on that port",
    "RESET": "reset before it was established (a refusal: nothing listens on that port)",
    "TIMEDOUT": "timed out: the SYN was never answered",
    "TIMEOUT": "timed out: the SYN was never answered",
    "UNREACH": "host or network unreachable from the endpoint: no route, no ARP/ND "
    "answer, or an ICMP unreachable in answer to the SYN",
    "UNKNOWN": "the endpoint did not say why: nstat UNKNOWN",
}


class ConnectFailed(ControllerError):
    """A TCP connect through the endpoint did not reach ESTABLISHED.

    `state` is the socket STAT (REFUSED, TIMEDOUT, UNREACH, ...) or the nstat code name that
    ended it, or "not established within N s". `to` ("192.0.2.1:80") names the peer when
    known; the message says what the state means.
    """

    def __init__(self, sktid: int, state: str, to: str | None = None) -> None:
        self.sktid = sktid
        self.state = state
        self.to = to
        where = f" to {to}" if to else ""
        meaning = CONNECT_MEANING.get(state)
        text = f"{state} ({meaning})" if meaning else state
        super().__init__(f"TCP connect on socket {sktid}{where} failed: {text}")


class ProtocolViolation(ControllerError):
    """The endpoint sent something the protocol does not allow (malformed frame, a response
    with no request waiting, an mdata for another address, ...). The session is closed."""


class AnswerTimeout(ControllerError):
    """(As `SessionClosed.cause`) requests waited `answer_timeout` seconds with no answer
    from the endpoint at all; the session was cut (an endpoint that never answers, or a
    frame whose length lies and never completes). Answers that keep coming, reads paused
    while the experiment takes from the full socket queue, and a suspended experiment do
    not count; paused reads with none taken do (the answers wait behind the unread
    notifications: the text names the socket)."""


class SessionClosed(ControllerError):
    """The session ended before the request or notification could complete.

    `cause` is the underlying error when the end was not a clean close: a
    `ProtocolViolation`, `AnswerTimeout`, `Suspended`, or the transport's connection-lost
    exception. The text says who closed, how many requests were left unanswered and
    whether a frame was cut short. `reason` is that text about the session alone: the
    message of one that cut an awaited ntag starts with which (`ntag 3 of socket 1 never
    came: session closed`).
    """

    def __init__(
        self, why: str, cause: BaseException | None = None, *, waiting: str | None = None
    ) -> None:
        self.cause = cause
        self.reason = why if cause is None else f"{why}: {cause}"
        super().__init__(self.reason if waiting is None else f"{waiting} never came: {self.reason}")

    def again(self) -> SessionClosed:
        """The same error as a new exception, for one more Deferred: an exception raised
        into several coroutines collects all their frames in its one traceback."""
        copy = SessionClosed.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        Exception.__init__(copy, *self.args)
        return copy


class Suspended(ControllerError):
    """The endpoint pre-empted this experiment (`suspd`, §1.4 step 6)."""

    def __init__(self) -> None:
        super().__init__("the endpoint suspended the experiment (suspd)")


class SetupFailed(ControllerError):
    """The session setup (`cdata` programs, `start`) was refused."""
