"""A campaign's runs: the measurement on every endpoint at once, each record tagged with
the endpoint's name. An endpoint lost mid-run (its session ended: it closed the
connection, or stayed silent past the answer watchdog) is one `"type": "lost"` record
(its records so far kept, marked partial) and, while spares are left (`--replace`), an
endpoint waiting in the pool or connecting before the other runs are done takes its
place and runs its share from the start. `Tally` counts what the summary says."""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packetlab.cli.lost import lost_record, why_closed
from packetlab.cli.run_command import Command, Progress, Record, clock_reads
from packetlab.cli.runclock import RunClock


@dataclass
class Tally:
    """The campaign's endpoints: asked for, used (runs started, replacements too), lost
    (before the start or mid-run), replaced (a lost one's place taken); `partial`: the
    endpoints lost mid-run, whose records are partial."""

    asked: int = 0
    used: int = 0
    lost: int = 0
    replaced: int = 0
    partial: list[str] = field(default_factory=list)
    #: `--split`: the option dealt out (`names`, `urls`), and the shares of the endpoints
    #: whose run failed or was lost, not replaced: name -> its targets (the summary's
    #: `incomplete`; session 30 left them unnamed)
    split: str | None = None
    incomplete: dict[str, list[str]] = field(default_factory=dict)
    #: --json: each run's summary times on its endpoint's clock (`RunClock.fields`), by
    #: the endpoint's name (the campaign's own stay on ours: several clocks)
    clocks: dict[str, Record] = field(default_factory=dict)


@dataclass
class Spares:
    """Where a lost endpoint's replacement comes from: `take()` a session (a Deferred,
    cancellable), `name(session)` its name (its HOSTID, distinct from those given)."""

    take: Callable[[], Any]
    name: Callable[[Any], str]
    hostid: Callable[[Any], str]


