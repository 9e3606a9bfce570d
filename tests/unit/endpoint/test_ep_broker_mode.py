"""Broker mode, sans-IO: the subscription frames as the reference sends them
(BROKER-PROXY-OBSERVED.md §1.2, §1.3), the reader of the broker's answers, and the
experiment pool (one run per xdescr, yield, priorities, pre-emption, several at once)."""

from __future__ import annotations

import pytest
from testkit.logs import captured_events

from packetlab.endpoint.pool import Action, ExperimentPool, PoolError, State
from packetlab.endpoint.subscription import (
    BrokerReader,
    Event,
    SubscriptionError,
    plan_subscription,
)
from packetlab.ppks import generate_private_key, issue_certificate, key_id, raw_public_key
from packetlab.wire import Framer, Result, Xcert, Xnotify, Xsub, encode

EOP = generate_private_key()
EOP2 = generate_private_key()
EP = generate_private_key()
SUBCMD = issue_certificate("subcmd", EOP, EP, 0, 2**31 - 1)
SUBCMD2 = issue_certificate("subcmd", EOP2, EP, 0, 2**31 - 1)
DELPRIV = issue_certificate("delpriv", EOP, EOP2, 0, 2**31 - 1, del_type="reppriv")
K, K2 = key_id(EOP), key_id(EOP2)
PUBLIC = b"public".hex()


def test_default_plan_is_the_observed_sub_basic_sequence() -> None:
    plan = plan_subscription([SUBCMD], [raw_public_key(EOP)], None, True, "hostid=pktendpt;")
    frames = plan.frames()
    assert frames[0] == encode(Xcert(SUBCMD.der))
    assert frames[1] == encode(Xsub([K], raw_public_key(EOP), b"hostid=pktendpt;"))
    assert frames[1][4:] == b"\x20" + K + b"\x00" + raw_public_key(EOP) + b"hostid=pktendpt;"
    assert plan.results_expected == 2


@pytest.mark.parametrize(
    ("channels", "auto", "chlist"),
    [
        ([PUBLIC], True, [b"public"]),  # no auto-extracted channel
        ([PUBLIC, ""], True, [b"public", K]),
        (["", PUBLIC], True, [K, b"public"]),
        ([PUBLIC, "61"], False, [b"public", b"a"]),
        ([K.hex()], False, [K]),
    ],
)
def test_chlist_rules(channels: list[str], auto: bool, chlist: list[bytes]) -> None:
    plan = plan_subscription([SUBCMD], [raw_public_key(EOP)], channels, auto, "")
    assert list(plan.chlist) == chlist


def test_delegated_chain_listed_order_and_eopkey_of_the_last_cert() -> None:
    plan = plan_subscription([SUBCMD2, DELPRIV], [raw_public_key(EOP)], None, True, "")
    assert plan.xcerts == (SUBCMD2.der, DELPRIV.der)
    assert list(plan.chlist) == [K, K2]  # AKI of the last listed cert first
    assert plan.eopkey == raw_public_key(EOP)


@pytest.mark.parametrize(
    ("chain", "channels", "auto", "message"),
    [
        ([], None, True, "SubPrivCertChainPath is empty"),
        ([DELPRIV, SUBCMD2], None, True, "signed the last cert"),
        ([SUBCMD], None, False, "no channel"),
    ],
)
def test_plans_the_reference_refuses(
    chain: list[object], channels: list[str] | None, auto: bool, message: str
) -> None:
    with pytest.raises(SubscriptionError, match=message):
        plan_subscription(chain, [raw_public_key(EOP)], channels, auto, "")  # type: ignore[arg-type]


def test_reader_results_then_notifications() -> None:
    r = BrokerReader(2)
    assert r.feed(Result(0))[0] is Event.WAIT
    assert r.feed(Result(0))[0] is Event.SUBSCRIBED
    ev, msg = r.feed(Xnotify(K, b"controller_addr=h;"))
    assert ev is Event.NOTIFY and msg == Xnotify(K, b"controller_addr=h;")
    assert r.feed(Xnotify(K, b""))[0] is Event.IGNORE
    assert r.feed(Result(0))[0] is Event.RESET


def test_reader_resets_on_error_result_and_malformed_xnotify() -> None:
    assert BrokerReader(2).feed(Result(0x61))[0] is Event.RESET
    r = BrokerReader(1)
    r.feed(Result(0))
    (bad,) = Framer().feed(bytes([0x70, 0, 0, 1, 0]))  # channel length 0
    assert r.feed(bad)[0] is Event.RESET


def test_reader_resets_on_frames_out_of_order_or_unknown() -> None:
    # O §1.4: anything but the results, then well-formed xnotify, is "Broker unexpected msg
    # type ..., resetting": an xnotify before the results, a request type, an unknown type
    assert BrokerReader(2).feed(Xnotify(K, b"controller_addr=h;"))[0] is Event.RESET
    for frame in (bytes.fromhex("21000000"), bytes.fromhex("25000000")):
        r = BrokerReader(1)
        assert r.feed(Result(0))[0] is Event.SUBSCRIBED
        (msg,) = Framer().feed(frame)
        assert r.feed(msg)[0] is Event.RESET


