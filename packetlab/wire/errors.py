"""Errors of the wire layer. All are ValueErrors; none is raised for an unknown type."""

from __future__ import annotations


class WireError(ValueError):
    """Base of every error the wire layer raises on bad input."""


class MalformedMessage(WireError):
    """A known message type whose body breaks its rules (§1.1: answer ECTLBADMSG).

    `offset` is the byte offset inside the body where the rule broke.
    """

    def __init__(self, msgtype: int, offset: int, rule: str) -> None:
        self.msgtype = msgtype
        self.offset = offset
        self.rule = rule
        super().__init__(f"malformed message type 0x{msgtype:02x} at body offset {offset}: {rule}")


class EncodeError(WireError):
    """A message object cannot be encoded (a field out of range, wrong size, ...)."""


class FrameTooLarge(WireError):
    """A frame header announces a body larger than the receiver accepts."""

    def __init__(self, offset: int, length: int, limit: int) -> None:
        self.offset = offset
        self.length = length
        self.limit = limit
        super().__init__(
            f"frame at stream offset {offset} announces a {length}-byte body (limit {limit})"
        )


class RuleError(Exception):
    """A declared rule failed while a fast path ran; `rule` is its text. Internal: the
    codec turns it into MalformedMessage or EncodeError. (`packetlab.wire.nodes.RuleError`,
    which construct's own parse/build raises, is one of these.)"""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule
