"""Seeded mutation fuzzing of a real ``twistd pktbroker`` on its publish and subscribe
ports, after a valid TLS handshake (session 32, fuzz32).

The inputs are the valid xcert/xpub/xsub frames a reference client sends (seen in
BROKER-PROXY-OBSERVED.md §1.2, §3.2) mutated by `fuzz32.mutate`, half of the connections
first sending a valid prefix (xcerts, or all up to a live subscription or publication:
the mutations meet a later state); then frames of the broker's types with every body
size 0..23 and of every other type with sizes 0 and 1, one link after another (a link
ends at its first error). Every answer must be a result with a known code, every refusal
logged on one line with its code and reason; afterwards the broker serves a fresh
subscriber and publisher end to end, holds no more descriptors than before and at most
`RSS_BOUND_KIB` more memory, and its log has no traceback.
"""

from __future__ import annotations

import random
import ssl
import threading
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity, RawClient, publish_raw
from fuzz32 import every_type_and_size, log_alarms, mutate, rng_for
from test_hostile_broker import STATUSES, Port, baseline, check
from tls_world import TLSController, TLSEndpoint, controller_chain, home_fixture

from packetlab import wire
from packetlab.endpoint.pool import PoolError, parse_xdescr
from packetlab.ppks import PktlabHome, key_id, raw_public_key

pytestmark = pytest.mark.slow

home = home_fixture()
broker = broker_world.broker  # fixture: ErrorDelay 0, one per module

CONNECTIONS = 40  # per port: each the valid prefix or not, then BATCH mutated frames
BATCH = 24
SIZES = 24
XDESCRS = 400
#: The types a broker port reads or writes, swept with every body size 0..SIZES-1; the
#: other types with sizes 0 and 1 (the broker refuses them by type).
BROKER_TYPES = {
    int(wire.MsgType[n]) for n in ("XCERT", "XPUB", "XSUB", "XNOTIFY", "XREG", "RESULT")
}


@pytest.mark.parametrize("role", ["pub", "sub"])
def test_fuzz_broker_port(
    home: PktlabHome, broker: BrokerProcess, role: str, tmp_path: Path
) -> None:
    port = Port(home, broker, role, tmp_path)
    rng, seed = rng_for(f"broker-{role}")
    before = baseline(home, broker, tmp_path)
    seeds = port.seeds()
    mark = len(broker.output())
    batches = []
    for i in range(CONNECTIONS):
        prefix = seeds[: rng.randrange(1, len(seeds) + 1)] if i % 2 else []
        batches.append(prefix + [mutate(rng, rng.choice(seeds)) for _ in range(BATCH)])
    # The broker closes a link at its first error: the sweep resumes after the frames
    # a link answered (at least one per link).
    sweep = [f for f in every_type_and_size(rng, SIZES) if f[0] in BROKER_TYPES]
    sweep += [f for f in every_type_and_size(rng, 2) if f[0] not in BROKER_TYPES]
    inputs = answers = errors = 0
    links = 0
    while batches or sweep:
        if batches:
            frames = batches.pop(0)
        else:
            frames, sweep = sweep[:64], sweep[64:]
        c = port.client()
        links += 1
        inputs += len(frames)
        got = 0
        try:
            if links % 3:  # one record, or each frame in two (header, body) as the reference
                c.send(b"".join(frames), split=False)
            else:
                c.send(*frames)
        except (OSError, ssl.SSLError):
            pass  # closed after a frame it cannot answer
        for item in c.quiet(0.3):
            assert isinstance(item, wire.Result), f"answer {item!r} (seed {seed})"
            assert item.errid in STATUSES, f"unknown code {item.errid} (seed {seed})"
            answers += 1
            got += 1
            errors += item.errid != 0
        c.close()
        if not batches and got < len(frames):  # a sweep link: resend what it did not read
            inputs -= len(frames) - max(1, got)
            sweep = frames[max(1, got) :] + sweep
    out = broker.output()[mark:]
    assert not log_alarms(out), log_alarms(out)[:5]
    refusals = [line for line in out.splitlines() if " refuse " in line]
    assert errors > 0 and len(refusals) >= errors, (errors, len(refusals), out[-2000:])
    for line in refusals:
        assert "code=0x" in line and "reason=" in line, line
    check(f"fuzz32 {role}", home, broker, tmp_path, before)
    print(f"broker {role}: seed {seed!r}, {inputs} inputs on {links} links, {answers} answers, "
          f"{errors} errors")  # fmt: skip


