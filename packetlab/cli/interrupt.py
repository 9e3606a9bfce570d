"""Running a controller-side command in the reactor, with the interrupts a person expects.

`run_reactor(main, prog=...)` runs `main(reactor, stop)` and returns its exit status:

* the first Ctrl-C (SIGINT) requests `stop` when the measurement watches it: sending
  stops, the replies in flight are awaited briefly, and `main` prints what was gathered
  and its summary; the status is then 130. When nothing watches `stop` yet (start-up,
  waiting for an endpoint) there is nothing to gather: the command ends at once, 130;
* a second Ctrl-C ends the process at once (130);
* SIGTERM (`timeout`, `kill`) is a Ctrl-C: the same stop, the same 130;
* stdout closed under us (`pktlab run ... | head`): quietly 141, as a native tool killed
  by SIGPIPE;
* an expected error (`ControllerError`, `ValueError`, `OSError`) is one line on stderr,
  `PROG: message`, status 2; anything else is a bug: one line naming the exception
  (the traceback with -v), status 2.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from packetlab.cli.exits import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED

if TYPE_CHECKING:  # imported when running: `quit_on_interrupt` must come before them
    from packetlab.controller.stop import StopSignal

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "interrupts_raise",
    "quit_on_interrupt",
    "run_reactor",
    "stdout_gone",
]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe: nothing more to say
            pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of a closed pipe
    says nothing (Python's advice for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_gone: list[Callable[[], object]] = []  # what to do once stdout is closed: stop the run
_stdout_closed = [False]


def stdout_gone() -> None:
    """stdout's reader went away (`| head`): say nothing more there and stop the run; the
    command then ends quietly with 141, as a native tool killed by SIGPIPE (a write to the
    pipe raised BrokenPipeError where that tool would have died). Idempotent."""
    if _stdout_closed[0]:
        return
    _stdout_closed[0] = True
    _quiet_stdout()
    for f in _gone:
        f()


def quit_on_interrupt(prog: str = "pktlab") -> None:
    """Until a command installs its own handling: Ctrl-C ends the process at once, 130,
    with one line (there is nothing to wrap up while starting, and a KeyboardInterrupt
    raised in the middle of an import could end in a traceback)."""

    def quit_now(signum: int, frame: Any) -> None:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        _flush()
        os._exit(EXIT_INTERRUPTED)

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, quit_now)


def _erasing(inner: Callable[[Any], object]) -> Callable[[Any], None]:
    """The `-v` log observer `inner`, the progress lines erased before each event (they
    were written over: `pktlab run -v`, `campaign -v`)."""

    def observe(event: Any) -> None:
        progress = sys.modules.get("packetlab.cli.progress")  # none drawn if not loaded
        if progress is not None:
            progress.erase_lines()
        inner(event)

    return observe


def run_reactor(
    main: Callable[[Any, StopSignal], Awaitable[int]],
    *,
    prog: str,
    verbose: bool = False,
    reactor: Any = None,
    error_status: Callable[[BaseException], int | None] | None = None,
) -> int:
    """Run `main(reactor, stop)` in the (global) reactor; its exit status (see above).
    `error_status(e)`: the status of an error instead of 2 (`run dns --dig-exit-codes`)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from twisted.internet.defer import Deferred
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from packetlab.controller.errors import ControllerError
    from packetlab.controller.stop import StopSignal

    expected = (ControllerError, ValueError, OSError)

    # The log goes to stderr with -v only: otherwise Twisted would print the critical
    # events (a failed experiment's traceback) on its own, next to our one-line error.
    observer: Any = _erasing(textFileLogObserver(sys.stderr)) if verbose else (lambda e: None)
    globalLogBeginner.beginLoggingTo(
        [observer], discardBuffer=not verbose, redirectStandardIO=False
    )
    stop = StopSignal()
    _gone.append(lambda: stop.request("stdout closed"))
    box: dict[str, Any] = {}
    signals = [0]

    def first_interrupt() -> None:
        if stop.watched and "code" not in box:
            print(
                f"\n{prog}: stopping: waiting briefly for replies in flight "
                "(Ctrl-C again to quit now)",
                file=sys.stderr,
                flush=True,
            )
            stop.request("interrupted")
            return
        box.setdefault("interrupted", True)
        if reactor.running:
            reactor.stop()

    def on_signal(signum: int, frame: Any) -> None:
        signals[0] += 1
        if signals[0] > 1:
            print(f"\n{prog}: interrupted", file=sys.stderr)
            _flush()
            os._exit(EXIT_INTERRUPTED)
        reactor.callFromThread(first_interrupt)

    async def body() -> None:
        try:
            box["code"] = await main(reactor, stop)
        except BrokenPipeError:  # the reader went away: nothing to tell it
            stdout_gone()
        except expected as e:
            if _stdout_closed[0]:  # a run cut short by it (a write in a callback)
                return
            if "interrupted" in box:  # our reactor.stop() cut it (a session still starting)
                return
            box["error"] = str(e) or type(e).__name__
            box["status"] = error_status(e) if error_status is not None else None
        except Exception as e:  # a bug: say what, keep the traceback for -v
            box["error"] = f"internal error: {type(e).__name__}: {e}"
            box["status"] = error_status(e) if error_status is not None else None
            if verbose:
                import traceback  # (not at the top: `pktlab --help` does without it)

                traceback.print_exc()
        finally:
            if reactor.running:
                reactor.stop()

    def started() -> None:
        # after the reactor's own handlers are in place, so that ours win; SIGTERM
        # (`timeout 10 pktlab run ...`) as a Ctrl-C: Twisted's own handler stopped the
        # reactor under the run, which then ended with the error of the connection torn
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        Deferred.fromCoroutine(body())

    reactor.callWhenRunning(started)
    from packetlab import clockstep

    clockstep.install(reactor)  # a stepped wall clock: the timers keep their delays
    try:
        reactor.run()
    except KeyboardInterrupt:  # before our handler was installed
        box.setdefault("interrupted", True)
    if _stdout_closed[0]:
        return EXIT_BROKEN_PIPE
    _flush()
    if "error" in box:
        print(f"{prog}: {box['error']}", file=sys.stderr)
        status: int | None = box.get("status")
        return EXIT_ERROR if status is None else status
    if "code" not in box:  # stopped under us: Ctrl-C before anything ran, or SIGTERM
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if stop.requested and stop.reason == "interrupted":
        return EXIT_INTERRUPTED
    code: int = box["code"]
    return code


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """For a command that must undo or finish what it made (`testbed up`, `init`): in the
    body, Ctrl-C and SIGTERM raise KeyboardInterrupt, so that `finally` and `except`
    clauses run. `quit_on_interrupt`'s handler ends the process at once (os._exit),
    which left a half-built testbed or a half-written home (session 24)."""

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # signals are the main's
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, interrupted)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
