"""Fuzz targets: the framer, the endpoint's session dispatch, the PPKS certificate parser,
and (`fuzz_decoders`) the other decoders hostile input reaches.

Each target takes arbitrary bytes and checks what must hold for every input; a broken
invariant or an unexpected exception is a finding. The same targets run in two places:

* `tests/unit/test_fuzz.py`: a bounded slice with Hypothesis (CI);
* `stress/fuzz.py`: coverage-guided with atheris, 10^6 inputs per target (long runs).

`SEEDS` gives each target valid inputs to mutate from.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE / "endpoint"),):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ep_fakes import T0, FakeClock, FakeNetwork, FakeTimer, Rig  # noqa: E402
from fuzz_decoders import DECODER_INSTRUMENT, DECODER_TARGETS, decoder_seeds  # noqa: E402
from twisted.internet.testing import MemoryReactor  # noqa: E402

from packetlab import wire  # noqa: E402
from packetlab.endpoint.config import EndpointConfig  # noqa: E402
from packetlab.endpoint.memory import system_image  # noqa: E402
from packetlab.endpoint.sender import PreciseScheduler  # noqa: E402
from packetlab.endpoint.session import Session  # noqa: E402
from packetlab.ppks import CertificateError, CertLimits, issue_certificate  # noqa: E402
from packetlab.ppks.cert import load_certificates, parse_certificate  # noqa: E402
from packetlab.wire import vmem  # noqa: E402

__all__ = ["INSTRUMENT", "SEEDS", "TARGETS", "fuzz_cert", "fuzz_framer", "fuzz_session"]

LO4 = b"\x7f\x00\x00\x01"
_RESPONSES = frozenset({int(wire.MsgType.RESULT), int(wire.MsgType.MDATA)})


# ------------------------------------------------------------------------------ framer


def _cuts(data: bytes) -> list[int]:
    """Chunk boundaries derived from the data itself (so a finding replays exactly)."""
    if not data:
        return []
    step = data[0] % 17 + 1
    return list(range(step, len(data), step))


def _key_of(item: wire.Item) -> object:
    # Malformed carries an exception object, which compares by identity.
    if isinstance(item, wire.Malformed):
        return ("malformed", item.msgtype, item.body, item.offset, str(item.error))
    return item


def fuzz_framer(data: bytes) -> None:
    """Any byte stream: the framer yields Message/Unknown/Malformed items, the same ones
    however the stream is cut, and every decoded Message re-encodes to a frame that
    decodes to the same Message."""
    whole = list(wire.Framer().feed(data))
    framer = wire.Framer()
    pieces: list[wire.Item] = []
    prev = 0
    for cut in [*_cuts(data), len(data)]:
        pieces.extend(framer.feed(data[prev:cut]))
        prev = cut
    assert list(map(_key_of, pieces)) == list(map(_key_of, whole)), "items depend on the cuts"
    for item in whole:
        assert isinstance(item, (wire.Message, wire.Unknown, wire.Malformed)), item
        if isinstance(item, wire.Message):
            again = list(wire.Framer().feed(wire.encode(item)))
            assert again == [item], f"{item!r} re-encodes to {again!r}"


# ----------------------------------------------------------------------------- session


def _check_budget(rig: Rig) -> None:
    b = rig.session.budget
    assert 0 <= b.used <= b.max, f"budget used {b.used} of {b.max}"


class _FreshRig(Rig):
    """A Rig on the shared config and system image: building those from scratch (address
    parsing, the image) is most of a Rig's cost, and they are the same for every input."""

    _shared: tuple[EndpointConfig, bytes] | None = None

    def __init__(self) -> None:
        if _FreshRig._shared is None:
            config = Rig().config
            _FreshRig._shared = (config, bytes(system_image(config)))
        config, image = _FreshRig._shared
        self.config = config
        self.clock = FakeClock()
        self.timer = FakeTimer()
        self.reactor = MemoryReactor()
        self.scheduler = PreciseScheduler(self.reactor, clock=self.clock, timer=self.timer)
        self.scheduler.start()
        self.net = FakeNetwork()
        self.session = Session(
            config,
            self.net,  # type: ignore[arg-type]
            self.scheduler,
            self.clock,
            image=bytearray(image),
        )
        self.frames = []
        self.session.outbox.attach(self.frames.append)
        self._seen = 0


