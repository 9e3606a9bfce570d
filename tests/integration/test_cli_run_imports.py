"""What a fresh `pktlab run` imports before its first probe: the controller's public
names load their modules on first use, so a traceroute loads neither the exchanges nor
the trains (docs/performance.md, pktlab run, Session 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from packetlab import lazyimports


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter (what it imports is the point), which must exit 0."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )


def test_pktlab_run_loads_only_the_controller_parts_it_uses() -> None:
    code = (
        "import sys, packetlab.cli as c\n"
        "rc = c.main(['run', 'ping', '-c', '1', '-q', '127.0.0.1'])\n"
        "print(rc, *sorted(m for m in sys.modules if m.startswith('packetlab.controller.')))"
    )
    out = _python(code)
    rc, *names = out.stdout.splitlines()[-1].split()
    loaded = set(names)
    assert rc == "0", out
    assert "packetlab.controller.listener" in loaded  # what the run does need
    assert not loaded & {"packetlab.controller.exchange", "packetlab.controller.train"}, loaded


def test_pktlab_run_spawns_no_process() -> None:
    """`ctypes.util.find_library` runs `/sbin/ldconfig -p` in a subprocess (milliseconds to
    tens of them on a loaded machine): libpcap is loaded by its soname first, so a run on a
    system that has it spawns nothing (docs/performance.md, pktlab run, Session 10)."""
    code = (
        "import ctypes, sys\n"
        "try:\n"
        "    ctypes.CDLL('libpcap.so.0.8')\n"
        "except OSError:\n"
        "    print('skip'); sys.exit(0)\n"
        "spawned = []\n"
        "def hook(event, args):\n"
        "    if event in ('subprocess.Popen', 'os.posix_spawn', 'os.fork', 'os.exec'):\n"
        "        spawned.append((event, str(args)[:80]))\n"
        "sys.addaudithook(hook)\n"
        "import packetlab.cli as c\n"
        "rc = c.main(['run', 'traceroute', '-n', '-q', '1', '127.0.0.1'])\n"
        "print(rc, spawned)"
    )
    out = _python(code)
    last = out.stdout.splitlines()[-1]
    if last == "skip":
        pytest.skip("no libpcap.so.0.8 here")
    assert last == "0 []", out


_OTHERS = {f"packetlab.cli.run_{n}" for n in ("dns", "http", "throughput", "sendgap", "clocksync")}
_OTHERS |= {"packetlab.cli.run_alias", "packetlab.cli.run_command", "packetlab.measure.iperf3"}


def _loaded_by(run: str) -> tuple[str, set[str]]:
    code = (
        "import sys, packetlab.cli as c\n"
        f"{run}\n"
        "print(rc, *sorted(m for m in sys.modules if m.startswith('packetlab.')))"
    )
    out = _python(code)
    rc, *names = out.stdout.splitlines()[-1].split()
    return rc, set(names)


def test_traceroute_and_ping_load_no_other_measurement() -> None:
    """`pktlab run traceroute` builds and imports only its own parser: not the modules (nor
    the help texts) of dns, http, throughput... (docs/performance.md, pktlab run, Session 10)."""
    for argv in (["traceroute", "-n", "-q", "1"], ["ping", "-c", "1", "-q"]):
        rc, loaded = _loaded_by(f"rc = c.main(['run', *{argv!r}, '127.0.0.1'])")
        assert rc == "0", (argv, loaded)
        assert "packetlab.cli.run" in loaded
        assert not loaded & _OTHERS, (argv, loaded & _OTHERS)
        assert "packetlab.reflex.wire" not in loaded  # no reflex attached: not its codec


_TRACEROUTES = {
    "packetlab.cli.run_traceroute", "packetlab.cli.run_traceroute_checks",
    "packetlab.cli.run_traceroute_trace", "packetlab.cli.report_traceroute",
    "packetlab.measure.traceroute", "packetlab.measure.traceroute_probes",
    "packetlab.measure.traceroute_sequential", "packetlab.measure.traceroute_parallel",
    "packetlab.measure.mda", "packetlab.measure.records_traceroute",
}  # fmt: skip
_PINGS = {
    "packetlab.cli.run_ping", "packetlab.cli.run_ping_echo", "packetlab.cli.report_ping",
    "packetlab.measure.ping", "packetlab.measure.records_ping",
}  # fmt: skip


def test_ping_loads_none_of_traceroutes_code_nor_traceroute_pings() -> None:
    """`pktlab run ping` imported traceroute's measurement (`measure.traceroute`) and both
    reports, `run traceroute` ping's parser: each measurement's modules are its own
    (session 17); both load what they share (`run_measure`, `report`). Neither loads the
    records facade (`measure.records`, for users): traceroute loaded ping's records
    through it (session 18)."""
    for argv, mine, theirs in (
        (["ping", "-c", "1", "-q"], _PINGS, _TRACEROUTES),
        (["traceroute", "-n", "-q", "1"], _TRACEROUTES - {"packetlab.measure.mda"}, _PINGS),
    ):
        rc, loaded = _loaded_by(f"rc = c.main(['run', *{argv!r}, '127.0.0.1'])")
        assert rc == "0", (argv, loaded)
        assert mine <= loaded and "packetlab.cli.run_measure" in loaded, (argv, mine - loaded)
        assert not loaded & (theirs | {"packetlab.measure.records"}), (argv, loaded & theirs)


def test_an_in_process_run_loads_neither_publishing_nor_twisted_endpoints() -> None:
    """The in-process link listens on 127.0.0.1 without `serverFromString`, and a run
    publishes nothing: neither `packetlab.controller.publish` nor
    `twisted.internet.endpoints` (and the stdio, SNI and systemd helpers it imports) is
    loaded (docs/performance.md, pktlab run, Session 11)."""
    code = (
        "import sys, packetlab.cli as c\n"
        "rc = c.main(['run', 'traceroute', '-n', '-q', '1', '127.0.0.1'])\n"
        "print(rc, *(m in sys.modules for m in ('packetlab.controller.publish',"
        " 'twisted.internet.endpoints', 'twisted.internet.stdio')))"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split() == ["0", "False", "False", "False"], out


@pytest.mark.parametrize(
    "first",
    ["import packetlab.controller.publish", "from packetlab.controller import publish"],
)
def test_publish_is_the_function_whichever_is_imported_first(first: str) -> None:
    """`packetlab.controller.publish` is imported on first use: the function `publish`
    stays the package's attribute even when its module (of the same name) is imported
    first, in a fresh process."""
    code = (
        f"{first}\n"
        "import packetlab.controller as ctl\n"
        "from packetlab.controller import publish\n"
        "from packetlab.controller.publish import Publication\n"
        "print(callable(publish), ctl.publish is publish, ctl.Publication is Publication,"
        " publish.__module__)"
    )
    out = _python(code)
    assert out.stdout.split() == ["True", "True", "True", "packetlab.controller.publish"], out


def test_a_module_measurement_loads_its_own_module_only() -> None:
    for name in ("dns", "http", "alias"):
        _rc, loaded = _loaded_by(
            f"args = c.parse(['run', {name!r}, 'x'])\n"
            "import importlib; importlib.import_module(args._module); rc = 0"
        )
        mine = f"packetlab.cli.run_{name}"
        assert mine in loaded, loaded
        assert not loaded & (_OTHERS - {mine, "packetlab.cli.run_command"}), loaded & _OTHERS


def test_dns_over_udp_loads_no_tcp_stream() -> None:
    """A refused query over UDP (nothing listens on the discard port of loopback)."""
    rc, loaded = _loaded_by(
        "rc = c.main(['run', 'dns', '@127.0.0.1', '-p', '9', '+tries=1', '+time=1', 'a.test'])"
    )
    assert "packetlab.measure.dns" in loaded
    assert "packetlab.measure.stream" not in loaded, rc


def test_http_to_an_address_loads_no_dns_client() -> None:
    """`pktlab run http http://ADDRESS/` resolves nothing: neither the DNS client nor
    dnspython (nor reading the endpoint's resolv.conf through them), nor traceroute's and
    ping's reports and records (which `packetlab.cli.run` imported for every command), nor
    HTTP/2 (h2, hpack) for an http:// URL without --http2."""
    code = (
        "import sys, packetlab.cli as c\n"
        "rc = c.main(['run', 'http', '-s', '--max-time', '2', 'http://127.0.0.1:9/'])\n"
        "print(rc, *(m in sys.modules for m in ('dns', 'packetlab.measure.dns',"
        " 'packetlab.cli.report', 'packetlab.measure.records', 'h2', 'hpack',"
        " 'packetlab.measure.http2')))"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split()[1:] == ["False"] * 7, out


@pytest.mark.parametrize(
    "argv",
    [
        ["traceroute", "-n", "-q", "1", "127.0.0.1"],
        ["ping", "-c", "1", "-q", "127.0.0.1"],
    ],
)
def test_a_run_imports_its_reactor_and_endpoint_before_the_startup_freeze(
    argv: list[str],
) -> None:
    """`pktlab` imports what a traceroute or ping will import once it runs (the reactor,
    the reports, the measurement, the in-process endpoint) with its own modules, without
    cycle collections, and freezes them (`gc.freeze`): the collections of the run and the
    endpoint's heap trim at its end no longer traverse ~200 modules of objects
    (docs/performance.md, pktlab run, Session 11)."""
    code = (
        "import gc, sys\n"
        "box = {}\n"
        "freeze = gc.freeze\n"
        "def record():\n"
        "    box['at'] = set(sys.modules)\n"
        "    freeze()\n"
        "gc.freeze = record\n"
        "import packetlab.cli as c\n"
        f"sys.argv = ['pktlab', 'run', *{argv!r}]\n"
        "rc = c.main()\n"
        "print(rc, *sorted(set(sys.modules) - box['at']))"
    )
    out = _python(code)
    rc, *late = out.stdout.splitlines()[-1].split()
    assert rc == "0", out
    ahead = {
        "twisted.internet.reactor",
        "twisted.internet.defer",
        "OpenSSL.SSL",
        "packetlab.cli.report",
        "packetlab.measure.traceroute",
        "packetlab.endpoint.tap",
        "packetlab.endpoint.service",
        "packetlab.controller.session",
    }
    assert not ahead & set(late), late
    assert len(late) < 40, late  # what the endpoint's start imports still comes later


def test_a_second_run_compiles_no_generated_class_method(tmp_path: Path) -> None:
    """The methods dataclasses and attrs generate (~36 ms of CPU of a traceroute's start)
    are compiled by the first run and kept (`packetlab.classcode`); a second run finds them
    all (docs/performance.md, Session 18: start-up). The same hash seed for both: an attrs
    `__hash__` is kept per length and sign of its process's salt, so one of a length not
    seen yet is compiled once more (session 22)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONHASHSEED": "1"}
    code = (
        "import sys\n"
        "sys.argv = ['pktlab', 'run', 'traceroute', '-n', '-q', '1', '127.0.0.1']\n"
        "import packetlab.cli as c\n"
        "rc = c.main()\n"
        "from packetlab import classcode\n"
        "print(rc, len(classcode._new), classcode.table_path())"
    )
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 0, out
        runs.append(out.stdout.splitlines()[-1].split())
    (rc1, compiled1, path), (rc2, compiled2, _) = runs
    assert rc1 == rc2 == "0"
    assert int(compiled1) > 100 and path.startswith(str(tmp_path)), runs
    assert compiled2 == "0", runs


# Executed by a traceroute or ping before session 19, never used by either: http.cookiejar's
# chain (from twisted.python.compat), twisted.internet.ssl's (service_identity, idna).
_NOT_EXECUTED = {
    "http.client", "urllib.request", "email.parser", "email.feedparser", "email.message",
    "twisted.internet._sslverify", "service_identity", "idna",
}  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["traceroute", "-n", "-q", "1", "127.0.0.1"],
        ["ping", "-c", "1", "-q", "127.0.0.1"],
    ],
)
def test_a_run_leaves_unused_third_party_imports_unloaded(argv: list[str]) -> None:
    """`pktlab run` loads the modules of `packetlab.lazyimports` on first use: a
    traceroute or ping uses none of them, so none runs, nor what they import (~25 ms of
    CPU: docs/performance.md, Session 19: start-up). Each listed module is pinned: one
    that a Twisted, cryptography or Python upgrade starts using at import would show."""
    code = (
        "import sys\n"
        f"sys.argv = ['pktlab', 'run', *{argv!r}]\n"
        "import packetlab.cli as c\n"
        "rc = c.main()\n"
        "from packetlab import lazyimports as z\n"
        "print(rc, *sorted(n for n in z.LAZY if z.is_lazy(n)), '|',"
        " *sorted(n for n in sys.modules if not z.is_lazy(n)))"
    )
    out = _python(code)
    (rc, *lazy), _, executed = (p.split() for p in out.stdout.splitlines()[-1].partition(" | "))
    assert rc == "0", out
    # Imported and left unloaded: all but those only run http's and run dns's code imports,
    # and asyncio's that only its own code (not run: `lazyimports.PARTIAL`) imports.
    asyncio_own = {"ssl", "asyncio.sslproto", "asyncio.staggered", "asyncio.trsock"}
    only_others = {"urllib.request", "email.parser", "idna"} | asyncio_own
    assert set(lazy) == lazyimports.LAZY - only_others, lazy
    assert not (_NOT_EXECUTED | lazyimports.LAZY) & set(executed), set(executed) & _NOT_EXECUTED
    # asyncio: the three names Twisted imports, and the modules that define them.
    assert {n for n in executed if n.startswith("asyncio")} == {
        "asyncio", "asyncio.base_futures", "asyncio.base_tasks", "asyncio.coroutines",
        "asyncio.events", "asyncio.exceptions", "asyncio.futures",
    }, executed  # fmt: skip


def test_run_http_loads_the_cookie_jar_it_uses_and_not_what_the_jar_imports() -> None:
    """`run http` reads dates with `http.cookiejar` (`measure/cookies.py`): loaded; the
    modules the jar imports for requests of its own (`urllib.request`, `email.parser`)
    and Twisted's TLS module (ours is pyOpenSSL's) stay unloaded."""
    code = (
        "import sys\n"
        "sys.argv = ['pktlab', 'run', 'http', '-s', '--max-time', '2', 'http://127.0.0.1:9/']\n"
        "import packetlab.cli as c\n"
        "rc = c.main()\n"
        "from packetlab import lazyimports as z\n"
        "print(rc, *(z.is_lazy(n) for n in ('http.cookiejar', 'urllib.request',"
        " 'email.parser', 'twisted.internet.ssl')), 'http.cookiejar' in sys.modules,"
        " 'service_identity' in sys.modules)"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split()[1:] == [
        "False", "True", "True", "True", "True", "False"
    ], out  # fmt: skip


def test_main_called_by_a_program_imports_eagerly() -> None:
    """Lazy imports are the `pktlab` process's own: a program that calls `main` (tests,
    a script) keeps its imports as they were."""
    code = (
        "import sys, packetlab.cli as c\n"
        "rc = c.main(['run', 'ping', '-c', '1', '-q', '127.0.0.1'])\n"
        "from packetlab import lazyimports as z\n"
        "print(rc, any(type(f).__name__ == '_LazyFinder' for f in sys.meta_path),"
        " z.is_lazy('http.cookiejar'), 'http.client' in sys.modules)"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split() == ["0", "False", "False", "True"], out


def test_a_traceback_loads_its_lazy_modules_and_shows_the_source(tmp_path: Path) -> None:
    """`traceback` and `linecache` import `textwrap` and `tokenize` lazily in `pktlab run`:
    an error's traceback (`-v`, an internal error) loads them and prints the source."""
    script = tmp_path / "fails.py"
    script.write_text(
        "from packetlab import lazyimports as z\n"
        "z.install()\n"
        "import traceback\n"
        "before = [z.is_lazy(n) for n in ('textwrap', 'tokenize')]\n"
        "def f():\n"
        "    return {}['missing key']\n"
        "try:\n"
        "    f()\n"
        "except KeyError:\n"
        "    text = traceback.format_exc()\n"
        "print(before, [z.is_lazy(n) for n in ('textwrap', 'tokenize')])\n"
        "print(text)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.startswith("[True, True] [False, False]\n"), out
    assert "    return {}['missing key']\n" in out.stdout and "KeyError" in out.stdout, out


def test_a_run_compiles_neither_unused_patterns_nor_imports_shutils_archivers() -> None:
    """`pktlab run` turns lazy imports on before it parses its command line (argparse's
    help formatter imports shutil, which imports bz2, lzma and fnmatch), and the regular
    expressions of `lazyimports.LAZY_PATTERNS` compile at first use: a ping uses neither
    (docs/performance.md, "Start-up (session 22, start22)")."""
    code = (
        "import re, sys\n"
        "sys.argv = ['pktlab', 'run', 'ping', '-c', '1', '-q', '127.0.0.1']\n"
        "import packetlab.cli as c\n"
        "rc = c.main()\n"
        "from packetlab import lazyimports as z\n"
        "name = sys.modules['cryptography.x509.name']._RFC4514NameParser\n"
        "print(rc, *(z.is_lazy(n) for n in ('bz2', 'lzma', 'fnmatch')),"
        " type(name._STRING_RE).__name__, re.compile is z._compile_later, z.is_partial('asyncio'))"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split() == [
        "0", "True", "True", "True", "LazyPattern", "False", "True"
    ], out  # fmt: skip


def test_asyncio_runs_its_own_code_when_a_program_of_the_run_asks_for_more() -> None:
    """asyncio starts with the three names Twisted imports (`lazyimports.PARTIAL`); the
    first other name runs its own code in the same module: an event loop then works, and
    its names are asyncio's own."""
    code = (
        "import sys\n"
        "sys.argv = ['pktlab', 'run', 'ping', '-c', '1', '-q', '127.0.0.1']\n"
        "import packetlab.cli as c\n"
        "rc = c.main()\n"
        "from packetlab import lazyimports as z\n"
        "import asyncio\n"
        "before = z.is_partial('asyncio')\n"
        "async def three():\n"
        "    await asyncio.sleep(0)\n"
        "    return 3\n"
        "print(rc, before, asyncio.run(three()), z.is_partial('asyncio'),"
        " asyncio.Future is sys.modules['asyncio.futures'].Future, len(asyncio.__all__) > 50)"
    )
    out = _python(code)
    assert out.stdout.splitlines()[-1].split() == ["0", "True", "3", "False", "True", "True"], out
