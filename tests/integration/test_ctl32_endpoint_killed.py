"""A real `twistd pktendpoint` (plain TCP or TLS) SIGKILLed while the experiment waits
on it (session 32, ctl32): every pending call fails with SessionClosed saying the
endpoint closed or the connection was lost and how many requests were unanswered, the
session says it is over, a later call fails at once, and nothing is logged as
"Unhandled error in Deferred"."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import pytest_twisted
from testkit.logs import captured_events
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from packetlab.controller import EndpointSession, SessionClosed, read_time, tcp_exchange
from packetlab.controller.local import LocalEndpoint, run_with_local_endpoint


class Silent(Protocol):
    """Accepts and never answers: the exchange waits for its reply."""


def _failure_of(d: Deferred[Any]) -> Deferred[Any]:
    return d.addCallbacks(lambda _: None, lambda f: f.value)


# SIGKILL: a SIGTERMed endpoint may first answer the requests it has read (it aborts its
# sessions when it stops), so whether they fail would be a race.
@pytest.mark.parametrize("plaintext", [True, False], ids=["plain", "tls"])
@pytest_twisted.ensureDeferred
async def test_an_endpoint_killed_mid_call_fails_every_wait(
    monkeypatch: pytest.MonkeyPatch, plaintext: bool
) -> None:
    spawned: list[LocalEndpoint] = []
    spawn = LocalEndpoint.spawn

    def keep(cls: type[LocalEndpoint], *args: Any, **kwargs: Any) -> LocalEndpoint:
        spawned.append(spawn(*args, **kwargs))
        return spawned[-1]

    monkeypatch.setattr(LocalEndpoint, "spawn", classmethod(keep))
    clock: Any = reactor
    port = clock.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    target = port.getHost().port

    async def experiment(session: EndpointSession) -> dict[str, Any]:
        await read_time(session)  # the session works
        exchange: Deferred[Any] = tcp_exchange(session, "127.0.0.1", target, b"hello", timeout=30)
        reads = [session.mread(0, 8) for _ in range(3)]
        (ep,) = spawned
        assert ep.transport is not None
        # By its pid: the one we spawned; before our requests have left (they are written
        # at the next reactor turn), so none can be answered.
        ep.transport.signalProcess("KILL")
        errors = [await _failure_of(d) for d in [exchange, *reads]]
        later = await _failure_of(session.mread(0, 8))
        return {"errors": errors, "later": later, "ended": session.ended}

    try:
        with captured_events(fmt="Unhandled error in Deferred") as unhandled:
            got = await run_with_local_endpoint(
                reactor, experiment, plaintext=plaintext, timeout=60
            )
            gc.collect()
    finally:
        await port.stopListening()
    assert got["ended"]
    for err in [*got["errors"], got["later"]]:
        assert isinstance(err, SessionClosed), err
    text = str(got["errors"][1])
    assert "the endpoint closed the connection" in text or "connection lost" in text
    assert "requests unanswered" in text
    assert len({id(e) for e in got["errors"]}) == len(got["errors"])
    assert unhandled == []
    assert str(got["later"]) == text  # the same words, at once
