"""The monotonic bounds test and alias grouping on synthetic IP-ID series (shared and
independent counters, wrap-around, velocities, too few samples), the responder's reply
builder, and the session pool."""

from __future__ import annotations

import dataclasses
import itertools
import random
import socket
import struct
from typing import Any

import pytest
from twisted.internet.task import Clock

from packetlab.measure.alias import IdSample, alias_pairs, alias_sets, monotonic_bounds, velocity
from packetlab.measure.pool import SessionPool
from packetlab.measure.replies import ReplyKind, parse_reply
from packetlab.testbed.ipid_responder import Counter, checksum, reply

MS = 1_000_000


def counter_samples(times: list[int], start: int, rate: float) -> list[tuple[int, int]]:
    """A counter at `rate` IDs/s (plus 1 per reply) read at `times` (ns)."""
    out, value, last = [], start, times[0]
    for t in times:
        value += 1 + int(rate * (t - last) / 1e9)
        last = t
        out.append((t, value % 65536))
    return out


def interleaved(n: int, k: int, spacing: int = 2 * MS) -> list[list[int]]:
    """Sample times of k addresses probed in turn, `spacing` apart."""
    return [[(r * k + i) * spacing for r in range(n)] for i in range(k)]


def test_shared_counter_passes_and_independent_ones_fail() -> None:
    ta, tb, tc = interleaved(10, 3)
    shared = counter_samples(sorted(ta + tb), 65000, 500)  # wraps through 0
    a = [s for s in shared if s[0] in ta]
    b = [s for s in shared if s[0] in tb]
    c = counter_samples(tc, 30000, 500)
    assert monotonic_bounds(a, b)
    assert not monotonic_bounds(a, c) and not monotonic_bounds(b, c)


def test_close_independent_counters_are_caught_by_the_bound() -> None:
    # two counters only 3 IDs apart at the same velocity: steps forward, but interleaving
    # them gives steps of ~0 or backwards
    ta, tb = interleaved(20, 2)
    a = counter_samples(ta, 1000, 100)
    b = counter_samples(tb, 1003, 100)
    assert not monotonic_bounds(a, b)


def test_velocity_needs_a_forward_counter() -> None:
    assert velocity([(0, 5), (MS, 6)]) is None  # two samples only
    assert velocity([(0, 5), (MS, 5), (2 * MS, 6)]) is None  # a repeated ID
    assert velocity([(0, 5), (MS, 40000), (2 * MS, 40001)]) is None  # a jump back
    assert velocity([(0, 0), (0, 0)]) is None
    assert velocity([(0, 10), (10 * MS, 20), (20 * MS, 30)]) == pytest.approx(1000)


def test_alias_pairs_and_sets() -> None:
    rng = random.Random(7)
    times = interleaved(12, 5)
    shared = counter_samples(sorted(times[0] + times[1] + times[2]), rng.randrange(65536), 300)
    samples = [
        IdSample(f"10.0.0.{i}", "ep", t, v) for i in range(3) for t, v in shared if t in times[i]
    ]
    samples += [IdSample("10.0.0.3", "ep", t, v) for t, v in counter_samples(times[3], 100, 300)]
    samples += [IdSample("10.0.0.4", "ep", t, 0) for t in times[4]]  # IP-ID always 0
    pairs = alias_pairs(samples)
    assert pairs == [("10.0.0.0", "10.0.0.1"), ("10.0.0.0", "10.0.0.2"), ("10.0.0.1", "10.0.0.2")]
    assert alias_sets(pairs) == [["10.0.0.0", "10.0.0.1", "10.0.0.2"]]
    assert alias_sets([("b", "c"), ("x", "y"), ("a", "b")]) == [["a", "b", "c"], ["x", "y"]]
    assert samples[0].to_dict()["type"] == "ipid"


