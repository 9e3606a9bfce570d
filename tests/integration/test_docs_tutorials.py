"""Walk-throughs of the docs run as a newcomer types them (session 32, fresh32): the
blocks are read from the pages, not copied here, and run in a network namespace of their
own (only `lo`), with a fresh `$HOME`, so that the pages' fixed ports (20556-20558, 8000)
are the test's alone. test_docs_code.py runs the complete programs that need nothing
beside them and test_docs_shell.py the commands that end at once; these need daemons.

* controller.md "A complete experiment against a remote endpoint": the program, then the
  page's web server and plaintext endpoint; its output as the page shows it.
* tutorial-publish.md, steps 1-5: `pktlab init`, the broker, the subscribed endpoint, the
  step 4 program (its line as the page shows it), and `pktlab broker status`.
* xpmgr.md tutorial 1: `pktlab init`, the C mlet and the page to fetch, the manager with
  the C mlet and then with the Python one (3b), the endpoint; the output as shown.
* traceroute.md "Library": the program and its raw-socket endpoint in the `ep` namespace
  of a `pktlab testbed up` chain, as the page says."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lone_loopback import lone_loopback

from packetlab.testbed import Testbed, chain

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.root


def section(page: str, heading: str) -> str:
    """The text of `page` from the heading line `heading` to the next heading of its level."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end > 0 else len(text)]


def blocks(text: str, lang: str) -> list[str]:
    """The fenced blocks of `lang` ("" for a bare fence) in `text`, in order."""
    found: list[tuple[str, list[str]]] = []
    inside, indent = False, 0
    for line in text.splitlines():
        fence = line.lstrip()
        if fence.startswith("```"):
            if not inside:  # (a block in a list item is indented with it)
                found.append((fence[3:].strip(), []))
                indent = len(line) - len(fence)
            inside = not inside
        elif inside:
            found[-1][1].append(line[indent:])
    return ["\n".join(body) + "\n" for kind, body in found if kind == lang]


def commands(block: str) -> list[str]:
    """The command lines of an sh block (continuations joined), comments dropped."""
    lines = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.join(words) for words in lines if words]


def matches(shown: str, got: str) -> bool:
    """`got` is `shown` but for the numbers (times, ports, offsets)."""
    parts = re.split(r"-?\d+", shown.strip())
    return re.fullmatch(r"-?\d+".join(map(re.escape, parts)), got.strip()) is not None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    env.pop("PKTLAB_HOME", None)
    with lone_loopback("f32tut") as netns:
        yield netns, env, tmp_path


class Shell:
    """Commands in the namespace; the ones left running are stopped by their pid."""

    def __init__(self, netns: str, env: dict[str, str], cwd: Path) -> None:
        self.netns, self.env, self.cwd = netns, env, cwd
        self.running: list[subprocess.Popen[bytes]] = []

    def argv(self, line: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "sh", "-c", f"exec {line}"]

    def run(self, line: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(line), env=self.env, cwd=self.cwd, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def start(self, line: str) -> Path:
        line = line.removesuffix(" '&'")  # `CMD &` in the page: started in the background
        log = self.cwd / f"bg{len(self.running)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.argv(line), env=self.env, cwd=self.cwd, stdout=out, stderr=out
            )
        self.running.append(proc)
        return log

    def stop(self) -> None:
        for proc in self.running:
            proc.terminate()
        for proc in self.running:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in {log}:\n{log.read_text()}"
        time.sleep(0.2)


def test_controller_remote_experiment_runs_as_written(
    world: tuple[str, dict[str, str], Path],
) -> None:
    text = section("controller.md", "## A complete experiment against a remote endpoint")
    program = blocks(text, "python")[0]
    shell = Shell(*world)
    (shell.cwd / "remote.py").write_text(program)
    try:
        for line in commands(blocks(text, "sh")[0]):  # the web server, the endpoint
            shell.start(line)
        got = shell.run(f"{sys.executable} remote.py")
    finally:
        shell.stop()
    assert got.returncode == 0, got.stderr  # before session 32: ConnectFailed, 192.0.2.80
    shown = blocks(text, "")[0]
    assert matches(shown, got.stdout), (shown, got.stdout)


