"""What the three daemons' twistd plugins (pktendpoint, pktbroker, pktproxy) share on the
command line: an option or config error is a pointer to --help and the error as one
line, on stderr, exit status 1 (twistd prints the whole usage text, then the error, on
stdout); the pid file is the daemon's own (none with ``-n``, ``NAME.pid`` without it,
the log then in ``NAME.log``: twistd's shared ``twistd.pid`` made a second daemon started
from the same directory refuse to start); without ``-n`` the daemon says where it goes;
a daemon that cannot do its work (`stop_daemon`: a port it cannot listen on) says why in
one line on stderr (in the background: to the shell, through twistd's status pipe) and
exits with status 1 once twistd has stopped it (twistd itself exits 0 whenever its reactor stops:
Twisted has no way to set twistd's exit status, twisted/twisted#11335). See
docs/usability.md.

Only under twistd: parsed anywhere else (the in-process endpoint of ``pktlab run``, tests)
the options raise `usage.UsageError` as always. twistd is recognised by the parent it
gives its sub-command's options before parsing them.

``--log-level`` (and each role's ``LogLevel`` config key) filters twistd's log observer:
events below it are not written (`packetlab.loglevel`).
"""

from __future__ import annotations

import atexit
import functools
import getopt
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from twisted.internet.error import ReactorNotRunning
from twisted.python import usage

from packetlab import loglevel, tapinterrupt

__all__ = ["TapOptions", "listen_failure", "server_endpoint", "stop_daemon", "tap_service"]

Opts = TypeVar("Opts", bound="TapOptions")
S = TypeVar("S")


