"""WebAssembly modules compiled in a worker thread, one at a time (docs/monitors.md
"Loading", docs/reflexes.md "Loading").

The endpoint's certificate monitors (`packetlab.endpoint.monitors`) and reflexes
(`packetlab.endpoint.reflexes`) share one `CompileWorker`: compiling a module just under
the 1 MiB cap takes seconds to tens of seconds, and on the reactor thread it stopped the
whole endpoint for that long (docs/performance.md "Monitors: compiling off the
reactor"). wasmtime's compile is a ctypes call, which releases the GIL, and a compiled
module may be used from any thread.

* One module compiles at a time for the whole endpoint (a second would only share the
  same cores and double the peak memory); the others wait in submission order.
* A module (same kind, same digest) two sessions wait for compiles once for both.
* Cancelling a waiter's Deferred (its session ended) forgets it; a queued module nobody
  waits for any more is dropped, one that compiles already finishes (wasmtime cannot stop
  it) and is still handed to its `keep` (the caller's cache).
* A failure other than `MonitorLoadError` (out of memory, a bug) is logged and given to
  the waiters as a `MonitorLoadError`.

Nothing here imports wasmtime but `_next` (which makes the engine on the reactor thread
before a worker needs it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.monitor.abi import MonitorLoadError

__all__ = ["CompileWorker", "Runner", "fired"]

log = Logger(namespace="pktendpoint.compile")
T = TypeVar("T")

#: Runs a function in a worker thread: a Deferred of its result (twisted's
#: ``deferToThread``; the tests pass their own).
Runner = Callable[[Callable[[], Any]], "Deferred[Any]"]


@dataclass(eq=False)
class _Job(Generic[T]):
    kind: str  # "monitor", "reflex": the log's word, and part of the key
    digest: bytes
    size: int
    compile: Callable[[], T]
    keep: Callable[[T], None]
    waiters: list[Deferred[T]] = field(default_factory=list)


class CompileWorker:
    """Compiles modules in `runner`'s thread, one at a time (see the module docstring)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._jobs: dict[tuple[str, bytes], _Job[Any]] = {}  # queued or compiling
        self._queue: deque[_Job[Any]] = deque()
        self._running: _Job[Any] | None = None

    @property
    def busy(self) -> bool:
        """A module compiles now."""
        return self._running is not None

    def submit(
        self,
        kind: str,
        digest: bytes,
        size: int,
        compile: Callable[[], T],
        keep: Callable[[T], None],
    ) -> Deferred[T]:
        """A Deferred of ``compile()`` run in the worker (errback `MonitorLoadError`).
        `keep` gets a successful result first, even when nobody waits for it any more.
        A module of this `kind` and `digest` already queued or compiling is not compiled
        again: the new waiter gets its result."""
        key = (kind, digest)
        job = self._jobs.get(key)
        if job is None:
            job = self._jobs[key] = _Job(kind, digest, size, compile, keep)
            self._queue.append(job)

        def forget(waiter: Deferred[T]) -> None:
            if waiter in job.waiters:
                job.waiters.remove(waiter)
                if not job.waiters and job in self._queue:  # not compiling yet: dropped
                    self._queue.remove(job)
                    del self._jobs[key]

        waiter: Deferred[T] = Deferred(forget)
        job.waiters.append(waiter)
        self._next()
        return waiter

    def _next(self) -> None:
        if self._running is not None or not self._queue:
            return
        from packetlab.monitor.engine import engine

        job = self._running = self._queue.popleft()
        engine()  # made here, on the reactor thread, before any worker needs it
        log.info(
            "compiling {kind} {d} ({n} bytes) in a worker thread",
            kind=job.kind,
            d=job.digest.hex(),
            n=job.size,
        )
        self.runner(job.compile).addBoth(self._compiled, job, monotonic())

    def _compiled(self, got: Any, job: _Job[Any], t0: float) -> None:
        self._running = None
        del self._jobs[(job.kind, job.digest)]
        d = job.digest.hex()
        log.info("compiling {kind} {d} took {s:.2f} s", kind=job.kind, d=d, s=monotonic() - t0)
        if not isinstance(got, Failure):
            job.keep(got)
        elif not got.check(MonitorLoadError):
            log.failure("compiling {kind} {d} failed", got, kind=job.kind, d=d)
            got = Failure(MonitorLoadError(f"compile failed: {got.getErrorMessage()}"))
        for w in job.waiters:
            if isinstance(got, Failure):
                w.errback(got)
            else:
                w.callback(got)
        self._next()


def fired(compile: Callable[[], T]) -> Deferred[T]:
    """``compile()`` now, on this thread, as a fired Deferred (errback `MonitorLoadError`)."""
    got: Deferred[T] = Deferred()
    try:
        got.callback(compile())
    except MonitorLoadError as e:
        got.errback(e)
    return got