def xd(n: int, prio: int | None = None) -> bytes:
    p = "" if prio is None else f"exp_priority={prio};"
    return f"{p}controller_addr=127.0.0.1:{20600 + n};sni_key=s{n};".encode()


def test_pool_runs_each_xdescr_once_and_ignores_copies_while_held() -> None:
    pool = ExperimentPool()
    a = pool.add(xd(1))
    assert a is not None and a.snikey == "s1" and a.controller_addr == "127.0.0.1:20601"
    assert pool.add(xd(1)) is None  # the copy that crashes the reference
    assert pool.schedule(0) == [(Action.START, a)]
    assert pool.schedule(0) == []
    pool.finished(a)
    assert not pool.entries
    b = pool.add(xd(1))  # published again after it ended: runs again
    assert b is not None and pool.schedule(0) == [(Action.START, b)]


def test_pool_yield_waits_for_its_hint() -> None:
    pool = ExperimentPool()
    a = pool.add(xd(1))
    assert a is not None
    pool.schedule(0)
    pool.finished(a, rhint_ns=1000)
    assert pool.schedule(999) == [] and pool.next_wakeup(999) == 1000
    assert pool.schedule(1000) == [(Action.START, a)]


def test_pool_priority_preemption_and_resume() -> None:
    pool = ExperimentPool()
    a = pool.add(xd(1, 1))
    assert a is not None
    pool.schedule(0)
    b = pool.add(xd(2, 5))
    c = pool.add(xd(3, 0))
    assert b is not None and c is not None
    assert pool.schedule(0) == [(Action.SUSPEND, a), (Action.START, b)]
    assert a.state is State.SUSPENDED
    pool.finished(b)
    assert pool.schedule(0) == [(Action.RESUME, a)]  # before the lower c
    pool.finished(a)
    assert pool.schedule(0) == [(Action.START, c)]


def test_pool_equal_priority_does_not_preempt_and_several_run_at_once() -> None:
    pool = ExperimentPool(max_running=2)
    exps = [pool.add(xd(i, 3)) for i in range(3)]
    acts = pool.schedule(0)
    assert [x[0] for x in acts] == [Action.START, Action.START]
    assert pool.schedule(0) == []
    pool.finished(exps[0])  # type: ignore[arg-type]
    assert pool.schedule(0) == [(Action.START, exps[2])]


def test_pool_refuses_bad_xdescrs_and_is_bounded() -> None:
    pool = ExperimentPool(max_entries=2)
    with pytest.raises(PoolError, match="controller_addr"):
        pool.add(b"sni_key=a;")
    with pytest.raises(PoolError, match="malformed"):
        pool.add(b"bad value!")
    with pytest.raises(PoolError, match="exp_priority"):
        pool.add(b"exp_priority=-1;controller_addr=h;")
    pool.add(xd(1))
    pool.add(xd(2))
    with pytest.raises(PoolError, match="pool full"):
        pool.add(xd(3))


def test_pool_drops_pending_xdescr_past_pub_end() -> None:
    pool = ExperimentPool(max_running=1)
    a = pool.add(xd(1))
    pool.schedule(0)
    pool.add(b"pub_end=100;" + xd(2))
    assert pool.schedule(200) == []
    pool.finished(a)  # type: ignore[arg-type]
    assert pool.schedule(200) == [] and not pool.entries


def test_pool_numbers_too_long_for_int_are_clear_refusals_not_value_errors() -> None:
    # A hostile broker may send any digits that fit in a frame: int() raises ValueError
    # (not PoolError, which the runner catches) past 4,300 digits. Over 20 significant
    # digits is no u32/u64, as on the broker (packetlab.ppks.limits).
    pool = ExperimentPool()
    for name in (b"exp_priority", b"pub_end"):  # too long an xdescr, before any int()
        with pytest.raises(PoolError, match=r"xdescr of 50\d\d bytes \(at most 4096\)"):
            pool.add(name + b"=" + b"9" * 5000 + b";controller_addr=h;")
    with pytest.raises(PoolError, match=r"exp_priority '9999.*\(4000 characters\) is not a u32"):
        pool.add(b"exp_priority=" + b"9" * 4000 + b";controller_addr=h;")
    with pytest.raises(PoolError, match="is not a u32"):
        pool.add(b"exp_priority=" + b"1" * 21 + b";controller_addr=h;")
    a = pool.add(b"exp_priority=" + b"0" * 30 + b"7;controller_addr=h;")  # leading zeros
    assert a is not None and a.priority == 7