class TapOptions(usage.Options):
    """`usage.Options` of a twistd plugin named `tapname`."""

    tapname: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        # An opt_ method's docstring wrapped over lines keeps its indentation in --help.
        self.docs = {k: " ".join(v.split()) if v else v for k, v in self.docs.items()}
        self["log-level"] = None  # the option's, else the role's config sets it

    def opt_log_level(self, name: str) -> None:
        """Write the log events of this level and above: debug, info, warn, error or
        critical; overrides the config's LogLevel [default: info]."""
        try:
            self["log-level"] = loglevel.level_name(name)
        except ValueError as e:
            raise usage.UsageError(f"--log-level: {e}") from None

    def opt_help(self) -> None:
        """
        Display this help and exit.
        """
        # usage.Options' own: `twistd pktendpoint --help | head` ended in a
        # BrokenPipeError traceback once head had closed the pipe.
        try:
            sys.stdout.write(f"{self}\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Python flushes stdout again at exit; point it at /dev/null so that second
            # flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)

    opt_h = opt_help  # `-h`, as the reference tools take it (pktendpt -h, §7.4)

    def parseOptions(self, options: Any = None) -> None:
        self._own_files()
        try:
            super().parseOptions(self._options_first(options))
        except usage.UsageError as e:
            e = self._nearest_option(e)
            self.fail(e)
            raise e from None
        self._filter_log()

    def _nearest_option(self, error: usage.UsageError) -> usage.UsageError:
        """`error` with the option meant when it is a mistyped one: `--pubish` was only
        ``option --pubish not recognized``."""
        found = re.fullmatch(r"option --([\w-]+) not recognized", str(error))
        if found is None:
            return error
        import difflib  # only for this message

        names = [o.rstrip("=") for o in self.longOpt]
        hint = difflib.get_close_matches(found.group(1), names, n=1)
        return usage.UsageError(f"{error} (did you mean --{hint[0]}?)") if hint else error

    def _filter_log(self) -> None:
        """Under twistd: its log observer (the one it would make from --logfile/--syslog,
        or --logger's) behind a filter at the log level (`_LogFilter`)."""
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        if self["log-level"] is None:
            self["log-level"] = loglevel.DEFAULT
        _LogFilter.arm(parent, self["log-level"])

    def _own_files(self) -> None:
        """Under twistd, twistd's default pid file (``twistd.pid`` in the current
        directory) becomes the daemon's own: none with ``-n`` (whoever runs it in the
        foreground has its PID; with one, a broker and an endpoint started from one
        directory, as the docs' quick starts do, clashed: "Another twistd server is
        running"), ``NAME.pid`` in the background, with the log in ``NAME.log`` rather than
        ``twistd.log``. A pid file or log file given (other than ``twistd.pid`` itself)
        is left alone."""
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        nodaemon = parent.get("nodaemon")
        if parent.get("pidfile") == "twistd.pid":
            parent["pidfile"] = "" if nodaemon else f"{self.tapname}.pid"
        if not nodaemon and not parent.get("logfile") and not parent.get("syslog"):
            parent["logfile"] = f"{self.tapname}.log"

    def _options_first(self, options: Any) -> Any:
        """`options` with every option before the operands, as GNU getopt (the reference
        daemons' C getopt) permutes them: `twistd pktendpoint 127.0.0.1 --sessions 1`
        means what it says (usage.Options' getopt stops at the first operand). Unchanged
        when getopt finds an error, for usage.Options to report it."""
        if options is None:
            return None
        try:
            opts, args = getopt.gnu_getopt(list(options), self.shortOpt, self.longOpt)
        except getopt.GetoptError:
            return options
        if not args:
            return options
        first: list[str] = []
        for opt, value in opts:
            takes = (
                opt[2:] + "=" in self.longOpt
                if opt.startswith("--")
                else opt[1:] + ":" in self.shortOpt
            )
            first += [opt, value] if takes else [opt]
        return [*first, "--", *args]

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

    def check_own_files(self) -> None:
        """Under twistd: a `usage.UsageError` naming ``--logfile``/``--pidfile`` when the
        directory twistd would write it in does not exist or is not a writable directory
        (twistd found it only while opening the file: a 20-line FileNotFoundError
        traceback for the log, ``An error has occurred: b"FileNotFoundError: ..."`` for
        the pid file of a daemon). Checked before the service is made: as the user that
        starts twistd, which opens both before ``--uid`` drops privileges."""
        parent = getattr(self, "parent", None)
        if parent is None:
            return
        if not parent.get("nodaemon", True) and parent.get("logfile") == "-":
            # (twistd's "Daemons cannot log to stdout, exiting!", after our line saying the
            # log went to a file named '-')
            raise usage.UsageError(
                "--logfile -: a daemon (twistd without -n) cannot log to stdout: give -n to "
                "stay in the foreground, or a file"
            )
        # Both relative to the directory twistd starts in (it makes the pid file's path
        # absolute before its chdir to --rundir, and opens the log before it).
        for option in ("logfile", "pidfile"):
            name = parent.get(option)
            if not name or name == "-":  # none, or stdout
                continue
            path = Path(name).absolute()
            why = _unwritable_dir(path.parent)
            if why:
                raise usage.UsageError(
                    f"--{option} {path}: {why} (create it, or give another --{option})"
                )

    def announce_background(self) -> None:
        """Under twistd without -n: say where the log and the pid file go, and how to stay
        in the foreground, before twistd detaches from the terminal."""
        parent = getattr(self, "parent", None)
        if parent is None or parent.get("nodaemon", True):
            return
        rundir = Path(parent.get("rundir") or ".")
        log = Path(parent.get("logfile") or "twistd.log")  # opened before twistd's chdir
        logs = f"log in {log.absolute()}"
        if parent.get("syslog"):  # (it said "log in ./twistd.log", a file never written)
            logs = f"log to syslog as {parent.get('prefix') or 'twistd'}"
        pid = parent.get("pidfile")
        where = str((rundir / pid).absolute()) if pid else "none"
        sys.stderr.write(
            f"{self.tapname}: going to the background (twistd without -n): {logs}, pid in "
            f"{where}; use `twistd -n {self.tapname} ...` to stay in the foreground\n"
        )
        sys.stderr.flush()


class _LogFilter:
    """twistd's log observer behind the level filter, made by twistd as its --logger.

    twistd makes its logger from its options before the service, once the sub-command's
    options are parsed; its own postOptions then imports --logger by name (`namedAny`).
    So the name given is that of `observer` here, which makes the observer twistd would
    have made (or the one of the --logger given, imported now: twistd's error if not)
    and filters it. Class state, as twistd's one logger: one daemon a process."""

    name = "packetlab.tapoptions._LogFilter.observer"
    level = loglevel.DEFAULT
    twistd: Any = None  # twistd's options
    given: Callable[[], Any] | None = None  # --logger's factory

    @classmethod
    def arm(cls, twistd: Any, level: str) -> None:
        given = twistd.get("logger")
        if given != cls.name:  # (else armed already: options parsed again)
            cls.given = None
        if isinstance(given, str) and given != cls.name:
            from twisted.python.reflect import namedAny

            try:  # (twistd's own check and words, which would see only our name now)
                cls.given = namedAny(given)
            except Exception as e:
                raise usage.UsageError(f"Logger '{given}' could not be imported: {e}") from None
        elif callable(given):
            cls.given = given
        cls.twistd, cls.level = twistd, level
        twistd["logger"] = cls.name

    @classmethod
    def observer(cls) -> Any:
        from twisted.logger import ILogObserver, LegacyLogObserverWrapper
        from twisted.scripts.twistd import _SomeApplicationRunner

        if cls.given is not None:
            made = cls.given()
        else:  # twistd's own: its --logfile (rotated on SIGUSR1), --syslog, or stdout
            made = _SomeApplicationRunner.loggerFactory(cls.twistd)._getLogObserver()
            _appending(getattr(made, "_outFile", None))
        if not ILogObserver.providedBy(made):  # a legacy one: the syslog observer's emit
            made = LegacyLogObserverWrapper(made)
        return loglevel.filtered(cast(ILogObserver, _Unwritten(made)), cls.level)


def _appending(file: Any) -> None:
    """twistd's --logfile (a `LogFile`) written in append mode. twistd opens it ``rb+``
    and seeks to its end, so after logrotate's ``copytruncate`` (which empties the file
    under the daemon) each line went to the old offset: the new log began with a hole of
    that many NUL bytes (3937 after a 3937-byte log; `grep` then calls it a binary
    file). With O_APPEND every write lands at the end, wherever that is now. twistd's
    own rotation (1 MB, SIGUSR1) is unchanged: it reopens through `_openFile`."""
    from twisted.python.logfile import LogFile

    if type(file) is not LogFile:  # stdout, or a --logger of one's own
        return

    class AppendLogFile(LogFile):
        def _openFile(self) -> None:
            self.closed = False
            self._file = open(self.path, "ab", 0)  # noqa: SIM115 (LogFile closes it)
            if self.defaultMode is not None:
                os.chmod(self.path, self.defaultMode)
            self.size = self._file.tell()

    file._file.close()
    file.__class__ = AppendLogFile
    file._openFile()


class _Unwritten:
    """The daemon's log observer, saying what it could not write. A log file on a full
    disk raised OSError at each event; Twisted's publisher then dropped the event (its
    "Temporarily disabling observer" line goes to the other observers: there are none),
    and once space was free again the log went on as if nothing had been lost (measured:
    a broker logging to a 12 KiB tmpfs). Now the first event written again is preceded by
    ``N log event(s) not written from TIME on: [Errno 28] No space left on device``."""

    def __init__(self, observer: Any) -> None:
        self.observer = observer
        self.lost = 0
        self.since = 0.0
        self.why = ""

    def __call__(self, event: dict[str, Any]) -> None:
        if self.lost:
            try:
                self.observer(self._note(event))
            except OSError:
                self.lost += 1  # this one too
                return
            self.lost = 0
        try:
            self.observer(event)
        except OSError as e:
            if not self.lost:
                self.since, self.why = float(event.get("log_time") or 0.0), str(e)
            self.lost += 1

    def _note(self, event: dict[str, Any]) -> dict[str, Any]:
        import time

        from twisted.logger import LogLevel

        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return {
            "log_format": "{lost} log event(s) not written from {since} on: {why}",
            "log_level": LogLevel.warn,
            "log_namespace": "packetlab.log",
            "log_time": event.get("log_time"),
            "lost": self.lost,
            "since": since,
            "why": self.why,
        }


def _unwritable_dir(directory: Path) -> str | None:
    """Why a file cannot be created in `directory`, or None."""
    if not directory.exists():
        return f"directory '{directory}' does not exist"
    if not directory.is_dir():
        return f"'{directory}' is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory '{directory}' is not writable by this user"
    return None


def server_endpoint(reactor: Any, where: str, origin: str, example: str) -> Any:
    """`where` (from `origin`: an option or ``FILE:LINE: Key``) as a Twisted server
    endpoint, or a `usage.UsageError` naming it: not an endpoint string, a file it names
    that cannot be read (``ssl:443:privateKey=FILE``), or a TCP port outside 0..65535
    (which would otherwise surface as a traceback at bind time). `reactor` may be None
    to check the string alone (the taps do, before they load their certificates)."""
    from twisted.internet.endpoints import serverFromString

    try:
        ep = serverFromString(reactor, where)
    except (ValueError, KeyError, TypeError) as e:
        escaped = _colons_escaped(where)
        if escaped != where:  # (Twisted: "_parseTCP() got multiple values for argument")
            raise usage.UsageError(
                f"{origin}: {where!r}: a ':' inside a value must be written '\\:' (in a "
                f"shell, in quotes): '{escaped}'"
            ) from None
        raise usage.UsageError(
            f"{origin}: {where!r} is not a Twisted endpoint string ({e}); e.g. {example}"
        ) from None
    except Exception as e:
        # A parser reads files (ssl:443:privateKey=FILE) and plugins raise what they
        # like (OSError, OpenSSL's errors): a traceback, before.
        raise usage.UsageError(f"{origin}: {where!r}: {type(e).__name__}: {e}") from None
    port = getattr(ep, "_port", None)  # TCP4/TCP6/SSL4 server endpoints
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"{origin}: {where!r}: port {port} is not 0..65535")
    return ep


