"""`packetlab.tapoptions`: the twistd plugins' one-line option errors, the notice before
going to the background, and the exit status of a daemon stopped because it cannot work,
under twistd (options with a parent) and elsewhere (none). The exit status itself is
tested with real twistd processes (tests/integration/test_twistd_messages.py)."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver
from twisted.python import usage
from zope.interface import implementer

from packetlab.tapoptions import TapOptions, _Exit, distinct_ports, stop_daemon, tap_service


@pytest.fixture(autouse=True)
def disarmed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Making a service under twistd arms the exit status: never for pytest's process."""
    monkeypatch.setattr(_Exit, "tapname", None)
    monkeypatch.setattr(_Exit, "status", 0)
    yield
    atexit.unregister(_Exit.at_exit)


class Opts(TapOptions):
    tapname = "pktdemo"
    optParameters = [["count", None, "1", "A count."]]

    def postOptions(self) -> None:
        if not str(self["count"]).isdigit():
            raise usage.UsageError(f"--count: expected a count, got {self['count']!r}")


def under_twistd(**parent: Any) -> Opts:
    o = Opts()
    o.parent = usage.Options()  # twistd's ServerOptions, set before parsing a sub-command
    o.parent.update(parent)
    return o


def parent(o: Opts) -> Any:
    assert o.parent is not None
    return o.parent


def test_outside_twistd_errors_raise_as_always() -> None:
    with pytest.raises(usage.UsageError, match="--count: expected a count, got 'x'"):
        Opts().parseOptions(["--count", "x"])
    with pytest.raises(usage.UsageError, match="unexpected argument 'a b'"):
        Opts().parseOptions(["a", "b"])


def test_under_twistd_an_error_is_one_line_and_a_pointer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        under_twistd().parseOptions(["--count", "x"])
    out = capsys.readouterr()
    assert e.value.code == 1 and out.out == ""
    assert out.err.splitlines() == [
        "(twistd pktdemo --help lists the options)",
        "twistd pktdemo: --count: expected a count, got 'x'",
    ]


def test_a_message_of_several_lines_becomes_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        under_twistd().fail(ValueError("first\n  second\n"))
    assert capsys.readouterr().err.splitlines()[-1] == "twistd pktdemo: first second"


@tap_service
def make(options: Opts) -> str:
    if options["count"] == "0":
        raise usage.UsageError("count 0: nothing to serve")
    return "service"


def test_make_service_errors_are_option_errors(capsys: pytest.CaptureFixture[str]) -> None:
    opts = Opts()
    opts.parseOptions(["--count", "0"])
    with pytest.raises(usage.UsageError):  # in-process: the caller handles it
        make(opts)
    opts.parent = under_twistd(nodaemon=True).parent
    with pytest.raises(SystemExit):
        make(opts)
    assert capsys.readouterr().err.endswith("\ntwistd pktdemo: count 0: nothing to serve\n")


def test_going_to_the_background_is_announced(capsys: pytest.CaptureFixture[str]) -> None:
    assert make(under_twistd(nodaemon=True)) == "service"
    assert capsys.readouterr().err == ""  # -n: stays here, nothing to say
    assert make(under_twistd(nodaemon=False, logfile="/var/log/d.log", pidfile="d.pid",
                             rundir="/srv")) == "service"  # fmt: skip
    assert capsys.readouterr().err == (
        "pktdemo: going to the background (twistd without -n): log in /var/log/d.log, pid in "
        "/srv/d.pid; use `twistd -n pktdemo ...` to stay in the foreground\n"
    )
    make(under_twistd(nodaemon=False, pidfile=""))
    err = capsys.readouterr().err
    assert f"log in {Path.cwd() / 'twistd.log'}, pid in none;" in err


