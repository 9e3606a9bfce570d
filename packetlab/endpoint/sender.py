"""Precise scheduled sends (nsend) inside the Twisted reactor thread.

`PreciseScheduler` keeps a priority queue of sends ordered by (time, arrival). A Linux
timerfd (`packetlab.endpoint.clock.TimerFd`) wakes the reactor a learned *margin* before the
earliest deadline; the scheduler then spins on ``CLOCK_REALTIME`` until the deadline, runs the
send, and keeps spinning through every gap too short to be worth sleeping, so a train with
µs gaps is paced by the spin, never by re-arming. Timing never rides on Twisted's ms timers.

Bound: one service call (one wake-up) runs for at most ``slice_ns`` plus one send and one
callback; then the scheduler wakes itself "now" (eventfd) and returns, so every other
descriptor and timed call gets a reactor iteration before the spin resumes.

Sends whose time has passed run at once inside `PreciseScheduler.schedule` (no timer) unless
earlier sends are still waiting, which keeps the order and the immediate path cheap.
See docs/sending.md.
"""

from __future__ import annotations

import enum
import gc
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.endpoint.clock import ReaderReactor, Timer, TimerFd, realtime_ns, send_time

__all__ = [
    "DENSE_NS",
    "MAX_WAKE_MARGIN_NS",
    "PreciseScheduler",
    "RollingQuantile",
    "ScheduledSend",
    "SchedulerStats",
    "SendState",
    "WakeupEstimator",
]

_U64_MAX = (1 << 64) - 1
_MAX_LEAD_NS = 1_000_000
_LEAD_WINDOW = 64
_LEAD_EVERY = 16
# The lead is the 5th percentile of the send latency: a packet leaves before its time only
# when its send is faster than 19 in 20 recent ones (at the 25th percentile, used before
# session 6, 5-12 % of the packets of a 100 µs train reached the receiver early).
_LEAD_QUANTILE = 0.05
#: A send less than this after the previous one is *dense*: its socket sends it without a
#: TX stamp (netio), so the lead, learned from stamped sends, does not apply to it. A
#: plain ``sendto`` reaches the device ~1.3-1.6 µs sooner than a stamped ``sendmsg`` (and
#: sooner again when the path is warm), so with the lead it would leave before its time.
DENSE_NS = 30_000
#: The learned wake-up margin never exceeds this. Under CPU contention the wake-ups come
#: late, the margin used to climb to its old 1 ms cap, and the scheduler then spun through
#: every gap up to 1.1 ms: a process that never sleeps is what the kernel preempts, for a
#: whole tick (4 ms at HZ=250), so it came later still. At 200 µs a 1 ms train sleeps most
#: of each gap, and a sleeper's wake-ups are run sooner (docs/sending.md, "Under CPU
#: contention"); quiet machines learn 45-90 µs, below the cap.
MAX_WAKE_MARGIN_NS = 200_000
# A send more than COLD_AFTER_NS after now finds the CPU idle and the send path cold: the
# first wake-up after a long sleep comes later than the learned margin, and the first send
# of a train took ~27 µs to reach the device here against ~1.5 µs warm. So such a wake-up
# comes at least COLD_MARGIN_NS early, and a send with more than REHEARSE_NS of spin
# ahead of it, and none in the last REHEARSE_AFTER_NS, is rehearsed (its `rehearse()`, e.g.
# a MSG_PROBE sendto that sends nothing) REHEARSE_NS before its time: the first send then
# took ~12 µs. Not in trains (a 100 µs train rehearsed per packet had a gap error p50 of
# 0.87 µs against 0.74 without, same run): their path is warm.
COLD_AFTER_NS = 5_000_000
COLD_MARGIN_NS = 500_000
REHEARSE_NS = 25_000
REHEARSE_AFTER_NS = 1_000_000