def test_responder_reply_is_a_valid_echo_reply_from_the_shared_counter() -> None:
    from packetlab.measure.probes import echo_probe

    shared = Counter(0.0, start=41)
    counters = {socket.inet_aton("10.0.0.1"): shared, socket.inet_aton("10.0.0.2"): shared}
    ids = []
    for dst in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
        req = echo_probe("10.9.9.9", dst, ident=7, seq=3, ip_id=99).packet
        out = reply(req, counters)
        assert out is not None
        r = parse_reply(out, verify_checksums=True)
        assert r.kind is ReplyKind.ECHO_REPLY and str(r.src) == dst and r.key.seq == 3
        ids.append(r.ip_id)
    assert ids == [42, 43, 44]
    other = echo_probe("10.9.9.9", "10.0.0.3", ident=7, seq=3).packet
    assert reply(other, counters) is None  # not ours
    assert reply(b"\x45" + b"\0" * 10, counters) is None  # garbage
    assert checksum(struct.pack("!H", 0xFFFF)) == 0


def test_responder_time_exceeded_plays_a_router_for_indirect_probing() -> None:
    # --ttl-exceeded 10.0.0.9=10.0.0.1: an echo request to 10.0.0.9 arriving with TTL 1
    # gets a time exceeded from 10.0.0.1 quoting it, from 10.0.0.1's counter
    from packetlab.measure.probes import echo_probe, udp_probe
    from packetlab.testbed.ipid_responder import answer

    shared = Counter(0.0, start=41)
    counters = {socket.inet_aton("10.0.0.1"): shared, socket.inet_aton("10.0.0.2"): shared}
    methods = {a: {"icmp-echo"} for a in counters}
    expire = {socket.inet_aton("10.0.0.9"): (socket.inet_aton("10.0.0.1"),)}
    probe = echo_probe("10.9.9.9", "10.0.0.9", ident=7, seq=5, ttl=1)
    out = answer(probe.packet, counters, methods, 33435, expire)
    assert out is not None
    r = parse_reply(out, verify_checksums=True)
    assert r.kind is ReplyKind.TIME_EXCEEDED and str(r.src) == "10.0.0.1"
    assert r.key == probe.key and r.ip_id == 42 and r.quoted_ttl == 1
    later = echo_probe("10.9.9.9", "10.0.0.9", ident=7, seq=6, ttl=2).packet
    udp = udp_probe("10.9.9.9", "10.0.0.9", sport=4000, dport=33435, ttl=1).packet
    assert answer(later, counters, methods, 33435, expire) is None  # not expiring here
    # UDP too (Paris traceroute's UDP flows; session 12, for --multilevel)
    got = parse_reply(answer(udp, counters, methods, 33435, expire) or b"")
    assert got.kind is ReplyKind.TIME_EXCEEDED and str(got.src) == "10.0.0.1"
    assert got.ip_id == 43