def test_tutorial_publish_runs_as_written(world: tuple[str, dict[str, str], Path]) -> None:
    text = (REPO / "docs" / "tutorial-publish.md").read_text(encoding="utf-8")
    sh = [commands(b) for b in blocks(text, "sh")]
    (init,), (broker,), (endpoint,), (status,) = sh
    shell = Shell(*world)
    (shell.cwd / "publish.py").write_text(blocks(text, "python")[0])
    try:
        assert shell.run(init).returncode == 0
        wait_for(shell.start(broker), "status page on")
        wait_for(shell.start(endpoint), "Broker subscription finished: 127.0.0.1:20557")
        got = shell.run(f"{sys.executable} publish.py")
        after = shell.run(status)
    finally:
        shell.stop()
    assert got.returncode == 0, got.stderr
    assert "hostid='lab1')" in got.stdout  # before session 32: 'pktendpt' (no --host-id)
    assert matches(blocks(text, "")[0], got.stdout), got.stdout
    assert after.returncode == 0, after.stderr
    assert re.search(r"^[0-9a-f]{64}\s+private\s+1\s+0$", after.stdout, re.M), after.stdout
    assert "\n0 live publication(s)\n" in after.stdout


def test_traceroute_library_example_runs_in_a_testbed(tmp_path: Path) -> None:
    text = section("traceroute.md", "## Library")
    (tmp_path / "tr.py").write_text(blocks(text, "python")[0])
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    with Testbed(chain(2), name=f"f32t{os.getpid() % 10000}") as tb:
        shell = Shell(tb.netns_name("ep"), env, tmp_path)
        try:
            shell.start(commands(blocks(text, "sh")[0])[0])  # the raw-socket endpoint
            got = shell.run(f"{sys.executable} tr.py")
        finally:
            shell.stop()
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith("traceroute to 10.77.3.2 (10.77.3.2), 16 hops max"), lines
    assert [line.split()[1] for line in lines[1:4]] == ["10.77.1.2", "10.77.2.2", "10.77.3.2"]
    assert lines[4].strip().startswith("RttStats(min_us="), lines


def test_what_the_walk_throughs_leave_in_the_checkout_is_ignored_by_git() -> None:
    """xpmgr.md tutorial 1 (`./http_get`, `xpmgr-results.jsonl`), monitors.md's tutorial
    (`my_monitor.*`) and a daemonised twistd (`pktendpoint.log`, `.pid`), followed in the
    checkout, made `git status` list them (and a stray `ep2.log` was once committed)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["http_get", "xpmgr-results.jsonl", "my_monitor.c", "my_monitor.wasm",
             "pktendpoint.log", "pktendpoint.pid", "ep2.log"]  # fmt: skip
    got = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert got.stdout.split() == names
    kept = subprocess.run(["git", "check-ignore", "--no-index", "examples/x.log", "docs/a.pid"],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert kept.stdout == ""  # only the checkout's top level


def test_every_page_that_says_what_the_quickstart_runs_names_its_script() -> None:
    """controller.md said `scripts/quickstart.sh` ran the HTTP and DNS examples, and
    security.md that it used `run_with_local_endpoint`; it runs `examples/system_demo.py`
    (real daemons and a broker). Each prose paragraph (README, docs/, but usability.md's
    history) naming the script names the example it runs."""
    script = (REPO / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    (demo,) = re.findall(r"^exec .*?(examples/\w+\.py)", script, re.M)
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in (p for p in pages if p.name != "usability.md"):
        prose = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for para in prose.split("\n\n"):
            if "quickstart.sh" in para:
                assert demo in para, (page.name, para)


def test_xpmgr_tutorial_1_runs_as_written(world: tuple[str, dict[str, str], Path]) -> None:
    text = section("xpmgr.md", "## Tutorial 1: a first local experiment")
    (init,), (build, web), (c_mlet,), (python_mlet,), (endpoint,) = [
        commands(b) for b in blocks(text, "sh")
    ]
    shell = Shell(*world)
    (shell.cwd / "examples").symlink_to(REPO / "examples")  # the page runs in the checkout
    try:
        assert shell.run(init).returncode == 0
        assert shell.run(build).returncode == 0, build
        shell.start(web)
        manager = shell.start(c_mlet)
        xpmgr = shell.running[-1]
        wait_for(manager, "listening on 127.0.0.1:20556")
        shell.start(endpoint)
        wait_for(manager, "done 1, failed 0")
        xpmgr.send_signal(signal.SIGINT)  # "stop it with Ctrl-C"
        wait_for(manager, "(TCP Port 20556 Closed)")
        python = shell.run(python_mlet.replace("pktlab xpmgr ", "pktlab xpmgr -n 1 ", 1))
    finally:
        shell.stop()
    shown = blocks(text, "")[0]
    log = manager.read_text()  # the mlet's lines among the manager's log and counts
    out = [x for x in log.splitlines() if not x.startswith(("20", "xpmgr:"))]
    assert matches(shown, "\n".join(out[:2])), (shown, log)
    results = (shell.cwd / "xpmgr-results.jsonl").read_text().splitlines()
    assert json.loads(results[0])["status"] == "done"
    assert matches(shown, json.loads(results[0])["output"])
    assert python.returncode == 0, python.stderr
    assert "status      HTTP/1.0 200 OK" in python.stdout
