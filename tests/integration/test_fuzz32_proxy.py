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

import time
from collections.abc import Iterator

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
)
from tls_world import pktlab_init

from packetlab import wire

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # deadlines of 0.5-1 s + 5 s

XREGS = 200  # mutated xregs; plus every type with sizes 0..XREG_SIZES-1
XREG_SIZES = 8
HELLOS = 600


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProc]:
    home = pktlab_init(tmp_path_factory.mktemp("fuzz32px") / "home").root
    p = ProxyProc(tmp_path_factory.mktemp("proxy"), home, "--hello-cap", "4096",
                  "--hello-timeout", str(HELLO_TIMEOUT),
                  "--setup-timeout", str(SETUP_TIMEOUT))  # fmt: skip
    yield p
    p.stop()


def test_fuzz_proxy_setup_port(proxy: ProxyProc) -> None:
    rng, seed = rng_for("proxy-xreg")
    before = baseline(proxy)
    was = proxy.counters()["registration_failures"]
    good = wire.encode(wire.Xreg(b"fuzzkey"))
    frames = [mutate(rng, good) for _ in range(XREGS)]
    frames += list(every_type_and_size(rng, XREG_SIZES))

    def one(frame: bytes) -> float:
        s, tls = _tls_setup(proxy.setup)
        try:
            s.sendall(tls.send(frame))
        except OSError:
            pass
        t0 = time.monotonic()
        closed_by_peer(s, timeout=SETUP_TIMEOUT + 10)
        s.close()
        return time.monotonic() - t0

    for took in at_once(one, frames):
        assert took < SETUP_TIMEOUT + 8, f"open {took:.1f} s (seed {seed})"
    # a mutation may still be a valid xreg of another snikey: registered, not a failure
    proxy.counters(f"registration_failures >= {was + len(frames) * 9 // 10}")
    assert not log_alarms(proxy.text()), log_alarms(proxy.text())[:5]
    check("fuzz32 xreg", proxy, before)
    print(f"proxy setup: seed {seed!r}, {len(frames)} inputs")


def test_fuzz_proxy_endpoints_port(proxy: ProxyProc) -> None:
    rng, seed = rng_for("proxy-hello")
    before = baseline(proxy)
    was = sum(proxy.counters()["refusals"].values())
    hellos = [client_hello(f"nobody{i}") for i in range(3)] + [client_hello(None)]
    cases = []
    for i in range(HELLOS):
        h = rng.choice(hellos)
        cases.append(mutate_hello(rng, h) if i % 2 else mutate(rng, h))

    def one(data: bytes) -> float:
        s = connect(proxy.endpoints)
        try:
            s.sendall(data)
        except OSError:
            pass
        t0 = time.monotonic()
        closed_by_peer(s, timeout=10)
        s.close()
        return time.monotonic() - t0

    for took in at_once(one, cases):
        assert took < HELLO_TIMEOUT + 5, f"open {took:.1f} s (seed {seed})"
    proxy.counters(f"sum(refusals.values()) >= {was + HELLOS}")
    assert not log_alarms(proxy.text()), log_alarms(proxy.text())[:5]
    check("fuzz32 hellos", proxy, before)
    print(f"proxy endpoints: seed {seed!r}, {HELLOS} inputs")