def test_responder_time_exceeded_from_several_addresses_by_flow() -> None:
    # --ttl-exceeded 10.0.0.9=10.0.0.1,10.0.0.2,10.0.0.3: one address per flow (the UDP
    # source port, the ICMP checksum), always the same for one flow, each by its counter
    from packetlab.measure.probes import paris_echo_probe, paris_udp_probe
    from packetlab.measure.traceroute_probes import reply_key
    from packetlab.testbed.ipid_responder import answer

    shared, other = Counter(0.0, start=41), Counter(0.0, start=9000)
    addrs = [socket.inet_aton(f"10.0.0.{i}") for i in (1, 2, 3)]
    counters = dict(zip(addrs, [shared, shared, other], strict=True))
    methods = {a: {"icmp-echo"} for a in counters}
    expire = {socket.inet_aton("10.0.0.9"): tuple(addrs)}
    by_flow: dict[tuple[str, int], set[str]] = {}
    for flow in range(12):
        for i in range(3):
            for kind, probe in (
                ("udp", paris_udp_probe("10.9.9.9", "10.0.0.9", 1, sport=40000 + flow,
                                        dport=33434, index=i)),
                ("icmp", paris_echo_probe("10.9.9.9", "10.0.0.9", 1, ident=7, seq=i,
                                          checksum=1000 + flow)),
            ):  # fmt: skip
                r = parse_reply(answer(probe.packet, counters, methods, 33435, expire) or b"")
                assert r.kind is ReplyKind.TIME_EXCEEDED
                assert reply_key(f"{kind}-paris", r) == probe.key
                by_flow.setdefault((kind, flow), set()).add(str(r.src))
    assert all(len(s) == 1 for s in by_flow.values())  # one flow, one interface
    seen = set().union(*by_flow.values())
    assert seen == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_responder_time_exceeded_with_an_mpls_label_stack() -> None:
    # --mpls 10.0.0.1=24001/16: the time exceeded's quote padded to 128 bytes, then the
    # RFC 4884 structure holding the stack, as traceroute -e reads it
    from packetlab.measure.icmpext import decode
    from packetlab.measure.probes import echo_probe
    from packetlab.testbed.ipid_responder import answer
    from packetlab.testbed.mpls_responder import extension

    counters = {socket.inet_aton("10.0.0.1"): Counter(0.0, start=41)}
    expire = {socket.inet_aton("10.0.0.9"): (socket.inet_aton("10.0.0.1"),)}
    labels = {socket.inet_aton("10.0.0.1"): extension([(24001, 0, 0, 1), (16, 0, 1, 1)])}
    probe = echo_probe("10.9.9.9", "10.0.0.9", ident=7, seq=5, ttl=1)
    r = parse_reply(answer(probe.packet, counters, {}, 33435, expire, labels) or b"",
                    verify_checksums=True)  # fmt: skip
    assert r.kind is ReplyKind.TIME_EXCEEDED and r.key == probe.key and r.ip_id == 42
    assert r.extension is not None
    (obj,) = decode(r.extension) or ()
    assert [m["mpls_label"] for m in obj["mpls_labels"]] == [24001, 16]


def test_session_pool() -> None:
    clock = Clock()
    pool = SessionPool(2, clock)
    a, b, extra = object(), object(), object()
    runs = [pool.experiment(a), pool.experiment(b)]  # type: ignore[arg-type]
    from twisted.internet.defer import Deferred

    ds = [Deferred.fromCoroutine(r) for r in runs]
    got = Deferred.fromCoroutine(pool.wait(5))
    assert got.called and got.result == [a, b]
    late = Deferred.fromCoroutine(pool.experiment(extra))  # type: ignore[arg-type]
    assert late.called  # nothing for a third endpoint
    assert not any(d.called for d in ds)
    pool.release()
    assert all(d.called for d in ds)
    slow = SessionPool(3, clock)
    Deferred.fromCoroutine(slow.experiment(a))  # type: ignore[arg-type]
    errors: list[str] = []
    Deferred.fromCoroutine(slow.wait(2)).addErrback(lambda f: errors.append(str(f.value)))
    clock.advance(3)
    assert errors == ["only 1 of 3 endpoints connected within 2 s"]


def test_endpoints_sharing_a_hostid_get_distinct_names() -> None:
    # Endpoints left at the default HostID (pktendpt) once had one name: a campaign merged
    # their records, wrote their --pcap files over each other, and alias resolution
    # counted their samples as one endpoint's.
    from packetlab.measure.pool import endpoint_names

    peers = ["10.0.0.1:40000", "10.0.0.2:40000", "10.0.0.3:40000"]
    assert endpoint_names(["pktendpt", "pktendpt", "lab-3"], peers) == [
        "pktendpt@10.0.0.1:40000", "pktendpt@10.0.0.2:40000", "lab-3",
    ]  # fmt: skip
    assert endpoint_names(["a", "b"], peers[:2]) == ["a", "b"]
    assert endpoint_names(["", ""], peers[:2]) == peers[:2]  # no HOSTID: the address
    assert endpoint_names(["x", "x"], ["?", "?"]) == ["x@?", "x@?-2"]


