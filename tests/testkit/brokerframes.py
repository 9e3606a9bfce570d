"""Hand-built broker frames for tests at the broker's limits, over fakes
(tests/unit/broker/test_broker_at_limits.py) and over a real ``twistd pktbroker``
(tests/integration/test_spec36_bounds.py): an xpub/xsub on a public channel as pktxpmgr
sends it (O §3.3 pub_noeop: no xcerts, a zero eopkey)."""

from __future__ import annotations

#: the xdescr's two required pairs, for `padded`
BASE = b"controller_addr=127.0.0.1:20600;sni_key=k;"


def frame(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def channels(n: int) -> bytes:
    """A chlist of `n` 4-byte channels."""
    return b"".join(b"\x04" + i.to_bytes(4, "big") for i in range(n))


def padded(n: int, head: bytes = b"") -> bytes:
    """`head` then one x=yyy; pair, `n` bytes in all."""
    return head + b"x=" + b"y" * (n - len(head) - 3) + b";"


def pub(xd: bytes, chlist: bytes = b"\x06public") -> bytes:
    return frame(0x31, chlist + b"\x00" + bytes(32) + xd)


def sub(dattr: bytes = b"", chlist: bytes = b"\x06public") -> bytes:
    return frame(0x38, chlist + b"\x00" + bytes(32) + dattr)