@pytest.mark.parametrize("option", ["logfile", "pidfile"])
def test_a_log_or_pid_file_in_a_missing_directory_is_one_line(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """broker.md's `twistd --pidfile=/run/pktlab/... --logfile=/var/log/pktlab/...` before
    the directory was made: twistd's FileNotFoundError traceback (20 lines) for the log,
    `An error has occurred: b"FileNotFoundError: ..."` for the pid file."""
    (tmp_path / "file").write_text("")
    for where, why in [
        (tmp_path / "gone" / "d.x", f"directory '{tmp_path / 'gone'}' does not exist"),
        (tmp_path / "file" / "d.x", f"'{tmp_path / 'file'}' is not a directory"),
    ]:
        with pytest.raises(SystemExit) as e:
            make(under_twistd(nodaemon=False, **{option: str(where)}))
        assert e.value.code == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"twistd pktdemo: --{option} {where}: {why} (create it, or give another --{option})"
        )
    for fine in ["-", "", str(tmp_path / "d.x")]:  # stdout, none, a directory that is
        assert make(under_twistd(nodaemon=True, **{option: fine})) == "service"


class Reactor(MemoryReactor):
    """Whose `stop` raises when not running, as a real reactor's."""

    stops = 0

    def stop(self) -> None:
        if not self.running:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")
        self.stops += 1
        super().stop()


def test_stop_daemon_outside_twistd_only_stops(capfd: pytest.CaptureFixture[str]) -> None:
    reactor = Reactor()
    reactor.running = True
    stop_daemon(reactor, "cannot listen on the setup port: in use")
    assert reactor.hasStopped and capfd.readouterr().err == "" and _Exit.status == 0


def test_stop_daemon_under_twistd_says_why_once_and_sets_the_status(
    capfd: pytest.CaptureFixture[str],
) -> None:
    make(under_twistd(nodaemon=True))
    reactor = Reactor()  # not running yet: twistd starts the services first
    stop_daemon(
        reactor, "cannot listen on the setup port: Couldn't listen on\n 127.0.0.1:9: in use"
    )
    stop_daemon(reactor, "cannot listen on the endpoints port: in use")  # the first reason only
    assert capfd.readouterr().err == (
        "twistd pktdemo: cannot listen on the setup port: Couldn't listen on 127.0.0.1:9: in use\n"
    )
    assert _Exit.status == 1 and not reactor.hasStopped
    reactor.running = True  # the reactor starts: both calls stop it, the second quietly
    for f, args, kwargs in reactor.whenRunningHooks:
        f(*args, **kwargs)
    assert reactor.stops == 1


def test_stop_daemon_in_the_background_tells_the_waiting_shell(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Without -n twistd's first process waits for b"0" on its status pipe and exits 0 on
    it: a port in use left the shell with status 0. Now the reason goes down the pipe
    (twistd's parent prints it and exits 1), and twistd has no pipe left to say b"0"."""
    import os

    r, w = os.pipe()
    opts = under_twistd(nodaemon=False, pidfile="", logfile="d.log")
    make(opts)
    capfd.readouterr()
    parent(opts)["statusPipe"] = w  # what twistd's daemonize() sets
    stop_daemon(Reactor(), "cannot listen: Couldn't listen on any:20556: [Errno 98] in use")
    os.set_blocking(r, False)
    try:
        got = os.read(r, 200)
    except BlockingIOError:  # nothing said
        got = b""
    os.close(r)
    assert got == b"1 cannot listen: any:20556: in use"
    assert parent(opts)["statusPipe"] is None and _Exit.status == 1


class WithOperand(Opts):
    optFlags = [["quiet", "q", "A flag."]]

    def parseArgs(self, *args: str) -> None:
        self["operands"] = list(args)


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "3", "-q", "ADDR"],
        ["ADDR", "--count", "3", "-q"],  # the reference's GNU getopt permutes: so do we
        ["-q", "ADDR", "--count=3"],
        ["ADDR", "-q", "--cou", "3"],  # an abbreviation, as getopt allows it
    ],
)
def test_options_after_the_operand_are_options(argv: list[str]) -> None:
    o = WithOperand()
    o.parseOptions(argv)
    assert (o["count"], o["quiet"], o["operands"]) == ("3", 1, ["ADDR"])


def test_after_a_double_dash_everything_is_an_operand() -> None:
    o = WithOperand()
    o.parseOptions(["ADDR", "--", "--count"])
    assert (o["count"], o["operands"]) == ("1", ["ADDR", "--count"])


