"""Several endpoints in one experiment: a `SessionPool` is the experiment a `Controller`
runs for each endpoint that connects; the sessions wait in the pool until the
coordinating code (alias resolution, campaigns) has used them all and releases them.

    pool = SessionPool(3)
    ctl = Controller(pool.experiment, limit=3)
    await ctl.listen("tcp:20556")
    sessions = await pool.wait(timeout=60)
    try:
        ...                                   # use the three sessions together
    finally:
        pool.release()
        await ctl.stop()
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, fail

from packetlab.controller import ControllerError, EndpointSession

__all__ = ["SessionPool", "endpoint_name", "endpoint_names"]


def endpoint_names(hostids: list[str], peers: list[str]) -> list[str]:
    """One distinct name per endpoint, for its records and files: its HOSTID, else its
    address. Endpoints left at the default HostID (`pktendpt`) or sharing one config all
    have the same one, and one name for several endpoints merged their records and wrote
    their `--pcap` files over each other: a HOSTID held by several is `HOSTID@ADDRESS`
    for each of them (`-2`, `-3`, ... after it should that repeat too)."""
    names = [h or p for h, p in zip(hostids, peers, strict=True)]
    names = [f"{n}@{p}" if names.count(n) > 1 and n != p else n
             for n, p in zip(names, peers, strict=True)]  # fmt: skip
    out: list[str] = []
    for n in names:
        out.append(_unused(n, out))
    return out


def endpoint_name(hostid: str, peer: str, taken: list[str]) -> str:
    """The name of an endpoint joining those named `taken` (a campaign's replacement): its
    HOSTID, `HOSTID@ADDRESS` when an endpoint had that HOSTID already, its address when it
    has none; `-2`, ... should that be taken too."""
    name = hostid or peer
    if hostid and any(t == hostid or t.startswith(f"{hostid}@") for t in taken):
        name = f"{hostid}@{peer}"
    return _unused(name, taken)


def _unused(name: str, taken: list[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... the first not in `taken`."""
    k = 1
    while (f"{name}-{k}" if k > 1 else name) in taken:
        k += 1
    return f"{name}-{k}" if k > 1 else name


class SessionPool:
    """The sessions of `count` endpoints, handed over by `wait()` once they are all there.

    `spares` (a campaign's replacements, `pktlab campaign --replace`): the pool watches
    its sessions. One that ends before `wait()` handed it over leaves (`on_lost(session)`
    is told) and the pool waits for another; after that, up to `spares` more endpoints
    wait as spares for `take()` (a lost endpoint's replacement), each taken one using one
    up; a spare that goes away leaves too. With `spares=0` (alias resolution, the default)
    a session that ends keeps its place and later endpoints find nothing to do."""

    def __init__(
        self,
        count: int,
        reactor: Any = None,
        *,
        spares: int = 0,
        on_lost: Callable[[EndpointSession], object] | None = None,
        watch: bool = False,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if spares < 0:
            raise ValueError(f"spares must be >= 0, got {spares}")
        self.count = count
        self.spares = spares
        self.sessions: list[EndpointSession] = []  # handed over by wait()
        self.waiting: list[EndpointSession] = []  # not handed over yet (spares after wait)
        self._watch = watch or spares > 0
        self._on_lost = on_lost
        self._reactor = reactor
        self._full: Deferred[list[EndpointSession]] = Deferred()
        self._released: Deferred[None] = Deferred()
        self._takers: deque[Deferred[EndpointSession]] = deque()

    async def experiment(self, session: EndpointSession) -> None:
        """Hand `session` to the pool; returns (ending the session) once released, or
        (watching) once it ended while waiting."""
        if self._released.called:
            return
        if not self._watch:
            if len(self.sessions) >= self.count:
                return  # a late extra endpoint: nothing for it to do
            self.sessions.append(session)
            if len(self.sessions) == self.count:
                self._full.callback(list(self.sessions))
        else:
            if self._full.called and len(self.waiting) >= self.spares:
                return  # spares enough (or none wanted any more): nothing for it to do
            self.waiting.append(session)
            self._hand_out()
        done: Deferred[None] = Deferred()

        def wake(result: object) -> object:
            if not done.called:
                done.callback(None)
            return result

        self._released.addBoth(wake)
        if self._watch:
            session.when_closed().addBoth(lambda _: self._left(session)).addBoth(wake)
        await done

    def _hand_out(self) -> None:
        if not self._full.called:
            if len(self.waiting) >= self.count:
                got, self.waiting = self.waiting[: self.count], self.waiting[self.count :]
                self.sessions.extend(got)
                self._full.callback(got)
            return
        while self._takers and self.waiting and self.spares > 0:
            taker = self._takers.popleft()
            self.spares -= 1
            session = self.waiting.pop(0)
            self.sessions.append(session)
            taker.callback(session)

    def _left(self, session: EndpointSession) -> None:
        """A watched session ended: one still waiting leaves the pool, said once."""
        if session in self.waiting and not self._released.called:
            self.waiting.remove(session)
            if self._on_lost is not None:
                self._on_lost(session)

    def take(self) -> Deferred[EndpointSession]:
        """A spare's session (at once if one waits, else the next to come); cancel to stop
        waiting. Fails `ControllerError` when no spare is left to take."""
        if self.spares <= 0 or self._released.called:
            return fail(ControllerError("no spare endpoint left"))
        d: Deferred[EndpointSession] = Deferred(
            lambda d: self._takers.remove(d) if d in self._takers else None
        )
        self._takers.append(d)
        self._hand_out()
        return d

    async def wait(self, timeout: float | None = None) -> list[EndpointSession]:
        """All `count` sessions, once they are there."""
        if timeout is not None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor as default_reactor

                reactor = default_reactor
            self._full.addTimeout(timeout, reactor)
        try:
            return await self._full
        except TimeoutError:
            here = len(self.waiting) if self._watch else len(self.sessions)
            raise ControllerError(
                f"only {here} of {self.count} endpoints connected within {timeout:g} s"
            ) from None

    def release(self) -> None:
        if not self._released.called:
            self._released.callback(None)
        for taker in list(self._takers):
            taker.cancel()
