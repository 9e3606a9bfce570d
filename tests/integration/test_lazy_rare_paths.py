"""The rare paths of real daemons and commands, each started as an operator starts it,
where a module left lazy (`packetlab.lazyimports`: `DAEMON` in the three daemons,
`LAZY`, `LAZY_PATTERNS` and `PARTIAL` in `pktlab run`) or forgotten after twistd's plugin
scan (`packetlab.heaptrim.drop_scan_leftovers`: unittest, trial, argparse, pdb...) is
first needed: daemonised with a pid file and a log file (log rotation on SIGUSR1, a second
instance refused), `twistd --debug` (pdb, forgotten, comes back), a controller given by
host name (Twisted's endpoints and TLS transport, lazy), a second session after the idle
trim, SIGINT with a session open, an IDNA name in `pktlab run dns` (`idna`, lazy), a
Python mlet of `pktlab xpmgr` using asyncio past `PARTIAL`'s names and `re.Pattern`s, and
a plugin cache that twistd must rebuild on every start (it cannot write it).
docs/reliability.md, "Lazy imports on rare paths (session 23, lazyaudit23)"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, stop_process
from pxworld import EndpointProc, XpmgrProc
from tls_world import TLSController, TLSEndpoint, controller_chain, home_fixture, pktlab_init

from packetlab.controller.local import twistd_command
from packetlab.wire import vmem

LOOPBACK_ANY = "tcp:0:interface=127.0.0.1"
#: What a log must never hold, whatever path was taken.
TROUBLE = ("Traceback", "Unhandled", "AttributeError", "ImportError", "NameError")


home = home_fixture(root=True, command=False)


def env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PKTLAB_HOME=str(home), PYTHONPATH=path)


def daemon_args(tap: str) -> list[str]:
    if tap == "pktendpoint":
        return ["--insecure-plaintext", "--config", os.devnull, "127.0.0.1:1"]
    if tap == "pktbroker":
        return ["--config", os.devnull, "--publish", LOOPBACK_ANY, "--subscribe", LOOPBACK_ANY]
    return ["--setup", LOOPBACK_ANY, "--endpoints", LOOPBACK_ANY, "--stats-interval", "0"]


def poll(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def assert_clean(text: str) -> None:
    found = [line for line in text.splitlines() if any(word in line for word in TROUBLE)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("tap", ["pktendpoint", "pktbroker", "pktproxy"])
def test_in_the_background_it_rotates_its_log_refuses_a_second_and_cleans_up(
    tmp_path: Path, home: Path, tap: str
) -> None:
    """twistd without -n (daemonised after the drop and the lazy modules: a fork), its
    log rotated by SIGUSR1 (twistd's handler, Twisted's LogFile), a second instance on
    the same pid file refused by twistd's check, SIGTERM removing the pid file."""
    log, pidfile = tmp_path / f"{tap}.log", tmp_path / f"{tap}.pid"
    argv = [*twistd_command(), f"--logfile={log}", f"--pidfile={pidfile}", tap, *daemon_args(tap)]
    got = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env(home)
    )
    assert got.returncode == 0, got.stderr
    poll(lambda: pidfile.exists() and pidfile.read_text().strip() != "", "the pid file")
    pid = int(pidfile.read_text())
    try:
        poll(lambda: "reactor class:" in read(log), "the reactor's start")
        os.kill(pid, signal.SIGUSR1)
        rotated = tmp_path / f"{tap}.log.1"
        poll(rotated.exists, "the rotated log")
        again = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env(home)
        )
        assert again.returncode == 1, again
        assert f"Another twistd server is running, PID {pid}" in again.stdout + again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    poll(lambda: not pidfile.exists(), "the pid file removed at exit")
    # twistd removes the pid file when its reactor stops and logs "Server Shut Down." after
    # that (AppLogger.stop): read once the pid file was gone, the line was missing once
    # (CI, session 27), so wait for it
    poll(lambda: "Server Shut Down." in read(rotated) + read(log), "the shutdown line")
    text = rotated.read_text() + log.read_text()
    assert "Server Shut Down." in text
    assert_clean(text)


def test_twistd_debug_gets_the_forgotten_pdb_back(tmp_path: Path, home: Path) -> None:
    """`twistd --debug` runs the reactor under pdb: twistd's `pdb`, forgotten after the
    plugin scan, is a stand-in that imports it again (`heaptrim.LAZY_BINDINGS`)."""
    argv = [*twistd_command(), "-n", "--debug", "--pidfile=", f"--logfile={tmp_path / 'e.log'}",
            "pktendpoint", *daemon_args("pktendpoint")]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env(home), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write("continue\n")
        proc.stdin.flush()
        poll(lambda: "cannot reach controller 127.0.0.1:1" in read(tmp_path / "e.log"), "running")
    finally:
        stop_process(proc)
    out = proc.communicate(timeout=10)[0]
    assert "(Pdb)" in out, out
    assert_clean(out + read(tmp_path / "e.log"))


def test_a_controller_by_name_a_second_session_after_the_trim_and_sigint(
    tmp_path: Path,
) -> None:
    """A controller given by host name (Twisted's endpoints, and its TLS transport that
    `DAEMON` left lazy, load then), two sessions with the idle trim between them, SIGINT
    (Twisted's own handler, not packetlab.sigterm's) with the second session open."""
    home = pktlab_init(tmp_path / "home")
    chain = controller_chain(home, tmp_path / "chain")
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    ep = TLSEndpoint(home, ctl.address.replace("127.0.0.1", "localhost"), tmp_path)
    try:
        for _ in range(2):
            c = ctl.accept()
            c.start()
            assert c.mread(vmem.HOSTID.addr, vmem.HOSTID.size)
            if ep.output().count("session over") == 0:
                c.close()
                ep.wait_log("session over")
        ep.proc.send_signal(signal.SIGINT)
        ep.proc.wait(15)
    finally:
        ep.stop()
        ctl.close()
    out = ep.output()
    assert "Received SIGINT, shutting down." in out
    assert out.count("controller session started") == 2
    assert "session over: closed by the endpoint: the endpoint is stopping" in out
    assert_clean(out)