def test_endpoint_address_then_options() -> None:
    """`twistd pktendpoint 127.0.0.1:20599 --sessions 1` (was: "expected at most one
    controller address ADDR[:PORT], got 3: 127.0.0.1:20599 --sessions 1")."""
    from packetlab.endpoint.tap import Options

    o = Options()
    o.parseOptions(["--insecure-plaintext", "127.0.0.1:20599", "--sessions", "1"])
    assert (o["address"].port, int(o["sessions"])) == (20599, 1)


def test_in_the_foreground_there_is_no_pid_file_to_clash() -> None:
    """twistd's default twistd.pid, with -n: none (a broker and an endpoint started from
    one directory, as the quick starts do, clashed: "Another twistd server is running")."""
    o = under_twistd(nodaemon=True, pidfile="twistd.pid", logfile=None)
    o.parseOptions([])
    assert parent(o)["pidfile"] == "" and parent(o)["logfile"] is None  # the log: stdout


def test_in_the_background_the_files_are_the_daemons_own() -> None:
    o = under_twistd(nodaemon=False, pidfile="twistd.pid", logfile=None)
    o.parseOptions([])
    assert (parent(o)["pidfile"], parent(o)["logfile"]) == ("pktdemo.pid", "pktdemo.log")
    given = under_twistd(nodaemon=False, pidfile="/run/d.pid", logfile="/var/log/d.log")
    given.parseOptions([])  # given: left alone
    pid_only = under_twistd(nodaemon=False, pidfile="/run/d.pid", logfile=None)
    pid_only.parseOptions([])  # the log is the daemon's own all the same
    assert parent(pid_only)["logfile"] == "pktdemo.log"
    assert (parent(given)["pidfile"], parent(given)["logfile"]) == ("/run/d.pid", "/var/log/d.log")
    kept = under_twistd(nodaemon=True, pidfile="./twistd.pid", logfile=None)
    kept.parseOptions([])  # the way to ask for twistd.pid itself
    assert parent(kept)["pidfile"] == "./twistd.pid"


def test_two_listeners_on_one_port_are_refused_at_start() -> None:
    """`--publish tcp:21001 --subscribe tcp:21001` (or a proxy's --setup and --endpoints):
    the second bind failed with `Address already in use` once running, and nothing else
    listened there. The same port on two given addresses, or port 0, is fine."""
    from twisted.internet.endpoints import serverFromString

    r = MemoryReactor()

    def eps(*pairs: tuple[str, str]) -> list[tuple[str, Any]]:
        return [(origin, serverFromString(r, where)) for origin, where in pairs]

    with pytest.raises(usage.UsageError) as e:
        distinct_ports(eps(("--publish", "tcp:21001"), ("--subscribe", "tcp:21001")))
    assert str(e.value) == "--subscribe and --publish both listen on port 21001: give each its own"
    with pytest.raises(usage.UsageError):  # all addresses and one of them
        distinct_ports(eps(("a", "tcp:5:interface=127.0.0.1"), ("b", "tcp6:5:interface=\\:\\:")))
    distinct_ports(eps(("a", "tcp:5:interface=127.0.0.1"), ("b", "tcp:5:interface=127.0.0.2")))
    distinct_ports(eps(("a", "tcp:0"), ("b", "tcp:0"), ("c", "tcp:6")))


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("ssl:443:privateKey=/nonexistent/k.pem", "FileNotFoundError"),  # was a traceback
        ("ssl:443:privateKey=" + __file__.replace(":", "\\:"), "Error"),  # not a PEM key
        ("bogus:1", "is not a Twisted endpoint string"),
        ("tcp:99999", "port 99999 is not 0..65535"),
    ],
)
def test_an_endpoint_string_that_cannot_be_used_is_one_line(where: str, said: str) -> None:
    """Checked without a reactor too (the taps check their ports before their
    certificates): one UsageError naming where it was given, never a traceback."""
    from packetlab.tapoptions import server_endpoint

    with pytest.raises(usage.UsageError) as e:
        server_endpoint(None, where, "--publish", "tcp:20556")
    assert str(e.value).startswith("--publish: ") and said in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "tap", ["packetlab.endpoint.tap", "packetlab.broker.tap", "packetlab.proxy.tap"]
)
def test_every_daemon_option_says_its_default(tap: str) -> None:
    """`twistd pktendpoint --help`'s named config options said only "Override config key
    BufMax." (session 20, cli20): each option taking a value now says what it is when not
    given, or that it may be repeated."""
    import importlib

    options = importlib.import_module(tap).Options()
    takes_value = [o[:-1] for o in options.longOpt if o.endswith("=")]
    silent = []
    for name in takes_value:
        said = options.docs.get(name) or ""
        if not ("[" in said or "default" in said.lower() or "repeatable" in said):
            silent.append(name)
    assert not silent, silent


