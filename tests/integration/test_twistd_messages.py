"""`twistd pktendpoint`, `twistd pktbroker` and `twistd pktproxy` as an operator meets
them: an option or config error is one line on stderr naming the option (or file, line and
key) after a pointer to --help, exit status 1, without twistd's usage dump or a traceback;
started without -n each says that it goes to the background and where its log is,
instead of vanishing silently into the current directory."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import readline
from tls_world import home_fixture

from packetlab.controller.local import twistd_command

LOOPBACK_ANY = "tcp:0:interface=127.0.0.1"


home = home_fixture(root=True, command=False)


def twistd(cwd: Path, home: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PKTLAB_HOME=str(home or cwd / "no-home"))
    return subprocess.run(
        [*twistd_command(), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
        env=env, check=False,
    )  # fmt: skip


def assert_one_line_error(got: subprocess.CompletedProcess[str], tap: str, ending: str) -> None:
    """Exit status 1; stderr is the pointer to --help then the error line; nothing else."""
    lines = got.stderr.splitlines()
    assert got.returncode == 1, got
    assert got.stdout == "", got.stdout  # not twistd's usage text
    assert len(lines) == 2, got.stderr
    assert lines[0] == f"(twistd {tap} --help lists the options)"
    assert lines[1].startswith(f"twistd {tap}: ") and lines[1].endswith(ending), lines[1]
    assert "Traceback" not in got.stderr and "Usage:" not in got.stderr


def test_an_endpoint_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("# demo\nBufMax lots\n")
    got = twistd(tmp_path, None, "-n", "pktendpoint", "-c", str(conf), "127.0.0.1:1")
    assert_one_line_error(got, "pktendpoint", f"{conf}:2: BufMax: expected an integer, got 'lots'")


# (daemon, options, config file text or None, how the error line ends); {conf} is the
# config file's path, {tmp} the test's directory
CASES = [
    ("pktendpoint", ["--bogus"], None, "option --bogus not recognized"),
    ("pktendpoint", ["--sessions", "x"], None, "--sessions: expected a count >= 0, got 'x'"),
    ("pktbroker", ["--bogus"], None, "option --bogus not recognized"),
    ("pktbroker", ["extra"], None, "unexpected argument 'extra' (twistd pktbroker takes "
     "options only)"),
    ("pktbroker", ["--config", "{tmp}/none.conf"], None, "No such file or directory: "
     "'{tmp}/none.conf'"),
    ("pktbroker", ["--cert", "{tmp}/none.cert"], None, "or give --cert and --private-key)."),
    ("pktbroker", [], "# broker\nErrorDelay soon\n", "{conf}:2: ErrorDelay: expected "
     "seconds, got 'soon'"),
    ("pktbroker", [], "BrokerPrivKey {tmp}/none.key\n", "or give --cert and --private-key)."),
    ("pktbroker", ["--publish", "bogus:1"], None, "e.g. tcp:20556:interface=127.0.0.1"),
    ("pktbroker", [], "\nStatusListen tcp:x\n", "e.g. tcp:20556:interface=127.0.0.1"),
    ("pktbroker", ["--store", "redis://h:port/0"], None, "(or memory:, the default)"),
    ("pktbroker", ["--subscribe", "tcp:99999"], None, "--subscribe: 'tcp:99999': port 99999 is "
     "not 0..65535"),
    ("pktbroker", [], "PublishListn tcp:1\n", "{conf}:1: unknown key 'PublishListn' (did you "
     "mean PublishListen?)"),
    ("pktendpoint", [], "NoSubMod 1\n", "{conf}:1: unknown key 'NoSubMod' (did you mean "
     "NoSubMode?)"),
    ("pktendpoint", ["--set", "NoSubMod=1"], None, "--set NoSubMod: unknown config key (did "
     "you mean NoSubMode?)"),
    ("pktproxy", ["--bogus"], None, "option --bogus not recognized"),
    ("pktproxy", ["--cert", "{tmp}/none.cert"], None, "or give --cert and --private-key)"),
    ("pktproxy", [], "HeloCap 5\n", "{conf}:1: unknown key 'HeloCap' (did you mean HelloCap?)"),
    ("pktproxy", [], "\n\nHelloCap lots\n", "{conf}:3: HelloCap: not a number: 'lots'"),
    ("pktproxy", ["--backlog-max", "0"], None, "--backlog-max: must be positive, got 0"),
    ("pktproxy", [], "SetupEndpoint nowhere:1\n", "e.g. tcp:20557:interface=127.0.0.1"),
    ("pktproxy", ["--setup", "tcp:99999"], None, "--setup: 'tcp:99999': port 99999 is not "
     "0..65535"),
    ("pktproxy", ["--stats-file", "{tmp}/no/such/dir/stats.json"], None,
     "--stats-file: no directory {tmp}/no/such/dir"),
    # a directory where a file goes (session 32): was `[Errno 21] Is a directory: 'DIR'.
    # Run pktlab init ...`, and --stats-file DIR ran, with a warning each interval
    ("pktbroker", ["--private-key", "{tmp}"], None, "private key file {tmp}: Is a directory "
     "(give the file, not its directory)"),
    ("pktproxy", ["--cert", "{tmp}"], None, "certificate file {tmp}: Is a directory (give the "
     "file, not its directory)"),
    ("pktproxy", ["--stats-file", "{tmp}"], None, "--stats-file {tmp}: a directory, not a file "
     "(give the file's name, e.g. DIR/pktproxy-stats.json)"),
    # one port for both: `Address already in use` once running, with nothing else there
    ("pktbroker", ["--subscribe", "tcp:21991"], "PublishListen tcp:21991\n",
     "--subscribe and {conf}:1: PublishListen both listen on port 21991: give each its own"),
    ("pktproxy", ["--setup", "tcp:21992", "--endpoints", "tcp:21992:interface=127.0.0.1"],
     None, "--endpoints and --setup both listen on port 21992: give each its own"),
]  # fmt: skip

# where each case's line must say the setting came from (beyond its ending)
NAMED = {
    "--cert": "--cert: ",
    "BrokerPrivKey": "{conf}:1: BrokerPrivKey: ",
    "--publish": "--publish: 'bogus:1'",
    "StatusListen": "{conf}:2: StatusListen: 'tcp:x'",
    "--store": "--store: ",
    "--config": "--config: ",
    "SetupEndpoint": "{conf}:1: SetupEndpoint: 'nowhere:1'",
}


@pytest.mark.parametrize(("tap", "args", "conf_text", "ending"), CASES)
def test_an_option_or_config_error_is_one_line(
    tmp_path: Path, home: Path, tap: str, args: list[str], conf_text: str | None, ending: str
) -> None:
    conf = tmp_path / "daemon.conf"
    fill = {"conf": str(conf), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in args]
    if conf_text is not None:
        conf.write_text(conf_text.format(**fill))
        argv = ["--config", str(conf), *argv]
    elif tap == "pktbroker" and "--config" not in args:
        argv = ["--config", os.devnull, *argv]  # not the home's broker.conf
    if tap == "pktendpoint":
        argv = ["--insecure-plaintext", *argv, "127.0.0.1:1"]
    got = twistd(tmp_path, home, "-n", tap, *argv)
    assert_one_line_error(got, tap, ending.format(**fill))
    for token, named in NAMED.items():
        if token in args or (conf_text or "").find(token) >= 0:
            assert named.format(**fill) in got.stderr, got.stderr


@pytest.mark.parametrize("tap", ["pktendpoint", "pktbroker", "pktproxy"])
def test_help_still_lists_everything(tmp_path: Path, tap: str) -> None:
    got = twistd(tmp_path, None, tap, "--help")
    assert got.returncode == 0 and "--config" in got.stdout and "--help" in got.stdout
    assert got.stdout.count("\n") > 10, got.stdout


def background_args(tap: str) -> list[str]:
    if tap == "pktendpoint":
        return ["--insecure-plaintext", "--config", os.devnull, "127.0.0.1:1"]
    if tap == "pktbroker":
        return ["--config", os.devnull, "--publish", LOOPBACK_ANY, "--subscribe", LOOPBACK_ANY]
    return ["--setup", LOOPBACK_ANY, "--endpoints", LOOPBACK_ANY, "--stats-interval", "0"]


@pytest.mark.parametrize("tap", ["pktendpoint", "pktbroker", "pktproxy"])
def test_without_n_it_says_it_goes_to_the_background(tmp_path: Path, home: Path, tap: str) -> None:
    log, pid = tmp_path / f"{tap}.log", tmp_path / f"{tap}.pid"
    got = twistd(tmp_path, home, f"--logfile={log}", f"--pidfile={pid}", tap, *background_args(tap))
    try:
        assert got.returncode == 0, got.stderr
        assert f"{tap}: going to the background (twistd without -n)" in got.stderr
        assert f"log in {log}, pid in {pid}" in got.stderr and f"twistd -n {tap}" in got.stderr
    finally:
        for _ in range(100):
            if pid.exists() and pid.read_text().strip():
                os.kill(int(pid.read_text()), signal.SIGTERM)
                break
            time.sleep(0.1)
    assert not (tmp_path / "twistd.log").exists()  # it went where it said


def test_without_n_and_without_logfile_it_names_the_cwd(tmp_path: Path, home: Path) -> None:
    """The case of the README without -n: the daemon's own pktproxy.log and pktproxy.pid
    in the current directory (twistd's twistd.log and twistd.pid before session 13), said
    in full."""
    got = twistd(tmp_path, home, "pktproxy", *background_args("pktproxy"))
    pid = tmp_path / "pktproxy.pid"
    try:
        assert got.returncode == 0, got.stderr
        assert f"log in {tmp_path / 'pktproxy.log'}, pid in {pid}" in got.stderr
    finally:
        for _ in range(100):
            if pid.exists() and pid.read_text().strip():
                os.kill(int(pid.read_text()), signal.SIGTERM)
                break
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("tap", "option"),
    [
        ("pktbroker", "--publish"),
        ("pktbroker", "--subscribe"),  # after the publish port was bound
        ("pktproxy", "--setup"),
        ("pktproxy", "--endpoints"),
    ],
)
def test_a_port_in_use_stops_the_daemon_with_one_line_and_status_1(
    tmp_path: Path, home: Path, tap: str, option: str
) -> None:
    """Found while twistd starts the service, before the reactor runs: the daemon used to
    stay up without that port (its `reactor.stop()` raised ReactorNotRunning), then to exit
    0. Now: one line on stderr naming the address and the OS error, exit status 1, after
    twistd's own clean-up (its pid file is gone). pktendpoint listens on no port: it is
    always the TCP client (docs/usability.md)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = background_args(tap)
        args[args.index(option) + 1] = f"tcp:{port}:interface=127.0.0.1"
        t0 = time.monotonic()
        got = twistd(tmp_path, home, "-n", tap, *args)  # times out (60 s) if it stays up
        took = time.monotonic() - t0
    assert got.returncode == 1, (got.returncode, got.stderr, got.stdout)
    assert took < 30, took  # it stops at once: start-up is ~0.5 s
    assert "Address already in use" in got.stdout and "Main loop terminated" in got.stdout
    assert "Traceback" not in got.stdout + got.stderr, got.stdout
    lines = [ln for ln in got.stderr.splitlines() if ln.startswith(f"twistd {tap}: ")]
    assert len(lines) == 1, got.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "Address already in use" in lines[0], lines[0]
    assert "cannot listen" in lines[0]
    assert not (tmp_path / "twistd.pid").exists()  # twistd cleaned up before the exit


# What each daemon logs once its service runs (-n: the log on stdout).
RUNNING = {
    "pktbroker": "pktbroker subscribe port listening",
    "pktendpoint": "cannot reach controller 127.0.0.1:1",
    "pktproxy": "endpoints port listening",
}


def running(proc: subprocess.Popen[str], line: str, timeout: float = 30.0) -> str:
    """The output of `proc` up to its first line containing `line`, or up to its exit
    (or `timeout`); the rest stays for `communicate()`."""
    assert proc.stdout is not None
    out, deadline = "", time.monotonic() + timeout
    while line not in out and time.monotonic() < deadline:
        if not select.select([proc.stdout.fileno()], [], [], 0.1)[0]:
            continue
        got = readline(proc.stdout)
        if not got:
            break
        out += got
    return out


def test_daemons_started_in_the_foreground_from_one_directory_all_run(
    tmp_path: Path, home: Path
) -> None:
    """The quick starts, as written: `twistd -n pktbroker`, then `twistd -n pktendpoint
    ...` from the same directory. twistd wrote twistd.pid there with -n too, so the
    second one refused to start ("Another twistd server is running, PID N"). Now -n writes
    no pid file: both run."""
    env = dict(os.environ, PKTLAB_HOME=str(home))
    procs = []
    try:
        for tap in ("pktbroker", "pktendpoint", "pktproxy"):
            procs.append(subprocess.Popen(
                [*twistd_command(), "-n", tap, *background_args(tap)], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            ))  # fmt: skip
        # Each one's service at work (past twistd's pid file check, which refused the
        # second one), not a fixed 3 s: a refused daemon exits, and its output ends first.
        said = [running(p, line) for p, line in zip(procs, RUNNING.values(), strict=True)]
        for p, out in zip(procs, said, strict=True):
            assert p.poll() is None, out + p.communicate()[0]
        assert not (tmp_path / "twistd.pid").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.communicate(timeout=30)


@pytest.mark.parametrize("tap", ["pktbroker", "pktproxy"])
def test_a_port_in_use_in_the_background_is_said_to_the_shell(
    tmp_path: Path, home: Path, tap: str
) -> None:
    """Without -n twistd's first process returns once the daemon says it started: a port
    in use, found as the service starts, gave the shell status 0 and the reason only in
    the log. Now the shell gets status 1 and the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = background_args(tap)
        args[1 if tap == "pktproxy" else 3] = f"tcp:{port}:interface=127.0.0.1"
        got = twistd(tmp_path, home, tap, *args)
    assert got.returncode == 1, (got.returncode, got.stderr)
    assert "An error has occurred" in got.stderr and "Address already in use" in got.stderr
    assert f"127.0.0.1:{port}" in got.stderr, got.stderr
    for _ in range(100):  # the daemon stops: its pid file goes
        if not (tmp_path / f"{tap}.pid").exists():
            break
        time.sleep(0.1)
    assert not (tmp_path / f"{tap}.pid").exists()


@pytest.mark.parametrize("tap", ["pktendpoint", "pktbroker", "pktproxy"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_into_a_closed_pipe_is_no_traceback(tmp_path: Path, tap: str, flag: str) -> None:
    """`twistd pktbroker --help | head -3`: head closes the pipe before the help is all
    written; twistd's own opt_help then ended in a BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader gone before a byte is written, as a finished `head`
    try:
        got = subprocess.run(
            [*twistd_command(), tap, flag], stdout=write, stderr=subprocess.PIPE, text=True,
            timeout=60, cwd=tmp_path, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert got.returncode == 0, got.stderr
    assert got.stderr == "", got.stderr


TAP_MODULE = {
    "pktendpoint": "packetlab.endpoint.tap",
    "pktbroker": "packetlab.broker.tap",
    "pktproxy": "packetlab.proxy.tap",
}


@pytest.mark.parametrize("tap", list(TAP_MODULE))
def test_ctrl_c_while_starting_is_one_line_and_status_130(
    tmp_path: Path, home: Path, tap: str
) -> None:
    """Session 23 (doctour23): a Ctrl-C during a daemon's start-up (its imports,
    certificates, config: ~0.1-0.4 s) printed a KeyboardInterrupt traceback of whatever
    was running (14-41 lines) and exit status 1; `pktlab` said one line and exited 130.
    The SIGINT comes at a fixed point here, right after twistd imported the tap."""
    script = (
        "import os, signal, time\n"
        "import twisted.scripts.twistd\n"
        f"import {TAP_MODULE[tap]}\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
    )
    env = dict(os.environ, PKTLAB_HOME=str(home))
    got = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=env, check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert got.returncode == 130, got
    assert got.stderr == f"\ntwistd {tap}: interrupted while starting\n", got.stderr


def test_ctrl_c_once_running_stops_it_as_before(tmp_path: Path, home: Path) -> None:
    """The start-up handler is gone once the reactor runs: Twisted's own SIGINT handler
    (installed only over Python's default one) stops the daemon cleanly. The endpoint's
    line is one the reactor's loop logs (a connect attempt that failed); the broker's and
    proxy's are logged as their ports are bound, before the reactor runs, when a Ctrl-C
    is still start-up's one line."""
    tap = "pktendpoint"
    env = dict(os.environ, PKTLAB_HOME=str(home))
    proc = subprocess.Popen(
        [*twistd_command(), "-n", tap, *background_args(tap)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        said = running(proc, RUNNING[tap])
        assert RUNNING[tap] in said, said
        proc.send_signal(signal.SIGINT)
        out = said + proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Received SIGINT, shutting down." in out and "Server Shut Down." in out, out
    assert "interrupted while starting" not in out and "Traceback" not in out, out
