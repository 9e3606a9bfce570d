"""Seeded mutation fuzzing of a real ``twistd pktproxy`` (session 32, fuzz32): mutated
xreg frames on the setup port after a real TLS handshake, mutated ClientHellos on the
endpoints port.

The xregs are a valid one mutated by `fuzz32.mutate` plus frames of every type with body
sizes 0..7; the ClientHellos are real OpenSSL ones (with and without SNI) mutated by
`test_hostile_proxy.mutate_hello` and by `fuzz32.mutate` on their TLS record (whose
header has the same 1+... layout trick: type byte then lengths). Every connection must
be closed by the proxy within its timeouts, every refusal counted (the refusal log is
rate-limited by design: 20 lines a minute), the log free of tracebacks; afterwards a
manager registers and an endpoint's hello reaches it, the proxy holds no more
descriptors than before and at most `RSS_BOUND_KIB` more memory.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from fuzz32 import every_type_and_size, log_alarms, mutate, rng_for
from pxworld import ProxyProc, client_hello, closed_by_peer
from test_hostile_proxy import (
    HELLO_TIMEOUT,
    SETUP_TIMEOUT,
    _tls_setup,
    at_once,
    baseline,
    check,
    connect,
    mutate_hello,
    proxy_fixture,
)

from packetlab import wire

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # deadlines of 0.5-1 s + 5 s

XREGS = 200  # mutated xregs; plus every type with sizes 0..XREG_SIZES-1
XREG_SIZES = 8
HELLOS = 600


proxy = proxy_fixture()


def each_closed(
    proxy: ProxyProc,
    name: str,
    seed: object,
    inputs: list[bytes],
    opened: Callable[[bytes], tuple[socket.socket, bytes]],
    bound: float,
    counter: str,
    least: int,
) -> None:
    """Each input on a connection of its own (`opened`: the socket and the bytes to send
    on it): the proxy closes every one within `bound` s, its `counter` (an expression
    over its stats) grows by `least` at least, its log has no alarm, and it is back at
    rest after (`check`: a pair served, no more descriptors, bounded memory)."""
    before = baseline(proxy)
    was = eval(counter, {}, proxy.counters())  # test-written, as ProxyProc.counters

    def one(data: bytes) -> float:
        s, out = opened(data)
        try:
            s.sendall(out)
        except OSError:
            pass
        t0 = time.monotonic()
        closed_by_peer(s, timeout=bound + 5)
        s.close()
        return time.monotonic() - t0

    for took in at_once(one, inputs):
        assert took < bound, f"open {took:.1f} s (seed {seed})"
    proxy.counters(f"{counter} >= {was + least}")
    assert not log_alarms(proxy.text()), log_alarms(proxy.text())[:5]
    check(name, proxy, before)
    print(f"{name}: seed {seed!r}, {len(inputs)} inputs")


def test_fuzz_proxy_setup_port(proxy: ProxyProc) -> None:
    rng, seed = rng_for("proxy-xreg")
    good = wire.encode(wire.Xreg(b"fuzzkey"))
    frames = [mutate(rng, good) for _ in range(XREGS)]
    frames += list(every_type_and_size(rng, XREG_SIZES))

    def opened(frame: bytes) -> tuple[socket.socket, bytes]:
        s, tls = _tls_setup(proxy.setup)
        return s, tls.send(frame)

    # a mutation may still be a valid xreg of another snikey: registered, not a failure
    each_closed(proxy, "fuzz32 xreg", seed, frames, opened, SETUP_TIMEOUT + 8,
                "registration_failures", len(frames) * 9 // 10)  # fmt: skip


def test_fuzz_proxy_endpoints_port(proxy: ProxyProc) -> None:
    rng, seed = rng_for("proxy-hello")
    hellos = [client_hello(f"nobody{i}") for i in range(3)] + [client_hello(None)]
    cases = []
    for i in range(HELLOS):
        h = rng.choice(hellos)
        cases.append(mutate_hello(rng, h) if i % 2 else mutate(rng, h))
    each_closed(proxy, "fuzz32 hellos", seed, cases, lambda h: (connect(proxy.endpoints), h),
                HELLO_TIMEOUT + 5, "sum(refusals.values())", HELLOS)  # fmt: skip