# --log-level (session 32, loglvl32): twistd wrote every event, debug ones too.


@pytest.fixture
def log_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_LogFilter` is process state (twistd's one logger): each test its own."""
    from packetlab.tapoptions import _LogFilter

    for name in ("level", "twistd", "given"):
        monkeypatch.setattr(_LogFilter, name, getattr(_LogFilter, name))


def event(level: str, text: str) -> dict[str, Any]:
    from twisted.logger import LogLevel

    return {"log_level": LogLevel.levelWithName(level), "log_format": text, "log_time": 0.0}


@implementer(ILogObserver)
class Seen(list[dict[str, Any]]):
    """An observer keeping the events it is given."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)


def twistd_observer(o: Opts) -> Any:
    """The observer twistd makes: from the name it finds in its --logger."""
    from twisted.python.reflect import namedAny

    return namedAny(parent(o)["logger"])()


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        ([], ["info", "warn", "error", "critical"]),  # info: the default
        (["--log-level", "debug"], ["debug", "info", "warn", "error", "critical"]),
        (["--log-level", "WARN"], ["warn", "error", "critical"]),
        (["--log-level=error"], ["error", "critical"]),
    ],
)
def test_the_log_level_filters_the_observer_twistd_makes(
    log_filter: None, argv: list[str], kept: list[str]
) -> None:
    seen = Seen()
    o = under_twistd(logger=lambda: seen)  # a --logger twistd imported already
    o.parseOptions(argv)
    observer = twistd_observer(o)
    for level in ("debug", "info", "warn", "error", "critical"):
        observer(event(level, f"a {level} line"))
    observer({"log_format": "no level", "log_time": 0.0})  # written, not lost unseen
    assert [e["log_format"] for e in seen] == [f"a {level} line" for level in kept] + ["no level"]


def test_the_default_observer_is_twistds_own(
    log_filter: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n and no --logfile: stdout, as twistd; the debug event is not written."""
    o = under_twistd(nodaemon=True, logfile=None, logger=None)
    o.parseOptions([])
    observer = twistd_observer(o)
    observer(event("debug", "socket 3: ECONNREFUSED"))
    observer(event("info", "session over"))
    out = capsys.readouterr().out
    assert "session over" in out and "socket 3" not in out


def test_a_logger_given_by_name_is_imported_and_filtered(log_filter: None) -> None:
    o = under_twistd(logger="twisted.logger.globalLogPublisher.__class__")
    o.parseOptions(["--log-level", "error"])
    assert parent(o)["logger"] == "packetlab.tapoptions._LogFilter.observer"
    from twisted.logger import FilteringLogObserver

    assert isinstance(twistd_observer(o), FilteringLogObserver)


def test_a_bad_log_level_is_one_line(log_filter: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        under_twistd().parseOptions(["--log-level", "loud"])
    assert e.value.code == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "twistd pktdemo: --log-level: expected one of debug, info, warn, error, critical, "
        "got 'loud'"
    )
    with pytest.raises(usage.UsageError, match="--log-level: expected one of"):
        Opts().parseOptions(["--log-level", "verbose"])  # outside twistd: raised


def test_outside_twistd_the_log_is_left_alone(log_filter: None) -> None:
    o = Opts()
    o.parseOptions(["--log-level", "warn"])
    assert o["log-level"] == "warn"  # (the in-process endpoint of `pktlab run`: its own log)