def test_pool_unusable_pub_end_is_logged_and_ignored_as_the_reference_does() -> None:

    with captured_events() as events:
        pool = ExperimentPool()
        a = pool.add(b"pub_end=" + b"9" * 4000 + b";" + xd(1))
        b = pool.add(b"pub_end=abc;" + xd(2))
        c = pool.add(b"pub_end=" + b"9" * 21 + b";" + xd(3))  # over u64
    seen = events.lines()
    assert a is not None and b is not None and c is not None
    assert a.pub_end_ns is None and b.pub_end_ns is None and c.pub_end_ns is None
    assert len([s for s in seen if "is not a u64 (ns); ignored" in s]) == 3
    assert any(s.startswith("experiment #1: pub_end '9999") and "(4000 characters)" in s
               for s in seen)  # fmt: skip
    assert max(map(len, seen)) < 200  # the value is cut short in the log line


def test_pool_bounds_what_it_keeps_from_the_broker() -> None:
    # xdescr bytes, controller_addr (§5.6: 255 characters) and sni_key (1..63 [a-z0-9])
    from packetlab.endpoint.pool import MAX_XDESCR

    pool = ExperimentPool()
    long = b"controller_addr=h;foo=" + b"x" * MAX_XDESCR + b";"
    with pytest.raises(PoolError, match=f"xdescr of {len(long)} bytes"):
        pool.add(long)
    with pytest.raises(PoolError, match=r"controller_addr 'aaaa.* longer than 255"):
        pool.add(b"controller_addr=" + b"a" * 256 + b";")
    with pytest.raises(PoolError, match=r"sni_key 'UPPER' is not 1\.\.63"):
        pool.add(b"controller_addr=h;sni_key=UPPER;")
    with pytest.raises(PoolError, match=r"sni_key 'sss.* is not 1\.\.63"):
        pool.add(b"controller_addr=h;sni_key=" + b"s" * 64 + b";")
    assert not pool.entries
    ok = pool.add(b"controller_addr=" + b"a" * 255 + b";sni_key=" + b"s" * 63 + b";")
    assert ok is not None


def test_runner_logs_a_refused_xdescr_cut_short() -> None:
    # a broker may send 64 KiB of anything: the refusal's log line shows its start and size
    from typing import Any

    from twisted.internet.testing import MemoryReactorClock

    from packetlab.endpoint.runner import ExperimentRunner

    def unused(*_: Any) -> Any:
        raise AssertionError("a refused xdescr connects nowhere")

    runner = ExperimentRunner(MemoryReactorClock(), ExperimentPool(), unused, unused)
    with captured_events() as events:
        hostile = b"controller_addr=h;x=" + b"y" * 65000 + b";"
        runner.notify(b"ch", hostile)
    seen = events.lines()
    assert len(seen) == 1 and f"refused: xdescr of {len(hostile)} bytes" in seen[0], seen
    assert f"... ({len(hostile)} characters)" in seen[0] and len(seen[0]) < 400


def test_a_broker_sending_refused_xdescrs_floods_no_log() -> None:
    """A broker (or whoever holds its key) may send bad xdescrs as fast as it likes: a
    line each. Now 20 a minute, the rest counted; the next minute's first line says so."""
    from typing import Any

    from twisted.internet.testing import MemoryReactorClock

    from packetlab.endpoint.runner import ExperimentRunner

    def unused(*_: Any) -> Any:
        raise AssertionError("a refused xdescr connects nowhere")

    clock = MemoryReactorClock()
    runner = ExperimentRunner(clock, ExperimentPool(), unused, unused)
    with captured_events() as events:
        for i in range(5000):
            runner.notify(b"ch", b"exp_priority=" + b"9" * 30 + f";n={i};".encode())
        clock.advance(60)
        runner.notify(b"ch", b"exp_priority=" + b"9" * 30 + b";")
    seen = events.lines()
    assert len(seen) == 21, len(seen)
    assert seen[-1].endswith("[4980 not logged before this one]"), seen[-1]


def test_a_yielded_experiments_wakeup_is_on_its_wall_moment() -> None:
    """The resume hint is an endpoint (wall) time: across a clock step its timer stays
    on that moment (packetlab.clockstep), not on the delay it was armed with."""
    from typing import Any

    from twisted.internet.task import Clock

    from packetlab.clockstep import is_wall
    from packetlab.endpoint.runner import ExperimentRunner

    def unused(*_: Any) -> Any:
        raise AssertionError("not started before its hint")

    clock = Clock()
    clock.advance(1_800_000_000)
    pool = ExperimentPool()
    exp = pool.add(xd(1))
    assert exp is not None
    exp.not_before_ns = 1_800_000_005 * 10**9
    runner = ExperimentRunner(
        clock, pool, unused, unused, clock_ns=lambda: int(clock.seconds() * 10**9)
    )
    runner.kick()
    [wakeup] = clock.getDelayedCalls()
    assert wakeup.getTime() == 1_800_000_005 and is_wall(wakeup)