def mutate_text(rng: random.Random, text: bytes) -> bytes:
    """One to three byte-level mutations of an xdescr (NVList text: name=value;...)."""
    b = bytearray(text)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        at = rng.randrange(len(b) + 1)
        if kind == 0 and b:  # flip
            b[min(at, len(b) - 1)] = rng.randrange(256)
        elif kind == 1:  # a separator, NUL, glob, space, non-ASCII inserted
            b[at:at] = rng.choice([b";", b"=", b"\0", b"*", b" ", b"\xff", b";;", b"=="])
        elif kind == 2:  # cut
            del b[at:]
        elif kind == 3:  # a long value
            b[at:at] = rng.choice([b"9", b"a", b"x="]) * rng.choice([64, 300, 5000])
        elif kind == 4:  # another field: numbers at their bounds, unknown names
            name = rng.choice([b"exp_priority", b"pub_end", b"sni_key", b"zz", b""])
            value = rng.choice([b"4294967296", b"-1", b"18446744073709551616", b"0x10", b""])
            b[at:at] = name + b"=" + value + b";"
        else:  # a piece repeated
            piece = bytes(b[at : at + rng.randint(1, 30)])
            b[at:at] = piece * rng.randint(2, 4)
    return bytes(b)


def test_fuzz_xdescr_from_a_publisher_to_a_subscribed_endpoint(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    """Mutated xdescrs published through the broker to a real subscribed endpoint
    (xnotify is what a stranger with a pubcmd chain makes an endpoint parse). Only those
    whose controller_addr is still the test's loopback listener (as the endpoint parses
    it) are sent; that controller ends each session after the TLS handshake. The broker answers each
    with a known code, the endpoint logs no traceback and still runs a valid one."""
    rng, seed = rng_for("xdescr")
    ctl = TLSController(controller_chain(home, tmp_path / "chain"), home.key_path("k_xc"), tmp_path)
    addr = ctl.address
    stop = threading.Event()

    def refuse() -> None:  # a session that ends after the handshake: each is over at once
        while not stop.is_set():
            try:
                ctl.accept(timeout=0.2).close()
            except (OSError, ssl.SSLError):
                pass

    th = threading.Thread(target=refuse, daemon=True)
    th.start()
    ident = Identity(home, tmp_path, "fuzzsub")
    ep = TLSEndpoint(
        home, f"--broker=127.0.0.1:{broker.sub_port}", tmp_path, *ident.endpoint_args()
    )
    sent = codes = refused = 0
    try:
        ep.wait_log("Broker subscription finished")
        mark = len(ep.output())
        for i in range(XDESCRS):
            base = f"controller_addr={addr};sni_key=fz{i};exp_priority={i % 3};".encode()
            xd = mutate_text(rng, base)
            try:
                if parse_xdescr(xd, 0).controller_addr != addr:
                    continue  # it would send the endpoint elsewhere: loopback only
            except PoolError:
                pass  # the endpoint drops it unparsed
            eop = home.public_key("k_eop")
            p = RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
            frames = [
                wire.Xcert(home.certificate(n).der)
                for n in ("pubcmd_exper_xc", "exppriv_eop_exper")
            ]
            p.send(*frames, wire.Xpub([key_id(eop)], raw_public_key(eop), xd))
            for _ in [*frames, xd]:  # a result each, or the close at a refusal
                try:
                    item = p.recv(10)
                except ConnectionError:
                    break
                assert isinstance(item, wire.Result) and item.errid in STATUSES, item
                codes += 1
                refused += item.errid != 0
            p.close()
            sent += 1
        good = f"controller_addr={addr};sni_key=fzgood;".encode()
        pub = publish_raw(home, broker, good)
        ep.wait_log("sni_key fzgood", timeout=30)
        pub.close()
        out = ep.output()[mark:]
        assert not log_alarms(out), log_alarms(out)[:5]
        assert ep.proc.poll() is None
        print(f"xdescr: seed {seed!r}, {sent} publications, {codes} results, {refused} refused")
    finally:
        stop.set()
        th.join(5)
        ctl.close()
        ep.stop()