def fuzz_session(data: bytes) -> None:
    """Any frames, after a start (if the first byte is even): each request gets exactly
    one response (result or mdata) until the session ends, the budget stays within
    [0, BufMax], and closing the session gives everything back."""
    rig = _FreshRig()
    items: list[wire.Item] = []
    if data[:1] and data[0] % 2 == 0:
        items.append(wire.Start())
    items.extend(wire.Framer().feed(data[1:]))
    session = rig.session
    for item in items:
        if session.ended is not None:
            break
        before = len(rig.frames)
        session.handle(item)
        got = rig.frames[before:]
        answers = sum(1 for f in got if f[0] in _RESPONSES)  # by type byte: cheap
        assert answers == 1, f"{item!r} answered with {list(map(wire.decode_frame, got))!r}"
        _check_budget(rig)
    rig.run_timer_to(T0 + 10**12)  # every send due within ~17 min goes out
    _check_budget(rig)
    session.close()
    assert session.budget.used == 0, f"{session.budget.used} bytes still charged after close"
    assert rig.scheduler.pending() == 0, "sends still queued after close"
    assert all(io.closed for io in rig.net.ios.values()), "a socket outlived the session"
    rig.scheduler.stop()


# -------------------------------------------------------------------------- certificate


def fuzz_cert(data: bytes) -> None:
    """Any bytes: a Certificate or CertificateError (naming the rule), nothing else."""
    for parse in (parse_certificate, load_certificates):
        try:
            parse(data)
        except CertificateError as e:
            assert e.reason is not None
        # Anything else propagates: a crash on hostile certificate bytes.


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framer": fuzz_framer,
    "session": fuzz_session,
    "cert": fuzz_cert,
    **DECODER_TARGETS,
}

#: What atheris instruments for each target (stress/fuzz.py): the code under test only.
INSTRUMENT: dict[str, list[str]] = {
    "framer": ["packetlab.wire"],
    "session": ["packetlab.endpoint", "packetlab.wire"],
    "cert": ["packetlab.ppks"],
    **DECODER_INSTRUMENT,
}


# ------------------------------------------------------------------------------- seeds


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def _cert_seeds() -> list[bytes]:
    nb, na = 1_700_000_000, 1_800_000_000
    limits = CertLimits(max_socket_count=4, max_send_pkt=1000)
    certs = [
        issue_certificate("delpriv", _key("root"), _key("del"), nb, na, del_type="exppriv"),
        issue_certificate("agent", _key("root"), _key("agent"), nb, na),
        issue_certificate("exppriv", _key("root"), _key("exper"), nb, na, limits=limits),
        issue_certificate("pubcmd", _key("exper"), _key("xc"), nb, na),
        issue_certificate("subcmd", _key("root"), _key("ep"), nb, na),
    ]
    return [c.der for c in certs] + [certs[0].to_pem()]


def _frame_seeds() -> list[bytes]:
    udp: dict[str, Any] = dict(sktid=1, family=4, proto=17)
    msgs: list[wire.Message] = [
        wire.Mread(addr=vmem.HOSTID.addr, len=16),
        wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_NOTIFMASK), data=b"\x00\x07"),
        wire.Nopen(rbufsz=4096, laddr=bytes(4), lport=0, **udp),
        wire.Nsend(time=0, tag=1, data=b"x" * 8, raddr=LO4, rport=9, **udp),
        wire.Nsend(time=T0 + 10**9, tag=2, data=b"y" * 100, raddr=LO4, rport=9, **udp),
        wire.Nsend(time=(1 << 64) - 1, tag=3, data=b"z", raddr=LO4, rport=9, **udp),
        wire.Nopen(
            sktid=2, family=4, proto=6, rbufsz=4096, laddr=bytes(4), lport=0, raddr=LO4, rport=80
        ),
        wire.Nsend(sktid=2, family=4, proto=6, time=0, tag=4, data=b"GET / HTTP/1.0\r\n\r\n"),
        wire.Nctl(sktid=2, family=4, proto=6, command=wire.NctlCommand.TCP_FIN, time=0),
        wire.Nclose(sktid=1),
        wire.Yield(rhint=5),
        wire.End(),
    ]
    frames = [wire.encode(m) for m in msgs]
    return [b"\x00" + b"".join(frames[:k]) for k in range(1, len(frames) + 1)]


def _seeds() -> dict[str, list[bytes]]:
    frames = _frame_seeds()
    return {
        "framer": [f[1:] for f in frames],
        "session": frames,
        "cert": _cert_seeds(),
        **decoder_seeds(),
    }


SEEDS = _seeds()
