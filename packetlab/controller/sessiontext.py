"""What a controller session says when the endpoint breaks off: the loss, the cut frame,
a request field out of its wire range, and the likely reason a reference endpoint closed."""

from __future__ import annotations

from typing import Any

from packetlab import wire
from packetlab.wire import Cdata, Message, Mread, Nopen, Nsend, Start

# The width of every integer field a request carries (PROTOCOL.md §1.2).
_WIDTHS = {
    "sktid": 8, "family": 8, "proto": 8, "command": 8, "tag": 16, "len": 16, "lport": 16,
    "rport": 16, "addr": 32, "rbufsz": 32, "time": 64, "endtime": 64, "rhint": 64,
}  # fmt: skip


def field_error(msg: Message) -> ValueError | TypeError | None:
    """`nclose: sktid must be 0..255, got 300` for a field out of its wire range; a
    TypeError for one that is no int (`mread("a", 4)` said "can only concatenate str")."""
    for name, bits in _WIDTHS.items():
        value = getattr(msg, name, None)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            return TypeError(f"{msg.NAME}: {name} must be an int, got {type(value).__name__}")
        low = 1 if isinstance(msg, Mread) and name == "len" else 0  # one byte at least
        if not low <= value < 1 << bits:
            top = (1 << bits) - 1
            return wire.EncodeError(f"{msg.NAME}: {name} must be {low}..{top}, got {value}")
    return None


def loss_text(clean: bool, first: Message | None, waiting: int, framer: wire.Framer) -> str:
    """What a user needs to know of an unexpected loss: who closed (`clean`: the endpoint),
    what was left (`waiting` requests unanswered, the `first` of them; a cut frame)."""
    text = "the endpoint closed the connection" if clean else "connection lost"
    if first is not None:
        n = waiting
        text += f" with {n} request{'s' if n > 1 else ''} unanswered (first: {first.NAME})"
    text += partial_text(framer)
    if first is not None:
        text += loss_hint(first)
    return text


def partial_text(framer: wire.Framer) -> str:
    """`, in the middle of a frame (...)` when the stream stopped inside one."""
    part = framer.partial
    if part is None:
        return ""
    msgtype, held, whole = part
    if whole < 0:
        return f", in the middle of a frame header ({held} of 4 bytes)"
    if held < whole:
        return f", in the middle of a frame ({type_name(msgtype)}, {held} of {whole} bytes)"
    return ""  # whole frames not read yet (paused): nothing was cut


def loss_hint(req: Message) -> str:
    """Why a reference endpoint closes instead of answering `req`, where it is known."""
    if isinstance(req, Cdata | Start):
        return (
            " (an endpoint closes before answering the setup when it refuses the "
            "experiment after TLS: exp_priority above the chain's max_num_priority, the "
            "certificates' experiment time or validity used up, or (ours) its accounting "
            "database unable to record; §1.4 step 2)"
        )
    if isinstance(req, Nopen) and req.proto == 6 and req.raddr is None:
        return " (a reference 1.1.0 endpoint exits on a TCP listen nopen: §3.1)"
    if isinstance(req, Nsend | Nopen) and req.proto == 17 and req.family == 6:
        return " (a reference 1.1.0 endpoint aborts on UDP over IPv6: §3.1)"
    return ""


def type_name(msgtype: int) -> str:
    """A message type's name (`nstat`), or `type 0x7f` for an undefined one."""
    cls: Any = wire.BY_TYPE.get(msgtype)
    return cls.NAME if cls is not None else f"type 0x{msgtype:02x}"