class SendState(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


_PENDING = SendState.PENDING
_DONE = SendState.DONE
_CANCELLED = SendState.CANCELLED


class ScheduledSend:
    """One queued send and, once it has run, its outcome.

    After the action ran: ``sent_before_ns``/``sent_after_ns`` are ``CLOCK_REALTIME`` readings
    taken immediately before and after the action (the packet reached the kernel between
    them), ``result`` is what the action returned and ``error`` the exception it raised.
    ``action`` is still the action that ran while ``on_done`` runs (so one callback can
    serve every send: no per-send closure), and is dropped right after.
    """

    __slots__ = (
        "action",
        "error",
        "key",
        "on_done",
        "result",
        "sent_after_ns",
        "sent_before_ns",
        "seq",
        "state",
        "when_ns",
    )

    def __init__(
        self,
        when_ns: int,
        seq: int,
        action: Callable[[], object],
        on_done: Callable[[ScheduledSend], object] | None,
        key: Hashable,
    ) -> None:
        self.when_ns = when_ns
        self.seq = seq
        self.action = action
        self.on_done = on_done
        self.key = key
        self.state = _PENDING
        self.sent_before_ns = 0
        self.sent_after_ns = 0
        self.result: object = None
        self.error: Exception | None = None

    @property
    def sent_ns(self) -> int:
        """Best estimate of the send time without a kernel TX timestamp (`send_time`: the
        midpoint, unless a preemption stretched the readings apart)."""
        return send_time(self.sent_before_ns, self.sent_after_ns)

    def __repr__(self) -> str:
        return (
            f"<ScheduledSend when={self.when_ns} seq={self.seq} key={self.key!r} "
            f"state={self.state.value}>"
        )


class RollingQuantile:
    """A quantile of the last `window` samples, recomputed every `every` samples (a sort of
    at most `window` ints, so the cost per sample stays small and bounded)."""

    __slots__ = ("_every", "_next", "_pending", "_quantile", "_samples", "_window", "value")

    def __init__(self, window: int, quantile: float, every: int, initial: int = 0) -> None:
        if window < 1 or every < 1:
            raise ValueError("window and update_every must be >= 1")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        self._window = window
        self._quantile = quantile
        self._every = every
        self._samples: list[int] = []
        self._next = 0
        self._pending = 0
        self.value = initial  #: the quantile at the last update (`initial` before)

    def add(self, sample: int) -> bool:
        """Record `sample`; True when `value` was just recomputed."""
        samples = self._samples
        if len(samples) < self._window:
            samples.append(sample)
        else:
            samples[self._next] = sample
            self._next = (self._next + 1) % self._window
        self._pending += 1
        if self._pending < self._every:
            return False
        self._pending = 0
        ordered = sorted(samples)
        self.value = ordered[min(len(ordered) - 1, int(self._quantile * len(ordered)))]
        return True

    def __len__(self) -> int:
        return len(self._samples)


class WakeupEstimator:
    """Learns how late timerfd wake-ups arrive and turns that into a wake-up margin.

    The margin is a high quantile of recent latencies plus padding, clamped. A quantile (not
    the mean or maximum) keeps the 0.5-3 ms stalls of these machines from inflating the spin.
    """

    def __init__(
        self,
        *,
        initial_ns: int = 200_000,
        window: int = 256,
        quantile: float = 0.95,
        pad_ns: int = 10_000,
        min_ns: int = 20_000,
        max_ns: int = MAX_WAKE_MARGIN_NS,
        update_every: int = 16,
    ) -> None:
        if not 0 <= min_ns <= max_ns:
            raise ValueError(f"need 0 <= min_ns <= max_ns, got {min_ns}, {max_ns}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        if pad_ns < 0:
            raise ValueError(f"pad_ns must be >= 0, got {pad_ns}")
        self._min = min_ns
        self._max = max_ns
        self._pad = pad_ns
        self._latency = RollingQuantile(window, quantile, update_every)
        self.margin_ns = min(max(initial_ns, min_ns), max_ns)

    def observe(self, latency_ns: int) -> None:
        if self._latency.add(max(latency_ns, 0)):
            q = self._latency.value
            self.margin_ns = min(max(q + self._pad, self._min), self._max)

    @property
    def samples(self) -> int:
        return len(self._latency)


@dataclass
class SchedulerStats:
    """Counters for diagnostics and benchmarks."""

    sent: int = 0  #: actions run
    immediate: int = 0  #: of which ran inside schedule() without the timer
    wakeups: int = 0  #: timerfd wake-ups serviced
    yields: int = 0  #: service calls cut short by the slice bound
    late: int = 0  #: timed sends started more than late_ns after their target
    max_busy_ns: int = 0  #: longest single service call (reactor blocked by the spin)


@implementer(IReadDescriptor)
class _TimerReader:
    """Hands timerfd readability to the scheduler (Twisted's side of the timer)."""

    def __init__(self, scheduler: PreciseScheduler, timer: Timer) -> None:
        self._scheduler = scheduler
        self._timer = timer

    def fileno(self) -> int:
        return self._timer.fileno()

    def doRead(self) -> None:
        self._scheduler._on_timer()

    def connectionLost(self, reason: Failure) -> None:
        self._scheduler._timer_lost(reason)

    def logPrefix(self) -> str:
        return "PreciseScheduler"


class PreciseScheduler:
    """Runs send actions at absolute ``CLOCK_REALTIME`` times, from the reactor thread.

    Ordering: by time, then by order of `schedule` calls, across all keys; so sends on one
    socket with equal times stay FIFO. ``on_done`` callbacks run in send order.

    Callbacks are bookkeeping (ntag), so they never sit between two closely spaced sends:
    after a timed send, ``on_done`` waits until the next send is more than
    ``callback_slack_ns`` away (or ``max_deferred`` are waiting), then runs in that slack.

    ``lead_ns`` starts every timed action that much before its time, to cancel the path from
    the send call to the device; `observe_send_latency` learns it (0 = no compensation).
    A dense send (`DENSE_NS`) gets no lead: it starts at its time, so it never leaves early.

    The cyclic garbage collector is paused inside a service call (at most a slice): a
    collection in the spin would hold a send back by 0.1-1 ms; it runs in the yield.
    """

    log = Logger()

    def __init__(
        self,
        reactor: ReaderReactor,
        *,
        clock: Callable[[], int] = realtime_ns,
        timer: Timer | None = None,
        wakeup: WakeupEstimator | None = None,
        slice_ns: int = 2_000_000,
        lead_ns: int = 0,
        late_ns: int = 5_000,
        callback_slack_ns: int = 30_000,
        max_deferred: int = 4096,
        min_sleep_ns: int = 100_000,
    ) -> None:
        if slice_ns <= 0:
            raise ValueError(f"slice_ns must be > 0, got {slice_ns}")
        if late_ns < 0 or callback_slack_ns < 0 or min_sleep_ns < 0:
            raise ValueError("late_ns, callback_slack_ns and min_sleep_ns must be >= 0")
        if max_deferred < 1:
            raise ValueError(f"max_deferred must be >= 1, got {max_deferred}")
        self._reactor = reactor
        self._clock = clock
        self._timer: Timer = timer if timer is not None else TimerFd()
        self._reader = _TimerReader(self, self._timer)
        self.wakeup = wakeup if wakeup is not None else WakeupEstimator()
        self.slice_ns = slice_ns
        self.late_ns = late_ns
        self.callback_slack_ns = callback_slack_ns
        self.max_deferred = max_deferred
        self.min_sleep_ns = min_sleep_ns
        self._lead = 0
        self.lead_ns = lead_ns
        self._lead_learned = RollingQuantile(_LEAD_WINDOW, _LEAD_QUANTILE, _LEAD_EVERY)
        self.stats = SchedulerStats()
        self._heap: list[tuple[int, int, ScheduledSend]] = []
        self._deferred: deque[ScheduledSend] = deque()  # ran, on_done not yet called
        self._seq = itertools.count()
        self._live = 0  # PENDING entries in the heap (the rest are cancelled leftovers)
        self._in_service = False  # the service loop re-arms the timer when it ends
        self._in_callback = 0  # depth of on_done calls: schedule() queues, never recurses
        self._started = False
        self._stopped = False
        self._armed_at: int | None = None
        self._armed_sleep = False  # armed for a future instant: its latency is worth learning
        self._last_before = 0  # sent_before_ns of the previous send (dense or not)
        self._wake_margin = 0  # the margin the pending wake-up was armed with (cold: larger)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register the timer with the reactor. Sends can be scheduled from then on."""
        if self._stopped:
            raise RuntimeError("scheduler was stopped; create a new one")
        if not self._started:
            self._started = True
            self._reactor.addReader(self._reader)
            self._rearm(self._clock())

    def stop(self) -> list[ScheduledSend]:
        """Run waiting callbacks, unregister and close the timer.

        Returns the sends still queued; they are cancelled and get no callback.
        """
        if self._stopped:
            return []
        self._run_deferred(lambda send: True)
        dropped = self._drop(lambda send: True)
        if self._started:
            self._reactor.removeReader(self._reader)
        self._stopped = True
        self._armed_at = None
        self._timer.close()
        return dropped

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    # -- public API --------------------------------------------------------------------------

    @property
    def lead_ns(self) -> int:
        return self._lead

    @lead_ns.setter
    def lead_ns(self, value: int) -> None:
        if type(value) is not int or not 0 <= value <= _MAX_LEAD_NS:
            raise ValueError(f"lead_ns must be an int in [0, {_MAX_LEAD_NS}], got {value!r}")
        self._lead = value

    def observe_send_latency(self, latency_ns: int) -> None:
        """Feed one measured "send call started -> packet at the device" time.

        With kernel TX timestamps: ``tx_ts - send.sent_before_ns``. ``lead_ns`` becomes the
        5th percentile of the last 64 samples (updated every 16), clamped to [0, 1 ms]: a
        low quantile, so no more than ~1 in 20 sends leaves (slightly) before its time and
        cold-cache outliers never pull sends ahead.
        """
        learned = self._lead_learned
        if learned.add(min(max(int(latency_ns), 0), _MAX_LEAD_NS)):
            self._lead = learned.value

    def schedule(
        self,
        when_ns: int,
        action: Callable[[], object],
        on_done: Callable[[ScheduledSend], object] | None = None,
        key: Hashable = None,
    ) -> ScheduledSend:
        """Run ``action()`` at ``when_ns`` (absolute CLOCK_REALTIME ns; past = now).

        ``action`` does the send and must not block (non-blocking socket). Exceptions it
        raises are caught and stored in ``send.error``. ``on_done(send)`` is called after it
        with the send times filled in. ``key`` groups sends for `cancel_key` (the endpoint
        uses its socket id). Returns the handle, already DONE when it ran immediately.
        """
        if not self._started or self._stopped:
            raise RuntimeError("scheduler is not running (call start(), not after stop())")
        if type(when_ns) is not int or not 0 <= when_ns <= _U64_MAX:
            raise ValueError(f"when_ns must be an int in [0, 2**64), got {when_ns!r}")
        if not callable(action):
            raise TypeError(f"action must be callable, got {type(action).__name__}")
        send = ScheduledSend(when_ns, next(self._seq), action, on_done, key)
        now = self._clock()
        heap = self._heap
        lead = self._lead
        target = when_ns - lead
        if (
            target <= now
            and not self._in_service
            and not self._in_callback
            and (not heap or heap[0][0] - lead > now)
        ):
            # Past due and nothing queued before it: send now, no timer round trip.
            self.stats.immediate += 1
            self._fire(send, now)  # never in the heap: not counted in _live
            return send
        heapq.heappush(heap, (when_ns, send.seq, send))
        self._live += 1
        if not self._in_service:
            margin = self._margin(target - now)
            at = target - margin
            armed = self._armed_at
            if armed is None or (at < armed and armed > now):
                self._arm(at, now, margin)
        return send

    def cancel(self, send: ScheduledSend) -> bool:
        """Drop a queued send (no action, no on_done). False if it already ran or was dropped."""
        if send.state is not _PENDING:
            return False
        _release(send)
        self._live -= 1
        self._maybe_compact()
        return True

    def cancel_key(self, key: Hashable) -> list[ScheduledSend]:
        """Drop every queued send with this key (socket closed); return them in send order.

        Callbacks still waiting for sends of this key that already ran are called first, so
        the caller never hears of a send after closing its socket. O(queue length). The
        caller decides what to tell the controller: nclose frees queued sends silently, a
        write error answers each with ntag(EPKTNOTSENT) (PROTOCOL.md §3.1, §3.2).
        """
        self._run_deferred(lambda send: send.key == key)
        return self._drop(lambda send: send.key == key)

    def pending(self, key: Hashable = None) -> int:
        """Number of queued sends, in total or (O(n)) for one key."""
        if key is None:
            return self._live
        return sum(1 for _, _, s in self._heap if s.state is _PENDING and s.key == key)

    def next_deadline(self) -> int | None:
        """Time of the earliest queued send, or None."""
        self._pop_dead()
        return self._heap[0][0] if self._heap else None

    # -- internals ---------------------------------------------------------------------------

    def _fire(self, send: ScheduledSend, before: int) -> None:
        """The immediate path: send, then callback now unless timed sends are imminent."""
        send.sent_before_ns = self._last_before = before
        try:
            send.result = send.action()
        except Exception as e:  # the send's outcome, reported through on_done
            send.error = e
        after = self._clock()
        send.sent_after_ns = after
        send.state = _DONE
        self.stats.sent += 1
        if send.on_done is None:
            send.action = _spent
            return
        if not self._deferred:
            heap = self._heap
            if not heap or heap[0][0] - self._lead - after > self.callback_slack_ns:
                self._callback(send)
                return
        self._deferred.append(send)
        self._flush_in_slack(after)

    def _callback(self, send: ScheduledSend) -> None:
        assert send.on_done is not None
        self._in_callback += 1
        try:
            send.on_done(send)
        except Exception:
            self.log.failure("on_done callback for {send!r} failed", send=send)
        finally:
            self._in_callback -= 1
            send.action = _spent

    def _flush_in_slack(self, now: int) -> None:
        """Run waiting callbacks while the next timed send is far enough away."""
        deferred = self._deferred
        heap = self._heap
        clock = self._clock
        while deferred:
            self._pop_dead()
            if heap and heap[0][0] - self._lead - now <= self.callback_slack_ns:
                return  # the armed timer's service loop runs them in a later gap
            self._callback(deferred.popleft())
            now = clock()

    def _run_deferred(self, match: Callable[[ScheduledSend], bool]) -> None:
        # In place: the service loop may hold a reference to this deque (a callback can
        # call cancel_key or stop while the loop runs).
        deferred = self._deferred
        due = [s for s in deferred if match(s)]
        if due:
            rest = [s for s in deferred if not match(s)]
            deferred.clear()
            deferred.extend(rest)
            for send in due:
                self._callback(send)

    def _on_timer(self) -> None:
        now = self._clock()
        self._timer.acknowledge()
        if self._armed_sleep and self._armed_at is not None:
            self.wakeup.observe(now - self._armed_at)
        self._armed_at = None
        self._armed_sleep = False
        if self._stopped:
            return
        self.stats.wakeups += 1
        self._service(now)

    def _service(self, now: int) -> None:
        # The hot loop: locals only, one clock read per spin step, the send inlined.
        heap = self._heap
        deferred = self._deferred
        pop = heapq.heappop
        clock = self._clock
        lead = self._lead
        # Sleeping for less than min_sleep costs more precision (wake-up jitter, losing the
        # CPU to another task) than it saves CPU, so such gaps are spun through.
        margin = max(self.wakeup.margin_ns, self._wake_margin)
        self._wake_margin = 0
        sleep_beyond = min(margin + self.min_sleep_ns, self.slice_ns)
        slack = self.callback_slack_ns
        max_deferred = self.max_deferred
        late_ns = self.late_ns
        start = now
        slice_end = now + self.slice_ns
        sent = late = 0
        last_before = self._last_before
        self._in_service = True
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            while True:
                while heap and heap[0][2].state is not _PENDING:
                    pop(heap)
                target = heap[0][0] - lead if heap else None
                if (
                    deferred
                    and now < slice_end
                    and (target is None or target - now > slack or len(deferred) >= max_deferred)
                ):
                    self._callback(deferred.popleft())
                    now = clock()
                    continue
                if target is None or target - now > sleep_beyond:
                    break  # nothing due soon: sleep on the timer
                if target > slice_end or now > slice_end:
                    self.stats.yields += 1
                    break  # give the reactor a turn; _rearm makes us runnable again
                send = pop(heap)[2]
                if target - last_before < DENSE_NS:
                    target = send.when_ns  # no lead for a dense (unstamped) send
                elif target - now > REHEARSE_NS and target - last_before > REHEARSE_AFTER_NS:
                    rehearse = getattr(send.action, "rehearse", None)
                    if rehearse is not None:
                        warm_at = target - REHEARSE_NS
                        while now < warm_at:
                            now = clock()
                        try:
                            rehearse()
                        except Exception:  # a rehearsal is an optimisation, never an error
                            pass
                        now = clock()
                while now < target:
                    now = clock()
                if now - target > late_ns:
                    late += 1
                send.sent_before_ns = last_before = now
                try:
                    send.result = send.action()
                except Exception as e:  # the send's outcome, reported through on_done
                    send.error = e
                now = clock()
                send.sent_after_ns = now
                send.state = _DONE
                sent += 1
                if send.on_done is not None:
                    deferred.append(send)
                else:
                    send.action = _spent
        finally:
            if collecting:
                gc.enable()
            self._in_service = False
            self._last_before = last_before
            self._live -= sent
            stats = self.stats
            stats.sent += sent
            stats.late += late
            stats.max_busy_ns = max(stats.max_busy_ns, now - start)
        self._rearm(now)

    def _rearm(self, now: int) -> None:
        if self._stopped:
            return
        self._pop_dead()
        head = self._heap[0][0] - self._lead if self._heap else None
        if self._deferred and (head is None or head - now > self.callback_slack_ns):
            self._arm(now, now)  # callbacks can run: come back after one reactor iteration
        elif head is not None:
            margin = self._margin(head - now)
            self._arm(head - margin, now, margin)
        elif self._armed_at is not None:
            self._timer.disarm()
            self._armed_at = None
            self._armed_sleep = False

    def _margin(self, ahead: int) -> int:
        # Never wake earlier than one slice before a send, or the slice bound would make the
        # service loop give up before reaching it.
        margin = self.wakeup.margin_ns
        if ahead > COLD_AFTER_NS:
            margin = max(margin, COLD_MARGIN_NS)
        return min(margin, self.slice_ns)

    def _arm(self, at: int, now: int, margin: int = 0) -> None:
        self._timer.arm_at(at)
        self._armed_at = at
        self._armed_sleep = at > now
        # a cold wake-up spins from its larger margin instead of going back to sleep
        self._wake_margin = margin

    def _pop_dead(self) -> None:
        heap = self._heap
        while heap and heap[0][2].state is not _PENDING:
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        # Lazy deletion leaves cancelled entries in the heap; rebuild when they dominate.
        dead = len(self._heap) - self._live
        if dead > 1024 and dead > self._live:
            self._heap[:] = [e for e in self._heap if e[2].state is _PENDING]
            heapq.heapify(self._heap)

    def _drop(self, match: Callable[[ScheduledSend], bool]) -> list[ScheduledSend]:
        dropped = [s for _, _, s in self._heap if s.state is _PENDING and match(s)]
        for send in dropped:
            _release(send)
        self._live -= len(dropped)
        self._maybe_compact()
        dropped.sort(key=lambda s: (s.when_ns, s.seq))
        return dropped

    def _timer_lost(self, reason: Failure) -> None:
        # The reactor drops every reader when it shuts down; only queued sends are news.
        if not self._stopped and self._live:
            self.log.warn(
                "scheduler timer removed by the reactor ({reason}); {n} queued sends will not run",
                reason=reason.getErrorMessage(),
                n=self._live,
            )


def _spent() -> None:
    """Placeholder action after a send ran, so the handle does not pin the payload."""


def _release(send: ScheduledSend) -> None:
    """Cancel `send` and let go of what it holds. A cancelled entry may sit in the heap
    until it reaches the top or a compaction (a send for 2**64-1 ns never does); its action
    and callback pin the payload, the socket and the whole session (issue 15). The key
    stays: `cancel_key` callers read it, and a key is a small handle (the endpoint's is a
    socket's sans-IO state, already emptied when its sends are cancelled)."""
    send.state = _CANCELLED
    send.action = _spent
    send.on_done = None
