"""Which mlet exit 2 stops `pktlab xpmgr` (session 32, xpmgrexit.py): only the first mlet
to end, having written nothing on its fd 0 (its usage error: its arguments would fail at
every endpoint). One that spoke to its endpoint and then exits 2 for that endpoint's reason
is an ordinary failure. Real processes: the manager, Python mlets, a `twistd pktendpoint`
reconnecting at once, so that a manager that does not stop keeps getting endpoints.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pxworld import EndpointProc, XpmgrProc, built_mlets
from tls_world import home_fixture

from packetlab.controller.xpmgrexit import EXIT_ALL_FAILED, EXIT_USAGE

home = home_fixture(root=True)

STOP = "(a usage error) at the first endpoint"

# argparse is fine; the endpoint then refuses the connection (nothing listens on port 1)
REFUSED = """\
import argparse, sys
from packetlab.controller import ControllerError, tcp_exchange
p = argparse.ArgumentParser(prog='exp')
p.add_argument('port', type=int)
async def mlet(session, args):
    a = p.parse_args(args)
    try:
        await tcp_exchange(session, '127.0.0.1', a.port, b'hello')
    except ControllerError as e:
        print(f'exp: the endpoint could not connect: {e}', file=sys.stderr)
        sys.exit(2)
"""

# argparse refuses its arguments before the mlet asks its endpoint anything
USAGE = """\
import argparse
p = argparse.ArgumentParser(prog='exp')
p.add_argument('port', type=int)
async def mlet(session, args):
    p.parse_args(args)
"""


def run(tmp: Path, home: Path, procs: list[object], source: str, arg: str) -> XpmgrProc:
    exp = tmp / "exp.py"
    exp.write_text(source)
    xp = XpmgrProc(tmp, home / "xpmgr.conf", [str(exp), arg], "-n", "3")
    procs.append(xp)
    procs.append(EndpointProc(tmp, home, f"127.0.0.1:{xp.port()}"))
    return xp


def test_an_mlet_that_exits_2_after_speaking_to_its_endpoint_does_not_stop_the_manager(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """Before session 32 the first such mlet stopped the manager (`-n 3`: one result line,
    exit 2, `its arguments would fail at every endpoint`): its endpoint's refusal, not its
    arguments. Now each of the three endpoints runs it and the manager exits 3."""
    xp = run(tmp_path, home, procs, REFUSED, "1")
    assert xp.wait_exit(120) == EXIT_ALL_FAILED, xp.text()[-3000:]
    text = xp.text()
    assert STOP not in text, text[-3000:]
    results = xp.result_lines()
    assert [(r["status"], r["exit_code"]) for r in results] == [("failed", 2)] * 3, results
    assert all(r["error"] == "the mlet exited with status 2" for r in results)
    assert text.count("exp: the endpoint could not connect") == 3, text[-3000:]
    assert "xpmgr: no endpoint succeeded (3 failed): exit status 3" in text


def test_a_python_mlets_argparse_error_at_the_first_endpoint_still_stops_it(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """The other way: the mlet's argparse refuses `x` before it sends anything (pymlet
    writes nothing on fd 0 of its own), so the manager stops at the first, exit 2."""
    xp = run(tmp_path, home, procs, USAGE, "x")
    assert xp.wait_exit(120) == EXIT_USAGE, xp.text()[-3000:]
    text = xp.text()
    stop = [x for x in text.splitlines() if STOP in x]
    assert stop == [
        "xpmgr: the mlet exited with status 2 (a usage error) at the first endpoint: exp: "
        "error: argument port: invalid int value: 'x'; its arguments would fail at every "
        "endpoint: not starting it on more (exit status 2)"
    ], text[-3000:]
    # The endpoint reconnects as soon as its session closes, which can be before the
    # manager has reaped the first mlet: that second endpoint is then turned away, or its
    # mlet was already started and fails the same way. Never a third: the manager stopped.
    first, *rest = xp.result_lines()
    assert first["exit_code"] == 2, first
    assert len(rest) <= 1, rest
    assert all(
        "not started: the mlet's arguments were refused" in r["error"] or r["exit_code"] == 2
        for r in rest
    ), rest


@pytest.fixture(scope="module")
def example_mlets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_mlets(tmp_path_factory.mktemp("mlets"))


@pytest.mark.parametrize(
    ("mlet", "args", "said"),
    [
        ("test_http_get", ["127.0.0.1:9", "/" + "x" * 1100],
         "test_http_get: request too long (PATH of 1101 characters)"),
        ("test_dns", ["a" * 70 + ".test", "127.0.0.1:9"],
         f"test_dns: {'a' * 70}.test is not a domain name"),
    ],
)  # fmt: skip
def test_the_example_c_mlets_refuse_their_arguments_before_their_first_message(
    tmp_path: Path, home: Path, procs: list[object], example_mlets: Path,
    mlet: str, args: list[str], said: str,
) -> None:  # fmt: skip
    """test_http_get's over-long PATH and test_dns's over-long label were found only after
    their nopen (test_http_get's after its connect: toward a closed port it failed with
    `connect to 127.0.0.1 failed` and never said the PATH), exit 2 after a message: with
    the rule above the manager ran them at every endpoint (`-n 3`: three failed results,
    exit 3). They check first now: stopped at the first, exit 2."""
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(example_mlets / mlet), *args], "-n", "3")
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}"))
    assert xp.wait_exit(120) == EXIT_USAGE, xp.text()[-3000:]
    stop = [x for x in xp.text().splitlines() if STOP in x]
    assert len(stop) == 1 and f"at the first endpoint: {said};" in stop[0], xp.text()[-3000:]
    assert [r["exit_code"] for r in xp.result_lines()] == [2]
