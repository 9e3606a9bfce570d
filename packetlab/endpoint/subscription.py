"""What the endpoint sends to its broker, and how it reads the answers (PROTOCOL.md §5.3;
BROKER-PROXY-OBSERVED.md §1.2 to §1.4). Sans-IO.

`plan_subscription` derives the frames from the configuration exactly as the reference:

* one `xcert` per certificate of `SubPrivCertChainPath`, in the order listed;
* `xsub(chlist, eopkey, dattr)`: chlist is the `BrokerChannel` entries (hex), with the
  auto-extracted channels (the AKIs of the listed certs, last listed first) in place of
  an empty entry or of an empty `BrokerChannel` (`AutoExtractChannel 1`); eopkey is the
  configured EOp key that signed the last listed cert; dattr is `EndpointAttr` verbatim.

`BrokerReader` then judges the broker's frames: one SUCCESS per message, then a stream of
xnotify. Anything else means reset (the reference does the same; we back off).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from packetlab.ppks import Certificate, key_id
from packetlab.wire.codec import encode
from packetlab.wire.framer import Item, Malformed
from packetlab.wire.messages import Result, Xcert, Xnotify, Xsub

__all__ = ["BrokerReader", "Event", "SubscriptionError", "SubscriptionPlan", "plan_subscription"]


class SubscriptionError(ValueError):
    """The configuration cannot make a subscription; the message says which key."""


@dataclass(frozen=True)
class SubscriptionPlan:
    xcerts: tuple[bytes, ...]
    chlist: tuple[bytes, ...]
    eopkey: bytes
    dattr: bytes

    def frames(self) -> list[bytes]:
        """The messages in order: each goes out as its own write (its own TLS record)."""
        return [encode(Xcert(c)) for c in self.xcerts] + [
            encode(Xsub(list(self.chlist), self.eopkey, self.dattr))
        ]

    @property
    def results_expected(self) -> int:
        return len(self.xcerts) + 1


def plan_subscription(
    chain: Sequence[Certificate],
    eop_keys: Sequence[bytes],
    broker_channels: Sequence[str] | None,
    auto_extract: bool,
    endpoint_attr: str,
) -> SubscriptionPlan:
    """`chain`: the certs of SubPrivCertChainPath as listed; `eop_keys`: raw EOp keys of
    EndpointOpPubKeyPath; `broker_channels`: BrokerChannel entries (None when empty)."""
    if not chain:
        raise SubscriptionError("SubPrivCertChainPath is empty: broker mode needs the subcmd chain")
    root_aki = chain[-1].authority_key_id
    eopkey = next((k for k in eop_keys if key_id(k) == root_aki), None)
    if eopkey is None:
        raise SubscriptionError(
            "no EndpointOpPubKeyPath key signed the last cert of SubPrivCertChainPath "
            "(list the root-signed cert last, and its EOp key in EndpointOpPubKeyPath)"
        )
    auto = [c.authority_key_id for c in reversed(chain)]
    chlist: list[bytes] = []
    entries = broker_channels if broker_channels else [""]
    for entry in entries:
        if entry:
            chlist.append(bytes.fromhex(entry))
        elif auto_extract:
            chlist.extend(auto)
    if not chlist:
        raise SubscriptionError(
            "no channel to subscribe to: set BrokerChannel or AutoExtractChannel 1"
        )
    return SubscriptionPlan(
        tuple(c.der for c in chain),
        tuple(dict.fromkeys(chlist)),
        eopkey,
        endpoint_attr.encode("ascii"),
    )


class Event(enum.Enum):
    WAIT = "wait"
    SUBSCRIBED = "subscribed"
    NOTIFY = "notify"
    IGNORE = "ignore"  # xnotify without an xdescr (logged, link kept)
    RESET = "reset"


class BrokerReader:
    """Judges each frame from the broker: `feed(item) -> (Event, detail)`."""

    def __init__(self, results_expected: int) -> None:
        self.waiting = results_expected

    @property
    def subscribed(self) -> bool:
        return self.waiting == 0

    def feed(self, item: Item) -> tuple[Event, object]:
        if self.waiting:
            if isinstance(item, Result):
                if item.errid:
                    return Event.RESET, f"broker refused the subscription: 0x{item.errid:04x}"
                self.waiting -= 1
                return (Event.SUBSCRIBED, None) if not self.waiting else (Event.WAIT, None)
            return Event.RESET, f"expected a result, got {_kind(item)}"
        if isinstance(item, Xnotify):
            if not item.xdescr:
                return Event.IGNORE, "xnotify without an xdescr"
            return Event.NOTIFY, item
        return Event.RESET, f"unexpected {_kind(item)} from the broker"


def _kind(item: Item) -> str:
    if isinstance(item, Malformed):
        return f"malformed frame of type 0x{item.msgtype:02x}"
    return getattr(item, "NAME", type(item).__name__)
