"""`pktlab xpmgr`'s exit status from its mlets' outcomes (session 31; xpmgrexit.py).

Real processes: the manager, shell mlets and `twistd pktendpoint`s over TLS with a
`pktlab init` home, reconnecting at once (`--reconnect-delay 0.1`), so that a manager
that does not stop keeps getting endpoints.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from pxworld import ENV, EndpointProc, XpmgrProc
from tls_world import home_fixture

from packetlab.controller.xpmgrexit import EXIT_ALL_FAILED, EXIT_USAGE

home = home_fixture(root=True)


def shell_mlet(tmp: Path, body: str) -> Path:
    mlet = tmp / "mlet.sh"
    mlet.write_text("#!/bin/sh\n" + body)
    mlet.chmod(0o755)
    return mlet


def endpoints(tmp: Path, home: Path, port: int, n: int) -> list[EndpointProc]:
    return [EndpointProc(tmp, home, f"127.0.0.1:{port}") for _ in range(n)]


def test_a_usage_error_at_the_first_endpoint_stops_the_manager_with_status_2(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """The first mlet exits 2 (its usage error, as the example C mlets' and argparse's):
    every endpoint would fail alike. Before, each endpoint ran it (`-n 8`: eight times the
    same line on stderr, eight failed results) and the manager exited 0."""
    mlet = shell_mlet(tmp_path, "echo \"mlet.sh: bad port ''\" >&2\nexit 2\n")
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "8")
    procs.append(xp)
    procs.extend(endpoints(tmp_path, home, xp.port(), 2))
    assert xp.wait_exit(90) == EXIT_USAGE, xp.text()[-3000:]
    text = xp.text()
    stop = [x for x in text.splitlines() if "(a usage error) at the first endpoint" in x]
    assert stop == [
        "xpmgr: the mlet exited with status 2 (a usage error) at the first endpoint: mlet.sh: "
        "bad port ''; its arguments would fail at every endpoint: not starting it on more "
        "(exit status 2)"
    ], text[-3000:]
    results = xp.result_lines()
    # the other endpoint's mlet may have started beside the first: no more than that
    assert 1 <= len(results) <= 2, results
    assert all(r["status"] == "failed" for r in results)
    # the other: its own mlet's status 2, or, still in its setup then, no mlet
    assert all(
        r.get("exit_code") == 2 or "the mlet's arguments were refused" in r["error"]
        for r in results
    ), results
    assert sum(r.get("exit_code") == 2 for r in results) >= 1
    assert text.count("mlet.sh: bad port") <= 3  # its line(s), and the stop line once
    last = [x for x in text.splitlines() if x.startswith("xpmgr: endpoints seen")][-1]
    assert last.endswith(f"running 0, done 0, failed {len(results)}"), last


def test_every_endpoint_failed_is_exit_status_3(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """Every mlet failed (status 1, not a usage error): before, exit 0."""
    mlet = shell_mlet(tmp_path, "echo 'mlet.sh: no answer' >&2\nexit 1\n")
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "2")
    procs.append(xp)
    procs.extend(endpoints(tmp_path, home, xp.port(), 2))
    assert xp.wait_exit(90) == EXIT_ALL_FAILED, xp.text()[-3000:]
    text = xp.text()
    assert "xpmgr: no endpoint succeeded (2 failed): exit status 3" in text, text[-3000:]
    assert [r["status"] for r in xp.result_lines()] == ["failed", "failed"]


def test_one_success_is_exit_status_0(tmp_path: Path, home: Path, procs: list[object]) -> None:
    """The first mlet fails (status 1), the second succeeds: the experiment ran, exit 0."""
    flag = tmp_path / "once"
    mlet = shell_mlet(tmp_path, f"[ -e {flag} ] && exit 0\ntouch {flag}\nexit 1\n")
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", "2")
    procs.append(xp)
    procs.extend(endpoints(tmp_path, home, xp.port(), 1))
    assert xp.wait_exit(90) == 0, xp.text()[-3000:]
    assert sorted(r["status"] for r in xp.result_lines()) == ["done", "failed"]


def test_a_python_mlets_check_refuses_bad_arguments_before_listening(
    tmp_path: Path, home: Path
) -> None:
    """docs/campaign.md's mlet with an empty port (camp30): the manager listened, each
    endpoint's mlet failed with `RunError: --server 127.0.0.1:: bad port ''` and it exited
    0. Now the module's `check(args)` runs before anything listens: one line, exit 2."""
    argv = [sys.executable, "-m", "packetlab", "xpmgr", "-c", str(home / "xpmgr.conf"),
            "-a", "127.0.0.1:0", "--results", str(tmp_path / "r.jsonl"),
            "packetlab.cli.campaign_mlet", "dns", "a.test", "--server", "127.0.0.1:"]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=ENV,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "pktlab xpmgr: the mlet's check(args) refused them: packetlab.cli.campaign_mlet dns: "
        "--server 127.0.0.1:: bad port ''\n"
    )
    assert "listening" not in done.stdout + done.stderr
    assert not (tmp_path / "r.jsonl").exists()
    assert time.monotonic() - t0 < 60


def test_the_tutorials_python_mlet_refuses_a_bad_url_before_listening(
    tmp_path: Path, home: Path
) -> None:
    """docs/xpmgr.md tutorial 1, step 3b, with a URL mistyped: the manager listened and
    each endpoint's mlet failed (`only http:// URLs are supported`, status 1), the
    manager exiting 0 (3 since this session). examples/http_get.py has a `check` now."""
    argv = [sys.executable, "-m", "packetlab", "xpmgr", "-c", str(home / "xpmgr.conf"),
            "-a", "127.0.0.1:0", "--results", str(tmp_path / "r.jsonl"),
            str(REPO / "examples/http_get.py"), "https://127.0.0.1:8000/"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=ENV,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "pktlab xpmgr: the mlet's check(args) refused them: only http:// URLs are supported, "
        "got 'https://127.0.0.1:8000/'\n"
    )


def test_an_argparse_error_in_a_python_mlet_is_its_usage_status(tmp_path: Path) -> None:
    """pymlet, as the manager runs it (EPADDR, fd 0 a socket): argparse's `error` in the
    mlet exits 2, the status the manager stops at (so it did before session 31: a guard;
    packetlab.cli.campaign_mlet turned it into a ValueError, status 1)."""
    import socket

    exp = tmp_path / "exp.py"
    exp.write_text(
        "import argparse\n"
        "p = argparse.ArgumentParser(prog='exp')\n"
        "p.add_argument('n', type=int)\n"
        "async def mlet(session, args):\n"
        "    p.parse_args(args)\n"
    )
    ours, theirs = socket.socketpair()
    with ours, theirs:
        done = subprocess.run(
            [sys.executable, "-m", "packetlab.controller.pymlet", str(exp), "x"],
            stdin=theirs.fileno(), capture_output=True, text=True, timeout=120,
            env=dict(ENV, EPADDR="127.0.0.1"), cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.splitlines()[-1] == "exp: error: argument n: invalid int value: 'x'"
