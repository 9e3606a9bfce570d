"""What the three daemons' twistd plugins (pktendpoint, pktbroker, pktproxy) share on the
command line: an option or config error is a pointer to --help and the error as one
line, on stderr, exit status 1 (twistd prints the whole usage text, then the error, on
stdout); without ``-n`` the daemon says where it goes (twistd writes twistd.log and
twistd.pid into the current directory without a word). See docs/usability.md.

Only under twistd: parsed anywhere else (the in-process endpoint of ``pktlab run``, tests)
the options raise `usage.UsageError` as always. twistd is recognised by the parent it
gives its sub-command's options before parsing them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from twisted.python import usage

__all__ = ["TapOptions", "stop_daemon", "tap_service"]

Opts = TypeVar("Opts", bound="TapOptions")
S = TypeVar("S")


class TapOptions(usage.Options):
    """`usage.Options` of a twistd plugin named `tapname`."""

    tapname: ClassVar[str] = ""

    def parseOptions(self, options: Any = None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            self.fail(e)
            raise

    def parseArgs(self, *args: str) -> None:
        if args:  # rather than usage.Options' "Wrong number of arguments."
            raise usage.UsageError(
                f"unexpected argument {' '.join(args)!r} (twistd {self.tapname} takes options only)"
            )

    def fail(self, error: Exception) -> None:
        """Under twistd: a pointer to --help, then `error` as one line, on stderr; exit 1."""
        if getattr(self, "parent", None) is None:
            return
        text = " ".join(str(error).split())  # one line, whatever the message held
        name = f"twistd {self.tapname}"  # the error last: the line that stands out
        sys.stderr.write(f"({name} --help lists the options)\n{name}: {text}\n")
        sys.stderr.flush()
        raise SystemExit(1)

    def announce_background(self) -> None:
        """Under twistd without -n: say where the log and the pid file go, and how to stay
        in the foreground, before twistd detaches from the terminal."""
        parent = getattr(self, "parent", None)
        if parent is None or parent.get("nodaemon", True):
            return
        rundir = Path(parent.get("rundir") or ".")
        log = Path(parent.get("logfile") or "twistd.log")  # opened before twistd's chdir
        pid = parent.get("pidfile")
        where = str((rundir / pid).absolute()) if pid else "none"
        sys.stderr.write(
            f"{self.tapname}: going to the background (twistd without -n): log in "
            f"{log.absolute()}, pid in {where}; use `twistd -n {self.tapname} ...` to stay "
            "in the foreground\n"
        )
        sys.stderr.flush()


def tap_service(make: Callable[[Opts], S]) -> Callable[[Opts], S]:
    """`makeService` whose `UsageError`s (a config the service cannot use) are handled like
    option errors, and that announces going to the background once the service is made."""

    @functools.wraps(make)
    def wrapper(options: Opts) -> S:
        try:
            made = make(options)
        except usage.UsageError as e:
            options.fail(e)
            raise
        options.announce_background()
        return made

    return wrapper


def stop_daemon(reactor: Any) -> None:
    """Stop a daemon that cannot do its work (a port it cannot listen on), also when that
    is found while twistd starts the service, before the reactor runs (where
    `reactor.stop()` raises and the daemon would stay up without its port)."""
    if reactor.running:
        reactor.stop()
    else:
        reactor.callWhenRunning(reactor.stop)