def pcap_file(path: str, name: str, *, exclusive: bool = False) -> str:
    """FILE-NAME.pcap, the `--pcap FILE` of the endpoint `name`. A `/` (or NUL) in the
    name, which comes from the endpoint's HOSTID, is `_`: the file stays in FILE's
    directory. `exclusive` (the xpmgr mlet: one process per endpoint, none sees another's
    name) makes the file now, FILE-NAME-2.pcap, ... when the name is taken (by an endpoint
    sharing the HOSTID, or an earlier run: never written over)."""
    name = name.replace("/", "_").replace("\0", "_")
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = path, ""
    for k in range(1, 10_000 if exclusive else 2):
        made = f"{stem}-{name}{f'-{k}' if k > 1 else ''}{f'.{ext}' if ext else ''}"
        if not exclusive:
            return made
        try:
            os.close(os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        return made
    raise OSError(f"--pcap {path}: no free name for {name} (up to -{k})")


def per_endpoint(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """`args` for the endpoint `name`: its own `--pcap` file (FILE-NAME.pcap)."""
    a = copy.copy(args)
    if getattr(a, "pcap", None):
        a.pcap = pcap_file(str(a.pcap), name)
    return a


class TaggedProgress(Progress):
    """One endpoint's view of the campaign's progress line: its words prefixed with its
    name (`[ep2] dns 3/10: ...`), the Ctrl-C stop and the line itself shared; `clock`
    that endpoint's (its TSIG signatures, iperf3 tokens, curl's trace times)."""

    def __init__(self, inner: Progress, name: str, clock: RunClock | None = None) -> None:
        self._inner, self._name = inner, name
        self.clock = RunClock() if clock is None else clock

    def __call__(self, text: str) -> None:
        self._inner(f"[{self._name}] {text}")

    def __getattr__(self, attr: str) -> Any:  # stop, stopping, write, note, ...
        return getattr(self._inner, attr)

    @property
    def stopping(self) -> bool:
        return self._inner.stopping


async def measure_on(
    reactor: Any,
    cmd: Command,
    runs: list[tuple[str, argparse.Namespace, Any]],
    emit: Any,
    progress: Progress,
    sync_start: float | None = None,
    *,
    spares: Spares | None = None,
    tally: Tally | None = None,
) -> None:
    """`cmd` on every (endpoint name, its share of the args, its session) at once, each
    record tagged with the name, the endpoint's HOSTID (`spares.hostid`; "" without) and
    its address (`--pcap FILE`: FILE-NAME.pcap). An endpoint whose run
    fails with its session alive (it lacks raw sockets, ...) gets one `"type": "error"`
    record; one whose session ended is lost (see the module) and replaced from `spares`
    when one comes while another run goes on."""
    from twisted.internet.defer import CancelledError, Deferred, gatherResults
    from twisted.internet.task import deferLater

    tally = Tally(asked=len(runs)) if tally is None else tally
    hostid_of: Callable[[Any], str] = spares.hostid if spares is not None else lambda s: ""

    def tags(name: str, session: Any) -> Record:
        # Every record says where it was measured from: the lost and replaced records
        # did, the measurements' own did not (an endpoint named by its HOSTID alone had
        # its address nowhere in the output, unless it was lost)
        return {"endpoint": name, "hostid": hostid_of(session), "address": str(session.peer)}

    measuring = [0]
    idle: list[Deferred[None]] = []  # slots waiting for a spare while others measure

    def settle() -> None:
        measuring[0] -= 1
        if measuring[0] == 0:  # no run left that a spare could come during
            for d in list(idle):
                _fire(d, None)

    async def replacement() -> Any:
        """A spare's session, or None: none came before the other runs (or Ctrl-C) ended."""
        assert spares is not None
        got: Deferred[Any] = Deferred()
        taking = spares.take()
        taking.addCallbacks(lambda s: _fire(got, s), lambda f: _fire(got, None))
        if got.called:
            return got.result
        done: Deferred[None] = Deferred()
        idle.append(done)
        stop = getattr(progress, "stop", None)
        if stop is not None:
            stop.when_requested().addBoth(lambda _: _fire(done, None))
        if measuring[0] == 0:
            _fire(done, None)
        done.addCallback(lambda _: _fire(got, None))
        try:
            return await got
        finally:
            taking.cancel()  # (a no-op once it fired)
            idle.remove(done)

    async def once(name: str, a: argparse.Namespace, session: Any) -> tuple[str | None, int, bool]:
        """One run: why it failed (None: it did not), the records it gave, whether one
        was an error. Errors after the session ended are the loss itself: left out."""
        kept, failed = [0], [False]

        def tagged(record: Record) -> None:
            if session.ended and "error" in record:
                failed[0] = True
                return
            kept[0] += 1
            failed[0] = failed[0] or "error" in record
            emit({**record, **tags(name, session)})

        # The times a native tool would take from its host's clock, and this run's
        # summary times, are this endpoint's (one RunClock a run, as `pktlab run`'s)
        clock = RunClock(session.clock_ns)  # (ours as its session reads it)
        a._clock = clock  # (`runclock.now_of`)
        as_json = getattr(a, "json", None)  # (None: made by hand, a test's)
        timed, first = (False, False) if as_json is None else clock_reads(cmd, a)
        timed = timed and (as_json or first)  # (its rows, `cmd.row`, print no such time)
        experiment = cmd.experiment(a, tagged, TaggedProgress(progress, name, clock))
        if timed:
            experiment = clock.around(experiment, first=first, last=bool(as_json))
        measuring[0] += 1
        try:
            await experiment(session)
        except CancelledError:
            raise
        except Exception as e:  # this endpoint's failure, not the campaign's
            return str(e) or type(e).__name__, kept[0], failed[0]
        finally:
            settle()
            if timed and as_json:
                tally.clocks[name] = clock.fields()
        return None, kept[0], failed[0]

    def unmeasured(name: str, share: argparse.Namespace) -> Record:
        """`--split`: the share of `name`, whose run failed or was lost: `"share"` in its
        record, and in the summary's `incomplete` until a replacement measures it."""
        if tally.split is None:
            return {}
        targets = [str(t) for t in getattr(share, tally.split)]
        tally.incomplete[name] = targets
        return {"share": targets}

    async def slot(name: str, share: argparse.Namespace, session: Any) -> None:
        while True:
            tally.used += 1
            why, kept, failed = await once(name, per_endpoint(share, name), session)
            if not (session.ended and (why is not None or failed)):
                if why is not None:
                    part = unmeasured(name, share)
                    if part:  # (how much of the share was measured)
                        part["records"] = kept
                    emit({"type": "error", **tags(name, session), "error": why, **part})
                return
            why = why_closed(session, why)
            lost = lost_record(name, hostid_of(session), session.peer, "mid-campaign", why, kept)
            emit({**lost, **unmeasured(name, share)})
            tally.lost += 1
            if kept:
                tally.partial.append(name)
            if spares is None or progress.stopping:
                return
            fresh = await replacement()
            if fresh is None:
                return
            tally.incomplete.pop(name, None)  # the replacement runs the share again
            old, name, session = name, spares.name(fresh), fresh
            tally.replaced += 1
            emit({"type": "replaced", "endpoint": name, "replaces": old,
                  "hostid": spares.hostid(fresh), "address": fresh.peer})  # fmt: skip

    if sync_start is not None:  # (deferLater: a Ctrl-C's cancel also cancels the timer)
        await deferLater(reactor, max(sync_start, 0.0))
    experiments = [slot(name, a, s) for name, a, s in runs]
    await gatherResults([Deferred.fromCoroutine(e) for e in experiments], consumeErrors=True)


def _fire(d: Any, value: object) -> None:
    if not d.called:
        d.callback(value)
