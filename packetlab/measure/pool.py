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

from typing import Any

from twisted.internet.defer import Deferred, TimeoutError

from packetlab.controller import ControllerError, EndpointSession

__all__ = ["SessionPool", "endpoint_names"]


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
        k = 1
        while (f"{n}-{k}" if k > 1 else n) in out:
            k += 1
        out.append(f"{n}-{k}" if k > 1 else n)
    return out


class SessionPool:
    def __init__(self, count: int, reactor: Any = None) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.sessions: list[EndpointSession] = []
        self._reactor = reactor
        self._full: Deferred[list[EndpointSession]] = Deferred()
        self._released: Deferred[None] = Deferred()

    async def experiment(self, session: EndpointSession) -> None:
        """Hand `session` to the pool; returns (ending the session) once released."""
        if len(self.sessions) >= self.count or self._released.called:
            return  # a late extra endpoint: nothing for it to do
        self.sessions.append(session)
        if len(self.sessions) == self.count:
            self._full.callback(list(self.sessions))
        done: Deferred[None] = Deferred()

        def wake(result: object) -> object:
            done.callback(None)
            return result

        self._released.addBoth(wake)
        await done

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
            raise ControllerError(
                f"only {len(self.sessions)} of {self.count} endpoints connected within "
                f"{timeout:g} s"
            ) from None

    def release(self) -> None:
        if not self._released.called:
            self._released.callback(None)