def test_pktlab_run_dns_with_an_idna_name(tmp_path: Path) -> None:
    """`idna` (lazy in `pktlab run`) encodes the name asked (+idnin) and decodes it for
    the display (+idnout); no server needed: +qr shows the query sent."""
    closed = 9  # discard: nothing answers on loopback
    base = [sys.executable, "-m", "packetlab", "run", "dns", "@127.0.0.1", "-p", str(closed),
            "+qr", "+tries=1", "+time=1", "+idnin", "bücher.test"]  # fmt: skip
    run_env = env(tmp_path / "no-home")
    shown = subprocess.run(
        [*base, "+idnout"], capture_output=True, text=True, timeout=60, env=run_env
    )
    plain = subprocess.run(
        [*base, "+noidnout"], capture_output=True, text=True, timeout=60, env=run_env
    )
    assert ";bücher.test.\t\t\tIN\tA" in shown.stdout, shown.stdout + shown.stderr
    assert ";xn--bcher-kva.test.\t\tIN\tA" in plain.stdout, plain.stdout + plain.stderr
    assert_clean(shown.stderr + plain.stderr)


MLET = """\
import asyncio, copy, logging, re, string


async def mlet(session, args):
    loop = asyncio.new_event_loop()  # asyncio past PARTIAL's three names
    try:
        got = loop.run_until_complete(asyncio.wait_for(asyncio.sleep(0, result=7), 5))
    finally:
        loop.close()
    text = string.Template("$a-$b").substitute(a=1, b=2)
    logging.Formatter("{message}", style="{", validate=True)
    kind = type(copy.copy(string.Template.pattern)).__name__
    plain = isinstance(string.Template.pattern, re.Pattern)
    print("MLET", got, text, kind, plain, type(asyncio.Queue()).__name__, flush=True)
"""


def test_a_python_mlet_has_asyncio_and_patterns_of_its_own(tmp_path: Path) -> None:
    """An mlet of `pktlab xpmgr` runs in its own interpreter (`packetlab.controller.pymlet`)
    without `pktlab run`'s lazy machinery: all of asyncio, `re.Pattern`s."""
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "asyncio_mlet.py"
    mlet.write_text(MLET)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "1")
    ep = EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1")
    try:
        assert xp.wait_exit() == 0, xp.text()
    finally:
        ep.stop()
        xp.stop()
    [result] = xp.result_lines()
    assert result["status"] == "done", result
    assert "MLET 7 1-2 Pattern True Queue" in result["output"], result["output"]


#: For twistd: every dropin.cache is found stale and cannot be written (an install
#: read-only to the daemon's user, or the first start after an upgrade), so each start's
#: plugin scan imports every plugin module to rebuild it; `rebuilt` is written when a
#: rebuild tried to save its cache. The files themselves are not touched.
STALE_CACHE = """\
import os
from twisted.python import filepath

_mtime, _save = filepath.FilePath.getModificationTime, filepath.FilePath.setContent


def _stale(self):
    return 0.0 if self.basename() == "dropin.cache" else _mtime(self)


def _unwritable(self, content, ext=b".new"):
    if self.basename() != "dropin.cache":
        return _save(self, content, ext)
    with open(os.environ["PKTLAB_TEST_REBUILT"], "a") as f:
        f.write(self.path + "\\n")
    raise PermissionError(13, "Permission denied", self.path)


filepath.FilePath.getModificationTime = _stale
filepath.FilePath.setContent = _unwritable
"""


def test_a_plugin_cache_that_cannot_be_written_leaves_nothing_more_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan that rebuilds the plugin cache imports every plugin module, whose globals
    held trial and unittest, cred, conch, Twisted's endpoints and TLS transport: the drop
    forgot none of them (+2.6 MiB of idle endpoint RSS on each such start). The plugin
    modules go first now, then what only they imported, and the reactor's TLS transport
    is a lazy module again."""
    from test_endpoint_idle_imports import SITECUSTOMIZE
    from test_endpoint_startup_memory import session

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE + "\n" + STALE_CACHE)
    listing, rebuilt = tmp_path / "modules.txt", tmp_path / "rebuilt.txt"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PKTLAB_TEST_MODULES", str(listing))
    monkeypatch.setenv("PKTLAB_TEST_REBUILT", str(rebuilt))
    home = pktlab_init(tmp_path / "home")
    session(home, controller_chain(home, tmp_path / "chain"), tmp_path / "a", lambda pid: None)
    assert rebuilt.exists() and "dropin.cache" in rebuilt.read_text()  # it did rebuild
    listed, lazy = listing.read_text().split("=lazy=")
    loaded = set(listed.split())
    assert "packetlab.endpoint.session" in loaded  # the listing is the endpoint's
    kept = sorted(
        name
        for name in loaded
        if name.startswith(("twisted.plugins.", "twisted.trial", "unittest", "twisted.cred"))
        or name.startswith(("twisted.conch", "twisted.internet.endpoints", "service_identity"))
        or name in ("argparse", "difflib", "pdb", "pprint", "idna", "twisted.internet._sslverify")
    )
    assert kept == []
    assert "twisted.internet.ssl" in lazy.split()
