"""`pktlab run traceroute|ping` end to end (root): the in-process endpoint inside the
testbed's ep namespace and on this host's loopback, `--listen` with an external twistd
pktendpoint, and the error without raw-socket rights.

The command is run as `python -m packetlab.cli.run` (the same module `pktlab run` loads).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import readline
from testkit.poll import poll_until, tcp_listening

from packetlab.controller.local import twistd_command
from packetlab.measure import native
from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


RUN = [sys.executable, "-m", "packetlab.cli.run"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets, eBPF, network namespaces")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plp{os.getpid() % 100000}-")
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "pktlab-home"))  # not this host's


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    return e


def pktlab_run(
    *args: str, netns: str | None = None, timeout: float = 60, wrap: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = [*wrap, *RUN, *args]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO, check=False
    )


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    return testbed_factory(hops=2)


@pytest.mark.parametrize("family", [4, 6])
def test_traceroute_json_on_the_testbed(tb: Testbed, family: int) -> None:
    dst = str(tb.addr("tg", family))
    got = pktlab_run(
        "traceroute", "--json", "-q", "1", "--max-ttl", "8", dst, netns=tb.netns_name("ep")
    )
    assert got.returncode == 0, got.stderr
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    hops = [x for x in lines if x["type"] == "hop"]
    (summary,) = [x for x in lines if x["type"] == "summary"]
    assert (summary["stop_reason"], summary["reached"], summary["hop_count"]) == (
        "COMPLETED", True, 3,
    )  # fmt: skip
    ref = native.run_traceroute(dst, netns=tb.netns_name("ep"), max_ttl=8)
    assert [(h["ttl"], h["addr"]) for h in hops] == ref.path()
    assert all(h["rtt_us"] > 0 for h in hops)
    assert {(h["dst"], h["src"], h["tool"]) for h in hops} == {
        (dst, str(tb.addr("ep", family)), "packetlab")
    }


def test_paced_traceroute_on_the_testbed(tb: Testbed) -> None:
    dst = str(tb.addr("tg", 6))
    got = pktlab_run(
        "traceroute", "--json", "-q", "1", "--pace", "0.001", dst, netns=tb.netns_name("ep")
    )
    assert got.returncode == 0, got.stderr
    hops = [json.loads(line) for line in got.stdout.splitlines()][:-1]  # then the summary
    assert [h["addr"] for h in hops] == ["fd00:77:1::2", "fd00:77:2::2", dst]


def test_traceroute_text_on_the_testbed(tb: Testbed) -> None:
    dst = str(tb.addr("tg"))
    got = pktlab_run("traceroute", "-q", "1", "-f", "2", dst, netns=tb.netns_name("ep"))
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == f"traceroute to {dst} ({dst}), 30 hops max, 60 byte packets"
    assert [line.split()[:2] for line in lines[1:]] == [["2", "10.77.2.2"], ["3", dst]]
    assert all(line.endswith(" ms") for line in lines[1:])


@pytest.mark.parametrize("family", [4, 6])
def test_ping_on_the_testbed(tb: Testbed, family: int) -> None:
    dst = str(tb.addr("tg", family))
    got = pktlab_run("ping", "-c", "3", "-i", "0.05", dst, netns=tb.netns_name("ep"))
    assert got.returncode == 0, got.stderr
    assert "3 packets transmitted, 3 received, 0% packet loss" in got.stdout
    assert got.stdout.count(f"bytes from {dst}: icmp_seq=") == 3
    assert "ttl=62" in got.stdout


def test_ping_without_answer_exits_1(tb: Testbed) -> None:
    got = pktlab_run(
        "ping", "--json", "-c", "2", "-i", "0.05", "--wait", "0.3", "10.77.3.99",
        netns=tb.netns_name("ep"),
    )  # fmt: skip
    assert got.returncode == 1, got.stderr
    lines = [json.loads(x) for x in got.stdout.splitlines()]
    assert [(x["seq"], x["addr"]) for x in lines[:-1]] == [(1, None), (2, None)]
    assert (lines[-1]["type"], lines[-1]["sent"], lines[-1]["received"]) == ("summary", 2, 0)


def test_ping_loopback() -> None:
    got = pktlab_run("ping", "-c", "2", "-i", "0.05", "127.0.0.1")
    assert got.returncode == 0, got.stderr
    assert "2 packets transmitted, 2 received" in got.stdout


def listen_and_endpoint(
    tmp_path: Path,
    run_argv: list[str],
    endpoint_argv: list[str],
    after: Sequence[str] = ("127.0.0.1",),
    netns: str | None = None,
) -> tuple[int, str, str]:
    """`run_argv` + `--listen 127.0.0.1:PORT` + `after` with a `twistd -n pktendpoint
    ENDPOINT_ARGV... 127.0.0.1:PORT` connecting to it, both in `netns` when given: the
    run's status, stdout, stderr."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    in_ns = ["ip", "netns", "exec", netns] if netns else []
    run = subprocess.Popen(
        [*in_ns, *run_argv, "--listen", f"127.0.0.1:{port}", *after],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
    )  # fmt: skip
    argv = [*in_ns, *twistd_command(), "-n", "--pidfile=", f"--logfile={tmp_path / 'ep.log'}"]
    argv += ["pktendpoint", *endpoint_argv, f"127.0.0.1:{port}"]
    # the run's own /proc tables: its namespace's listeners (`ip netns exec` execs the run)
    tables = (f"/proc/{run.pid}/net/tcp", f"/proc/{run.pid}/net/tcp6")
    try:  # the endpoint would retry, but a second later
        poll_until(lambda: tcp_listening(port, tables) or run.poll() is not None, timeout=30,
                   what=f"a listener on TCP {port}")  # fmt: skip
        ep = subprocess.Popen(argv, env=env(), cwd=tmp_path)
    except BaseException:
        run.kill()
        run.wait()
        raise
    try:
        out, err = run.communicate(timeout=40)
    finally:
        ep.terminate()
        ep.wait(10)
        if run.poll() is None:
            run.kill()
            run.wait()
    return run.returncode, out, err