def _colons_escaped(where: str) -> str:
    """`where` with the bare colons inside a ``key=value`` escaped, as meant: in
    ``tcp:20556:interface=::1`` the colons split the address into fields, and Twisted
    said only ``_parseTCP() got multiple values for argument 'interface'``."""
    out: list[str] = []
    for part in re.split(r"(?<!\\):", where):
        if out and "=" in out[-1] and "=" not in part:  # a piece of the value before it
            out[-1] += "\\:" + part
        else:
            out.append(part)
    return ":".join(out)


def listen_failure(name: str, e: Any) -> str:
    """A daemon's port `name` (``publish``, ``setup``, ...) that cannot be bound, from
    its `CannotListenError` `e`: the address, which port it is, the OS error and, for the
    two an operator meets on a first day, what to do (the broker said only ``cannot
    listen on *:80: [Errno 13] Permission denied``). Short: without -n the shell is
    told its first 98 bytes (`_Exit.tell_the_shell`)."""
    import errno

    from packetlab.hostport import cannot_listen

    text = cannot_listen(e, f"{name} port")
    code = getattr(e.socketError, "errno", None)
    if code == errno.EACCES and isinstance(e.port, int) and 0 < e.port < 1024:
        text += "; below 1024: root or CAP_NET_BIND_SERVICE"
    elif code == errno.EADDRINUSE:
        text += "; another program has it (ss -ltnp shows which)"
    return text


