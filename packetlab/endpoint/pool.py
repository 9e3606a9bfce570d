"""The experiment pool of an endpoint in broker mode (PROTOCOL.md §1.4 steps 5 to 8, §5.6;
BROKER-PROXY-OBSERVED.md §2). Sans-IO: the runner asks `schedule(now)` what to do.

* Each xdescr runs once; it stays in the pool while pending, running or suspended, and
  a copy that arrives meanwhile is ignored (the reference crashes on one). After a
  `yield` it waits until its resume hint and runs again. When it ends it is forgotten,
  so the same bytes published later run again, as the reference does.
* Up to `max_running` experiments run at once (the reference: 1). Higher `exp_priority`
  first, then arrival order.
* Pre-emption: when every slot is taken and a waiting experiment has a higher priority
  than the lowest running one, that one is suspended (`suspd`) and the slot goes to the
  higher one. Unlike the reference, which drops the suspended session and re-runs it
  from scratch, a suspended experiment keeps its connection and session and is resumed
  (`resumd`) when a slot frees up and nothing of higher priority waits.
* Bounded: at most `max_entries` xdescrs are held; more are refused (and logged). An
  xdescr is at most `MAX_XDESCR` bytes (as our broker's), its `controller_addr` at most
  255 characters (§5.6), and a number in it at most 20 digits (leading zeros aside), as
  on the broker (`packetlab.ppks.limits`): `int()` refuses over 4,300 digits, and a
  hostile broker may send anything that fits in a frame.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from twisted.logger import Logger

from packetlab.ppks import is_valid_snikey
from packetlab.wire.nvlist import NVListError, parse_nvlist

__all__ = ["MAX_XDESCR", "Action", "Experiment", "ExperimentPool", "PoolError", "State", "shown"]

U32_MAX = 0xFFFFFFFF
U64_MAX = 2**64 - 1
MAX_DIGITS = 20  # a u64 has at most 20 decimal digits
MAX_XDESCR = 4096  # bytes, as our broker accepts (the reference's own fields fit in ~600)
MAX_CONTROLLER_ADDR = 255  # characters (PROTOCOL.md §5.6)


class PoolError(ValueError):
    """An xdescr the endpoint cannot run (says why)."""


class State(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"


@dataclass(eq=False)
class Experiment:
    xdescr: bytes
    controller_addr: str
    snikey: str | None
    priority: int
    pub_end_ns: int | None
    seq: int
    state: State = State.PENDING
    not_before_ns: int = 0  # a yield's resume hint
    runs: int = 0
    problems: tuple[str, ...] = ()  # what was wrong but not fatal (logged by the pool)

    def __repr__(self) -> str:
        return (
            f"<experiment #{self.seq} {self.controller_addr} prio {self.priority} "
            f"{self.state.value}>"
        )


def _decimal(text: str, limit: int) -> int | None:
    """`text` as a number up to `limit`, or None: not ASCII digits, or too large. More
    than `MAX_DIGITS` digits is too large without calling int() on them."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > MAX_DIGITS:
        return None
    n = int(digits)
    return n if n <= limit else None


def shown(text: str, keep: int = 40) -> str:
    """A value for an error message: a hostile one may be 4,000 characters."""
    if len(text) <= keep:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text)} characters)"