def test_order_is_only_known_up_to_each_samples_error() -> None:
    # a shared counter; two samples 1 ms apart were stamped the wrong way round (their
    # times carry 2 ms of error): with the errors the merge is still one counter
    ta, tb = interleaved(10, 2)
    shared = counter_samples(sorted(ta + tb), 500, 300)
    a = [s for s in shared if s[0] in ta]
    b = [s for s in shared if s[0] in tb]
    (t1, i1), (t2, i2) = a[3], b[3]
    a[3], b[3] = (t2, i1), (t1, i2)  # swap the times: out of order by one slot
    assert not monotonic_bounds(a, b)
    a_err = [(t, i, 2 * MS) for t, i in a]
    b_err = [(t, i, 2 * MS) for t, i in b]
    assert monotonic_bounds(a_err, b_err)
    # the errors do not make independent counters look shared
    c = [(t, i, 2 * MS) for t, i in counter_samples(tb, 30000, 300)]
    assert not monotonic_bounds(a_err, c)


def test_midar_windows_pair_only_neighbours_in_velocity() -> None:
    from packetlab.measure.midar import velocity_windows

    v = {f"a{i}": float(10 * (i + 1)) for i in range(10)}
    wins = velocity_windows(v, 4)
    assert wins[0] == ["a0", "a1", "a2", "a3"] and wins[1] == ["a2", "a3", "a4", "a5"]
    # every two neighbours in velocity share a window; far ones never do
    order = sorted(v, key=v.__getitem__)
    for x, y in itertools.pairwise(order):
        assert any(x in w and y in w for w in wins)
    assert not any("a0" in w and "a9" in w for w in wins)
    assert velocity_windows({"a": 1.0, "b": 2.0}, 50) == [["a", "b"]]
    assert velocity_windows({"a": 1.0}, 50) == []


@pytest.mark.parametrize("late", [0.0, 2.5])
def test_replies_are_awaited_after_late_probes_left(late: float) -> None:
    # An endpoint whose scheduler sends every probe `late` s after its slot (a loaded
    # machine): replies are still awaited `wait` after the last probe left, so every probe
    # gives a sample; a deadline of `wait` after the last *slot* lost them all.
    from test_traceroute_fakes import TG4, RawRig

    from packetlab.measure.alias import collect_ip_ids

    rig = RawRig([TG4])
    ep = rig.endpoint
    send = ep.raw_send

    def delayed(msg: Any) -> None:
        send(dataclasses.replace(msg, time=msg.time + int(late * 1e9)))

    ep.raw_send = delayed  # type: ignore[method-assign]
    got = rig.run(collect_ip_ids([rig.session], [TG4], rounds=5, spacing=0.002, wait=1.0))
    assert len(got) == 5 and {s.addr for s in got} == {TG4}
    assert all(0 < s.error_ns < 0.1e9 for s in got)  # half the (fake) RTT, not the lateness


def test_a_probe_the_endpoint_cannot_send_is_a_missing_sample_not_a_crash() -> None:
    # `pktlab run alias 127.0.0.1 192.0.2.77`: the endpoint refuses the sends it has no
    # route for (EPKTNOTSENT in their ntags); that address has no samples, and says why
    # (the run used to end in "internal error: FirstError ... SendFailed").
    from test_traceroute_fakes import TG4, RawRig

    from packetlab.measure.alias import collect_ip_ids
    from packetlab.wire import Status

    rig = RawRig([TG4])
    rig.endpoint.nsend_errid = int(Status.EPKTNOTSENT)
    unsent: dict[str, str] = {}
    got = rig.run(
        collect_ip_ids([rig.session], [TG4], rounds=3, spacing=0.002, wait=0.5, unsent=unsent)
    )
    assert got == []
    assert unsent[TG4].startswith("the endpoint could not send to it from ")
    assert unsent[TG4].endswith(": EPKTNOTSENT")


