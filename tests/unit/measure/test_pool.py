"""`SessionPool` watching its sessions (a campaign's): one that ends before the start
leaves and is told once, the pool waits for another; spares wait for `take()`, as many
as asked and no more; a spare that leaves is not handed out."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from packetlab.controller import ControllerError
from packetlab.measure.pool import SessionPool, endpoint_name


class Session:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.closed: Deferred[None] = Deferred()

    def when_closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            d.callback(None)
            return result

        self.closed.addBoth(fire)
        return d

    def close(self) -> None:
        self.closed.callback(None)


def join(pool: SessionPool, s: Session) -> Deferred[None]:
    return Deferred.fromCoroutine(pool.experiment(s))  # type: ignore[arg-type]


def test_one_gone_before_the_start_leaves_and_another_takes_its_place() -> None:
    # The dead one once kept its place: the campaign started with it and lost it at once.
    lost: list[Any] = []
    pool = SessionPool(2, Clock(), on_lost=lost.append, watch=True)
    a, b, c = Session("a"), Session("b"), Session("c")
    ran = join(pool, a)
    got = Deferred.fromCoroutine(pool.wait())
    a.close()
    assert lost == [a] and ran.called  # told once; its session over
    join(pool, b)
    assert not got.called
    join(pool, c)
    assert got.result == [b, c]


def test_spares_wait_for_take_as_many_as_asked() -> None:
    pool = SessionPool(1, Clock(), spares=1, watch=True)
    a, b, c = Session("a"), Session("b"), Session("c")
    join(pool, a)
    join(pool, b)
    turned_away = join(pool, c)
    assert turned_away.called  # one spare asked for: the second has nothing to do
    assert Deferred.fromCoroutine(pool.wait()).result == [a]
    assert pool.take().result is b
    failures: list[Any] = []
    pool.take().addErrback(failures.append)
    assert failures[0].check(ControllerError)  # none left to take


def test_a_spare_that_leaves_is_not_handed_out() -> None:
    lost: list[Any] = []
    pool = SessionPool(1, Clock(), spares=2, on_lost=lost.append)
    a, b, c = Session("a"), Session("b"), Session("c")
    join(pool, a)
    join(pool, b)
    b.close()
    assert lost == [b]
    taking = pool.take()
    assert not taking.called
    join(pool, c)
    assert taking.result is c
    waiting = pool.take()
    waiting.cancel()  # stops waiting: a later spare stays in the pool
    d = Session("d")
    join(pool, d)
    assert pool.waiting == [d]
    pool.release()
    assert pool.take().called


def test_the_timeout_counts_the_endpoints_still_there() -> None:
    clock = Clock()
    pool = SessionPool(3, clock, watch=True)
    a, b = Session("a"), Session("b")
    join(pool, a)
    join(pool, b)
    b.close()
    errors: list[str] = []
    Deferred.fromCoroutine(pool.wait(2)).addErrback(lambda f: errors.append(str(f.value)))
    clock.advance(3)
    assert errors == ["only 1 of 3 endpoints connected within 2 s"]


def test_a_replacement_is_named_apart_from_the_names_given() -> None:
    taken = ["pktendpt@10.0.0.1:1", "pktendpt@10.0.0.2:1", "lab-3"]
    assert endpoint_name("pktendpt", "10.0.0.4:1", taken) == "pktendpt@10.0.0.4:1"
    assert endpoint_name("lab-3", "10.0.0.5:1", taken) == "lab-3@10.0.0.5:1"
    assert endpoint_name("lab-4", "10.0.0.6:1", taken) == "lab-4"
    assert endpoint_name("", "10.0.0.7:1", taken) == "10.0.0.7:1"
    assert endpoint_name("x", "?", ["x", "x@?"]) == "x@?-2"
