"""Seeded mutation of PacketLab frames for the adversarial tests (session 32, fuzz32).

`tests/integration/test_fuzz32_*.py` throw these at real daemons. Every input comes from a
`random.Random(seed)` so a failure names its seed and reruns byte for byte
(`PKTLAB_FUZZ_SEED` replaces the default seed of every fuzz test; docs/testing.md).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator

from spec_traces import TRACES

from packetlab import wire

__all__ = [
    "LOG_ALARMS",
    "every_type_and_size",
    "log_alarms",
    "memory_requests",
    "mutate",
    "rng_for",
    "trace_frames",
    "trace_sessions",
    "wire_safe",
]

#: What must never be in a daemon's log after hostile input.
LOG_ALARMS = ("Traceback", "Unhandled error", "Unhandled Error", "CRITICAL")


def rng_for(name: str) -> tuple[random.Random, str]:
    """The generator of test `name` and its seed (`PKTLAB_FUZZ_SEED` or fuzz32-`name`)."""
    seed = os.environ.get("PKTLAB_FUZZ_SEED", f"fuzz32-{name}")
    return random.Random(seed), seed


def trace_sessions(direction: str = "xpmgr->endpt") -> list[list[bytes]]:
    """The frames of each recorded reference session sent in `direction`, in order."""
    return [
        [bytes.fromhex(r["hex"]) for r in json.loads((TRACES / name).read_text())
         if r["dir"] == direction]
        for name in ("http_get.session.json", "dns.session.json")
    ]  # fmt: skip


def trace_frames(direction: str = "xpmgr->endpt") -> list[bytes]:
    """The frames of the recorded reference sessions sent in `direction`."""
    return [f for session in trace_sessions(direction) for f in session]


def _frame(t: int, body: bytes | bytearray, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return bytes([t]) + n.to_bytes(3, "big") + bytes(body)


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One hostile variant of a valid frame (header: type byte + 24-bit length): one to
    three of the mutations below, one on top of the other."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        frame = _mutate_once(rng, frame)
    return frame


def _mutate_once(rng: random.Random, frame: bytes) -> bytes:
    if len(frame) < 4:
        frame = frame.ljust(4, b"\0")
    t, body = frame[0], bytearray(frame[4:])
    kind = rng.randrange(10)
    if kind == 0 and body:  # flip bytes
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif kind == 1:  # truncated, the header saying so
        del body[rng.randrange(len(body) + 1) :]
    elif kind == 2:  # random body of the same type
        body = bytearray(rng.randbytes(rng.randint(0, 300)))
    elif kind == 3:  # another type, unknown ones too
        t = rng.randrange(256)
    elif kind == 4 and len(body) > 2:  # a length field inside the body lies
        at = rng.randrange(len(body) - 1)
        body[at : at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff", b"\x00\x01"])
    elif kind == 5:  # bytes inserted
        at = rng.randrange(len(body) + 1)
        body[at:at] = rng.randbytes(rng.randint(1, 40))
    elif kind == 6:  # the header claims a few bytes more: the next frame is eaten
        return _frame(t, body, len(body) + rng.randint(1, 16))
    elif kind == 7:  # the header claims a few bytes less: the rest reads as a frame
        return _frame(t, body, max(0, len(body) - rng.randint(1, 8)))
    elif kind == 8:  # a huge length field: up to 16 MiB announced, the real body sent
        return _frame(t, body, rng.choice([0xFFFFFF, 0x100000, 0x10000, rng.randrange(1 << 24)]))
    else:  # the frame twice, the second of a neighbouring type
        return _frame(t, body) + _frame(t ^ rng.randrange(1, 4), body)
    return _frame(t, body)


def every_type_and_size(rng: random.Random, sizes: int) -> Iterator[bytes]:
    """A frame of each of the 256 types with each body size 0 .. `sizes`-1 (random bytes)."""
    for t in range(256):
        for n in range(sizes):
            yield _frame(t, rng.randbytes(n))


def _vmem_bases() -> list[int]:
    from packetlab.wire import vmem

    bases = [r.addr for r in vars(vmem).values() if isinstance(r, vmem.Region) and r.addr >> 24]
    for sktid in (0, 1, 2, 255):
        for field in (vmem.SKT_FAMILY, vmem.SKT_RBUFSZ, vmem.SKT_CTFL, vmem.SKT_TCPINFO):
            bases.append(vmem.skt_addr(sktid, field))
    return [*bases, 0, vmem.SYS_BASE, vmem.SKT_BASE, vmem.SKT_BASE + vmem.SKT_SPAN]


def memory_requests(rng: random.Random, count: int) -> Iterator[bytes]:
    """mread/mwrite at the vmem regions' edges (PROTOCOL.md §2) and anywhere, of lengths
    from 0 to the field's 65535 (mwrite 64 KiB): what mutations of the traces (which
    have none) seldom reach."""
    bases = _vmem_bases()
    lengths = [0, 1, 2, 3, 4, 8, 16, 255, 256, 257, 4096, 65535]
    for _ in range(count):
        addr = rng.choice(bases) + rng.choice([0, 0, -1, 1, -8, 8, rng.randrange(-64, 64)])
        addr = addr & 0xFFFFFFFF if rng.randrange(8) else rng.randrange(1 << 32)
        if rng.randrange(2):
            length = rng.choice(lengths) if rng.randrange(4) else rng.randrange(1 << 16)
            # by hand: the codec refuses to write an mread of length 0
            yield (
                bytes([0x28, 0, 0, 6])
                + addr.to_bytes(4, "big")
                + min(length, 0xFFFF).to_bytes(2, "big")
            )
        else:
            data = rng.randbytes(rng.choice(lengths))
            yield _frame(0x29, addr.to_bytes(4, "big") + data)  # past 2^32 too


_LO = {4: b"\x7f\x00\x00\x01", 6: b"\x00" * 15 + b"\x01"}


def _loopback(family: int, addr: bytes | None) -> bool:
    return addr is None or (family == 4 and addr[:1] == b"\x7f") or addr == _LO[6]


def wire_safe(data: bytes, port: int | None = None) -> bytes:
    """`data` with every nopen/nsend that decodes aimed back at loopback (and at `port`
    when given: a test's responder): a flipped address must not leave the machine
    (preamble: loopback only). Frames that do not decode go unchanged: the endpoint
    refuses them. A yield that decodes gets resume hint 0: asked to, the endpoint would
    stay away until its hint (up to a day), which is no fault."""
    out = bytearray()
    at = 0
    while at + 4 <= len(data):
        n = int.from_bytes(data[at + 1 : at + 4], "big")
        frame = data[at : at + 4 + n]
        at += 4 + n
        items = list(wire.Framer().feed(frame)) if len(frame) == 4 + n else []
        msg = items[0] if items else None
        if isinstance(msg, wire.Yield) and msg.rhint:
            msg.rhint = 0  # a valid yield sends the endpoint away until its hint (a day)
            frame = wire.encode(msg)
        if isinstance(msg, (wire.Nopen, wire.Nsend)) and (
            not _loopback(msg.family, msg.raddr) or (port and msg.rport not in (None, port))
        ):
            if not _loopback(msg.family, msg.raddr):
                msg.raddr = _LO.get(msg.family)
            if port and msg.rport is not None:
                msg.rport = port
            try:
                frame = wire.encode(msg)
            except Exception:  # a family the codec cannot write: send nothing
                frame = b""
        out += frame
    return bytes(out + data[at:])


def log_alarms(text: str) -> list[str]:
    """The lines of a daemon log that show a crash or an unhandled error."""
    return [line for line in text.splitlines() if any(a in line for a in LOG_ALARMS)]