def parse_xdescr(xdescr: bytes, seq: int) -> Experiment:
    """The fields the endpoint uses (§5.6); PoolError for what the reference drops."""
    if len(xdescr) > MAX_XDESCR:
        raise PoolError(f"xdescr of {len(xdescr)} bytes (at most {MAX_XDESCR})")
    try:
        pairs = parse_nvlist(xdescr, allow_duplicates=True, allow_glob=True)
    except NVListError as e:
        raise PoolError(f"malformed xdescr: {e}") from None
    fields: dict[str, str] = {}
    for p in pairs:
        fields.setdefault(p.name, p.value)
    addr = fields.get("controller_addr")
    if not addr:
        raise PoolError("xdescr missing controller_addr")
    if len(addr) > MAX_CONTROLLER_ADDR:
        raise PoolError(
            f"controller_addr {shown(addr)} is longer than {MAX_CONTROLLER_ADDR} characters"
        )
    snikey = fields.get("sni_key") or None
    if snikey is not None and not is_valid_snikey(snikey):
        # the reference drops it too, after a TCP connect (OBSERVED §2.4)
        raise PoolError(f"sni_key {shown(snikey)} is not 1..63 characters of [a-z0-9]")
    priority = 0
    if "exp_priority" in fields:
        text = fields["exp_priority"]
        prio = _decimal(text, U32_MAX)
        if prio is None:
            raise PoolError(f"exp_priority {shown(text)} is not a u32")
        priority = prio
    problems: list[str] = []
    pub_end = fields.get("pub_end")
    pub_end_ns = None
    if pub_end is not None:
        pub_end_ns = _decimal(pub_end, U64_MAX)
        if pub_end_ns is None:  # the reference logs it and runs the xdescr (OBSERVED §2.4)
            problems.append(f"pub_end {shown(pub_end)} is not a u64 (ns); ignored")
    return Experiment(xdescr, addr, snikey, priority, pub_end_ns, seq, problems=tuple(problems))


class Action(enum.Enum):
    START = "start"
    SUSPEND = "suspend"
    RESUME = "resume"


class ExperimentPool:
    log = Logger(namespace="pktendpoint")

    def __init__(self, max_running: int = 1, max_entries: int = 1024) -> None:
        self.max_running = max_running
        self.max_entries = max_entries
        self.entries: dict[bytes, Experiment] = {}
        self._seq = itertools.count(1)

    def add(self, xdescr: bytes) -> Experiment | None:
        """Take an xdescr from the broker; None if the pool already holds these bytes.
        Raises PoolError for an xdescr that cannot run, or when the pool is full."""
        if xdescr in self.entries:
            return None
        if len(self.entries) >= self.max_entries:
            raise PoolError(f"pool full ({self.max_entries} experiments held)")
        exp = parse_xdescr(xdescr, next(self._seq))
        for why in exp.problems:
            self.log.warn("experiment #{seq}: {why}", seq=exp.seq, why=why)
        self.entries[xdescr] = exp
        return exp

    def running(self) -> list[Experiment]:
        return [e for e in self.entries.values() if e.state is State.RUNNING]

    def schedule(self, now_ns: int) -> list[tuple[Action, Experiment]]:
        """What to do now; the runner carries the actions out in order (the states are
        already updated). Expired pending xdescrs (pub_end passed) are dropped."""
        for e in list(self.entries.values()):
            if e.state is State.PENDING and e.pub_end_ns is not None and e.pub_end_ns <= now_ns:
                del self.entries[e.xdescr]
        actions: list[tuple[Action, Experiment]] = []
        waiting = sorted(
            (
                e
                for e in self.entries.values()
                if e.state is State.SUSPENDED
                or (e.state is State.PENDING and e.not_before_ns <= now_ns)
            ),
            key=lambda e: (-e.priority, e.seq),
        )
        running = self.running()
        for cand in waiting:
            if len(running) >= self.max_running:
                lowest = min(running, key=lambda e: (e.priority, -e.seq), default=None)
                if lowest is None or lowest.priority >= cand.priority:
                    break
                lowest.state = State.SUSPENDED
                running.remove(lowest)
                actions.append((Action.SUSPEND, lowest))
            resumed = cand.state is State.SUSPENDED
            cand.state = State.RUNNING
            if not resumed:
                cand.runs += 1
            running.append(cand)
            actions.append((Action.RESUME if resumed else Action.START, cand))
        return actions

    def finished(self, exp: Experiment, rhint_ns: int | None = None) -> None:
        """The session ended (or could not start). After a yield it waits for its resume
        hint; otherwise the xdescr is forgotten."""
        if self.entries.get(exp.xdescr) is not exp:
            return
        if rhint_ns is not None:
            exp.state = State.PENDING
            exp.not_before_ns = rhint_ns
        else:
            del self.entries[exp.xdescr]

    def next_wakeup(self, now_ns: int) -> int | None:
        """The earliest resume hint still ahead (ns), for a timer."""
        hints = [
            e.not_before_ns
            for e in self.entries.values()
            if e.state is State.PENDING and e.not_before_ns > now_ns
        ]
        return min(hints, default=None)