_ANY = ("", "0.0.0.0", "::")


def distinct_ports(endpoints: Sequence[tuple[str, Any]]) -> None:
    """A `usage.UsageError` when two of the (origin, server endpoint) pairs would bind the
    same TCP port (the same interface, or either on all of them): the second bind failed
    with `Address already in use` once the reactor ran, and nothing else listened there."""
    seen: list[tuple[str, int, str]] = []
    for origin, ep in endpoints:
        port, iface = getattr(ep, "_port", None), getattr(ep, "_interface", "")
        if not isinstance(port, int) or port == 0:  # not TCP, or a port the kernel picks
            continue
        for other, p, i in seen:
            if p == port and (iface == i or iface in _ANY or i in _ANY):
                raise usage.UsageError(
                    f"{origin} and {other} both listen on port {port}: give each its own"
                )
        seen.append((origin, port, iface))


def tap_service(make: Callable[[Opts], S]) -> Callable[[Opts], S]:
    """`makeService` whose `UsageError`s (a config the service cannot use) are handled like
    option errors, and that announces going to the background once the service is made.
    Under twistd it also arms `stop_daemon`'s exit status."""

    @functools.wraps(make)
    def wrapper(options: Opts) -> S:
        try:
            options.check_own_files()
            made = make(options)
        except usage.UsageError as e:
            options.fail(e)
            raise
        options.announce_background()
        if getattr(options, "parent", None) is not None:
            _Exit.arm(options.tapname, options.parent)
            _stop_on_sigterm_now(options.parent)
        from twisted.internet import reactor

        from packetlab import clockstep

        clockstep.install(reactor)  # a stepped wall clock: the timers keep their delays
        if tapinterrupt.armed():  # (the tap's import armed it: under twistd)
            tapinterrupt.disarm_before_reactor(reactor)
        return made

    return wrapper