def test_listen_with_an_external_endpoint(tmp_path: Path) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("TransprotoSup raw,tcp,udp\nVMemLocalAddrStrIPv4 127.0.0.1/8\n")
    ping = [*RUN, "ping", "--json", "-c", "2", "-i", "0.05", "--timeout", "30"]
    status, out, err = listen_and_endpoint(
        tmp_path, [*ping, "--insecure-plaintext"], ["-c", str(conf), "--insecure-plaintext"]
    )
    assert status == 0, err
    assert "waiting for an endpoint on 127.0.0.1:" in err
    replies = [json.loads(x) for x in out.splitlines()][:-1]
    assert [(r["seq"], r["addr"]) for r in replies] == [(1, "127.0.0.1"), (2, "127.0.0.1")]


def test_listen_over_tls_from_the_pktlab_command(tmp_path: Path) -> None:
    """`python -m packetlab` is the `pktlab` command (lazy imports on): --listen over TLS
    with a twistd pktendpoint of `pktlab init`'s endpt.conf. eyes19b: it was one line,
    exit 2, `module object for 'twisted.internet.ssl' substituted in sys.modules during a
    lazy load` (Twisted puts a proxy of that module in sys.modules)."""
    home = Path(os.environ["PKTLAB_HOME"])
    pktlab = [sys.executable, "-m", "packetlab"]
    made = subprocess.run([*pktlab, "init"], capture_output=True, text=True, env=env(),
                          cwd=REPO, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    status, out, err = listen_and_endpoint(
        tmp_path,
        [*pktlab, "run", "ping", "-c", "1", "--timeout", "30"],
        ["-c", str(home / "endpt.conf"), "--transproto", "raw,tcp,udp", "--ipv4", "127.0.0.1"],
    )
    assert status == 0, err
    assert "(TLS 1.3, PPKS certificates from" in err and "Traceback" not in err
    assert "1 packets transmitted, 1 received" in out


def test_without_raw_socket_rights_a_clear_error() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
    drop = "-net_raw"
    got = pktlab_run(
        "ping", "-c", "1", "127.0.0.1",
        wrap=(setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--"),
    )  # fmt: skip
    assert got.returncode == 2
    assert "needs raw sockets: run as root" in got.stderr
    assert "Traceback" not in got.stderr


@pytest.mark.parametrize(
    ("argv", "listen"),
    [
        (["run", "alias", "127.0.0.1", "127.0.0.2"], True),
        (["compare", "ping", "127.0.0.1", "--runs", "1"], False),
        (["compare", "traceroute", "127.0.0.1", "--runs", "1"], False),
    ],
)
def test_without_raw_socket_rights_alias_and_compare_say_so_too(
    argv: list[str], listen: bool
) -> None:
    """Session 23 (doctour23): `run alias` and `compare ping|traceroute` without
    CAP_NET_RAW said `nopen failed: EUNKFAULT (0xffff): failure on the endpoint (e.g. a
    raw socket could not be opened)` once the first probe was refused (alias after its
    `# 0 alias pairs` line); ping and traceroute's line, before anything starts. compare's
    endpoint is always the in-process one: no --listen advice there."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
    drop = "-net_raw"
    got = subprocess.run(
        [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--",
         sys.executable, "-m", "packetlab", *argv],
        capture_output=True, text=True, timeout=60, env=env(), cwd=REPO, check=False,
    )  # fmt: skip
    name = " ".join(argv[:2])
    assert got.returncode == 2, got
    assert got.stdout == "", got.stdout
    assert got.stderr.splitlines() == [
        f"pktlab {name}: the in-process endpoint needs raw sockets: run as root (or give "
        "this Python CAP_NET_RAW and CAP_BPF)"
        + (", or use --listen and an endpoint that has them" if listen else "")
    ], got.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "ping", "--insecure-plaintext", "--listen", "127.0.0.1:{port}", "127.0.0.1"],
        ["run", "alias", "--insecure-plaintext", "--listen", "127.0.0.1:{port}",
         "--endpoints", "2", "127.0.0.1", "127.0.0.2"],
        ["campaign", "dns", "--insecure-plaintext", "--listen", "127.0.0.1:{port}",
         "--endpoints", "1", "a.test"],
    ],
)  # fmt: skip
def test_a_listen_port_in_use_is_one_line(argv: list[str]) -> None:
    """Session 23 (doctour23): `campaign` and `run X --endpoints N` said `internal error:
    CannotListenError: Couldn't listen on ...` where `run X --listen` said `cannot listen
    on ...`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run(
            [sys.executable, "-m", "packetlab", *(a.format(port=port) for a in argv)],
            capture_output=True, text=True, timeout=60, env=env(), cwd=REPO, check=False,
        )  # fmt: skip
    name = " ".join(argv[:2])
    assert got.returncode == 2, got
    assert got.stderr == (
        f"pktlab {name}: cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use\n"
    ), got.stderr


def test_unresolvable_target() -> None:
    got = pktlab_run("traceroute", "a..b")
    # traceroute's words for getaddrinfo's error (session 18: `a..b: Name or service ...`)
    assert got.returncode == 2 and "traceroute: a..b: Name or service not known" in got.stderr


def test_interrupt_while_waiting_for_an_endpoint() -> None:
    proc = subprocess.Popen(
        [*RUN, "ping", "--insecure-plaintext", "--listen", "127.0.0.1:0", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
    )  # fmt: skip
    assert proc.stderr is not None
    line = readline(proc.stderr)  # "waiting for an endpoint on 127.0.0.1:PORT ..."
    assert "waiting for an endpoint" in line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def test_traceroute_to_a_silent_target_streams_and_gives_up_like_native(tb: Testbed) -> None:
    """Hops 1 and 2 answer, nothing in time beyond: the answered hops are printed at once,
    and the measurement takes about one --wait (every TTL probed at once), as native
    traceroute does, not one --wait per silent hop."""
    ns = tb.netns_name("ep")
    argv = ["ip", "netns", "exec", ns, *RUN, "traceroute", "--json", "-q", "1"]
    argv += ["-m", "6", "-w", "2"]
    proc = subprocess.Popen(
        [*argv, "10.77.3.99"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env(), cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(readline(proc.stdout))
    still_running = proc.poll() is None
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (first["ttl"], first["addr"]) == (1, "10.77.1.2")
    assert still_running, "the first hop should be printed before the run ends"
    lines = [json.loads(x) for x in rest.splitlines()]
    assert [x["ttl"] for x in lines[:-1]] == [2, 3, 4, 5, 6]
    summary = lines[-1]
    # endpoint start-up included (a few s on a loaded machine); one probe at a time would
    # take at least 4 silent hops x 2 s
    took = summary["stop_time"] - summary["start_time"]
    assert took < 2 + 4, f"{took:.1f} s: silent hops should cost one --wait, not one each"