def test_responder_zero_random_and_common_source_routers() -> None:
    # session 24's routers beside scamper: `:zero` numbers every reply 0 with DF set (a
    # raw socket's header with ID 0 and no DF gets the kernel's ID: the testbed showed
    # scamper IDs like 17515 from a "zero" router), `:random` a random nonzero ID, and
    # --errors-from sends a port unreachable from the router's other address (Mercator)
    from packetlab.measure.probes import echo_probe, udp_probe
    from packetlab.testbed.ipid_responder import answer

    a, b, c = (socket.inet_aton(f"10.0.0.{i}") for i in (1, 2, 3))
    counters = {a: Counter(0.0, kind="zero"), b: Counter(0.0, kind="random"),
                c: Counter(0.0, start=41)}  # fmt: skip
    methods = {x: {"icmp-echo", "udp"} for x in counters}
    zero = answer(echo_probe("10.9.9.9", "10.0.0.1", ident=7, seq=1).packet, counters,
                  methods, 33435)  # fmt: skip
    assert zero is not None and parse_reply(zero, verify_checksums=True).ip_id == 0
    assert struct.unpack_from("!H", zero, 6)[0] == 0x4000  # DF
    ids = set()
    for seq in range(20):
        out = answer(echo_probe("10.9.9.9", "10.0.0.2", ident=7, seq=seq).packet, counters,
                     methods, 33435)  # fmt: skip
        assert out is not None and struct.unpack_from("!H", out, 6)[0] == 0  # no DF
        ids.add(parse_reply(out).ip_id)
    assert len(ids) > 10 and 0 not in ids
    udp = udp_probe("10.9.9.9", "10.0.0.3", sport=4000, dport=33435).packet
    got = parse_reply(answer(udp, counters, methods, 33435, sources={c: a}) or b"",
                      verify_checksums=True)  # fmt: skip
    assert got.kind is ReplyKind.DEST_UNREACHABLE and str(got.src) == "10.0.0.1"
    assert str(got.key.dst) == "10.0.0.3" and got.ip_id == 42


def swap(samples: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """As a host that writes its counter in little-endian order puts it on the wire."""
    return [(t, ((v & 0xFF) << 8) | (v >> 8), 100_000) for t, v in samples]


def test_a_byte_swapped_counter_is_read_as_it_counts() -> None:
    # The testbed's swapped router (300 IDs/s, two addresses): MIDAR's stages found no
    # pair where scamper's ally said aliases. As read, the IDs move 256 a packet, so
    # two probes answered 0.2 ms apart stepped 256, beyond the bound (2 x velocity x dt).
    from packetlab.measure.alias import byte_swapped, counted

    ta, tb, tc = interleaved(10, 3, spacing=MS // 5)
    shared = counter_samples(sorted(ta + tb), 300, 300)  # (crosses a low-byte carry)
    a = swap([s for s in shared if s[0] in ta])
    b = swap([s for s in shared if s[0] in tb])
    c = swap(counter_samples(tc, 30000, 300))
    assert byte_swapped(a) and counted(a)[0][1] == shared[0][1]
    assert velocity(a) == pytest.approx(velocity([(t, v) for t, v in shared if t in ta]))
    assert monotonic_bounds(a, b)
    assert not monotonic_bounds(a, c) and not monotonic_bounds(b, c)
    # a counter in network order is never taken for a swapped one
    plain = counter_samples(ta, 65000, 20_000)
    assert not byte_swapped(plain) and counted(plain) == plain
    assert not byte_swapped([(t, 0, 0) for t in ta])


def test_byte_swapped_is_told_by_the_view_not_by_one_id() -> None:
    # (it compared the first ID with its swap: an ID like 0x4545 reads the same both
    # ways, and a swapped counter whose first sample had one was reported unswapped)
    from packetlab.measure.alias import byte_swapped

    times = interleaved(10, 1, spacing=MS)[0]
    series = swap(counter_samples(times, 0x4545 - 1, 300))
    assert series[0][1] == 0x4545 and byte_swapped(series)