def _stop_on_sigterm_now(twistd: Any) -> None:
    """SIGTERM/SIGHUP as a clean stop from now on (`sigterm.install_now`), when `twistd`
    is twistd's own options: a test's stand-in parent leaves the test process's signals
    alone."""
    from twisted.application.app import ServerOptions

    if not isinstance(twistd, ServerOptions):
        return
    from twisted.internet import reactor

    from packetlab.sigterm import install_now

    install_now(reactor)  # SIGTERM while twistd starts: a clean stop, not a kill


class _Exit:
    """The exit status of a twistd daemon that `stop_daemon` stopped.

    twistd returns normally once its reactor has stopped (it removes its pid file and
    stops its log after the reactor, then exits 0), whatever stopped it. The status is
    given at the very end instead: an `atexit` handler, registered when the service is
    made (so that it runs after the handlers registered later), flushes stdout and stderr
    and ends the process with it (`os._exit`) when one was set. Nothing is armed outside
    twistd (tests, a service run in-process): there `stop_daemon` only stops the reactor."""

    tapname: str | None = None  # armed: under twistd, this daemon
    status = 0
    twistd: Any = None  # twistd's options (its config: the status pipe of a daemon)

    @classmethod
    def arm(cls, tapname: str, twistd: Any = None) -> None:
        if cls.tapname is None:
            atexit.register(cls.at_exit)
        cls.tapname = tapname
        cls.twistd = twistd

    @classmethod
    def tell_the_shell(cls, why: str) -> None:
        """Without -n, twistd's first process waits on a pipe for the daemon to say it
        started (b"0"), and exits 0 on it: a port in use, found as the service starts,
        left the shell with status 0 and the reason only in the log. Said here instead
        (twistd's parent prints ``An error has occurred: '...'`` and exits 1); twistd
        then finds no pipe to write its b"0" to."""
        config = cls.twistd
        pipe = config.get("statusPipe") if config is not None else None
        if pipe is None:
            return
        config["statusPipe"] = None
        # The parent reads 100 bytes: b"1 " and the reason, in 98 (the words that repeat
        # what "cannot listen" says go first).
        why = re.sub(r"Couldn't listen on |\[Errno \d+\] ", "", why)
        try:
            os.write(pipe, b"1 " + why.encode("utf-8", "replace")[:98])
            os.close(pipe)
        except OSError:
            pass

    @classmethod
    def at_exit(cls) -> None:
        if cls.status:
            for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                try:
                    if f is not None:
                        f.flush()
                except (OSError, ValueError):  # closed, or a pipe nobody reads
                    pass
            os._exit(cls.status)


def stop_daemon(reactor: Any, why: str | None = None, status: int = 1) -> None:
    """Stop a daemon that cannot do its work (a port it cannot listen on), also when that
    is found while twistd starts the service, before the reactor runs (where
    `reactor.stop()` raises and the daemon would stay up without its port). Under twistd
    `why` (the address and the OS error) is one line on stderr, ``twistd NAME: why``, and
    the process exits with `status` once twistd has stopped (the caller logs it too)."""
    if _Exit.tapname is not None and not _Exit.status:  # the first reason only
        if why is not None:  # the process's stderr (twistd sends sys.stderr to its log)
            err = sys.__stderr__ or sys.stderr
            text = " ".join(why.split())
            err.write(f"twistd {_Exit.tapname}: {text}\n")
            err.flush()
            _Exit.tell_the_shell(text)
        _Exit.status = status
    if reactor.running:
        _stop(reactor)
    else:
        reactor.callWhenRunning(_stop, reactor)


def _stop(reactor: Any) -> None:
    try:
        reactor.stop()
    except ReactorNotRunning:  # stopping already (two ports failed, or a SIGTERM)
        pass
