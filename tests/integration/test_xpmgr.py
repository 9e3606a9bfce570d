"""`pktlab xpmgr` with real processes: our TLS endpoint (NoSub mode) connecting directly
(passive mode) or through `twistd pktproxy` by SNI (active mode); a C mlet compiled here
and Python mlets; -n, -s, SIGINT wrap-up, many endpoints at once, JSON results."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pxworld import (
    REPO,
    EndpointProc,
    ProxyProc,
    XpmgrProc,
    active_conf,
    compile_c_mlet,
    http_server,
)
from tls_world import home_fixture

BODY = b"hello from the xpmgr test server\n"


home = home_fixture(root=True)


@pytest.fixture(scope="module")
def c_mlet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c_mlet(tmp_path_factory.mktemp("mlet"))


@pytest.fixture
def web() -> Iterator[int]:
    with http_server(BODY) as port:
        yield port


def test_passive_c_mlet_on_our_endpoint(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(c_mlet), "127.0.0.1", str(web)], "-n", "1")
    procs.append(xp)
    ep = EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1")
    procs.append(ep)
    assert xp.wait_exit() == 0, xp.text()
    out = xp.text()
    assert "HTTP/1.0 200 OK" in out
    assert "xpmgr: endpoints seen 1, running 0, done 1, failed 0" in out
    [r] = xp.result_lines()
    assert r["status"] == "done" and r["exit_code"] == 0
    assert r["hostid"] == "pktendpt" and r["address"] == "127.0.0.1"
    assert "endpoint 127.0.0.1 hostid pktendpt" in r["output"]


def test_passive_python_mlet_through_the_controller_api(
    tmp_path: Path, home: Path, web: int, procs: list[object]
) -> None:
    mlet = [str(REPO / "examples/http_get.py"), f"http://127.0.0.1:{web}/"]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", mlet, "-n", "1")
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    assert xp.wait_exit() == 0, xp.text()
    [r] = xp.result_lines()
    assert r["status"] == "done", r
    assert "status      HTTP/1.0 200 OK" in r["output"]
    assert "endpoint 127.0.0.1: hostid 'pktendpt'" in r["output"]


def test_active_mode_through_pktproxy_by_sni(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "xpsni1", "TargetBacklogConn 3")
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "2",
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog == 2")  # -n 2 caps the 3 wanted backlogs at 2
    eps = [EndpointProc(tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey", "xpsni1",
                        "--sessions", "1") for _ in range(2)]  # fmt: skip
    procs.extend(eps)
    assert xp.wait_exit() == 0, xp.text()
    results = xp.result_lines()
    assert [r["status"] for r in results] == ["done", "done"], results
    assert all(r["snikey"] == "xpsni1" and r["hostid"] == "pktendpt" for r in results)
    stats = proxy.counters("splices == 2 and active_splices == 0")
    assert stats["registrations"] >= 2
    # at -n the manager closed its unused backlogs: none stays registered
    proxy.counters("backlog == 0")


def test_active_mode_replenishes_backlogs(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "xpsni2", "TargetBacklogConn 2")
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)],
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog == 2")
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey",
                              "xpsni2", "--sessions", "3"))  # fmt: skip
    xp.wait_log(r"done 3, failed 0", timeout=30)
    proxy.counters("splices == 3 and backlog == 2")  # each one used was replaced


def test_active_mode_bootstrap_fails_without_a_proxy(
    tmp_path: Path, home: Path, c_mlet: Path, procs: list[object]
) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    conf = active_conf(
        home, tmp_path / "active.conf", "xpsni3", "BootstrapBacklogTimeout 1000000000"
    )
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", "1"], addr=f"127.0.0.1:{port}")
    procs.append(xp)
    assert xp.wait_exit(15) == 1
    assert "bootstrap timed out with 0 backlog connection established" in xp.text()


def test_many_endpoints_at_once_one_mlet_each(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    n = 4
    xp = XpmgrProc(
        tmp_path, home / "xpmgr.conf", [str(c_mlet), "127.0.0.1", str(web)], "-n", str(n)
    )
    procs.append(xp)
    port = xp.port()
    procs.extend(
        EndpointProc(tmp_path, home, f"127.0.0.1:{port}", "--sessions", "1", "--host-id", f"ep{i}")
        for i in range(n)
    )
    assert xp.wait_exit(60) == 0, xp.text()
    results = xp.result_lines()
    assert sorted(r["hostid"] for r in results) == [f"ep{i}" for i in range(n)]
    assert all(r["status"] == "done" for r in results)
    assert f"xpmgr: endpoints seen {n}, running 0, done {n}, failed 0" in xp.text()


def _children(pid: int) -> str:
    """The children of `pid` as /proc shows them: state (S sleeping, Z exited but not
    reaped...), kernel wait channel and command line."""
    out = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return "(no /proc entry)"
    for kid in kids:
        try:
            state = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{kid}/wchan").read_text()
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        out.append(f"  pid {kid} state {state} wchan {wchan}: {cmd}")
    return "\n".join(out) or "  (none)"


def wait_exit_or_explain(xp: XpmgrProc, ep: EndpointProc, timeout: float = 30.0) -> int:
    """`xp`'s exit status. If it still runs, the failure shows what each side was doing:
    the manager's children (the mlet blocked in a read, or exited and not reaped) and
    both logs (the endpoint never connected, or its session never ended)."""
    try:
        return xp.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"xpmgr still running after {timeout} s; its children:\n"
            f"{_children(xp.proc.pid)}\n--- xpmgr log:\n{xp.text()[-3000:]}\n"
            f"--- endpoint (exit {ep.proc.poll()}) log:\n{ep.text()[-3000:]}"
        ) from None


def test_failed_mlet_is_counted_and_reported(
    tmp_path: Path, home: Path, c_mlet: Path, procs: list[object]
) -> None:
    # port 1 on loopback: the connect fails, the mlet exits 1
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(c_mlet), "127.0.0.1", "1"], "-n", "1")
    procs.append(xp)
    ep = EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1")
    procs.append(ep)
    assert wait_exit_or_explain(xp, ep) == 3  # no endpoint succeeded (session 31; was 0)
    assert "xpmgr: no endpoint succeeded (1 failed): exit status 3" in xp.text()
    [r] = xp.result_lines()
    assert r["status"] == "failed" and r["exit_code"] == 1
    assert r["error"] == "the mlet exited with status 1"  # (was: no error field)
    assert "failed 1" in xp.text()


SLOW_MLET = """
from twisted.internet import reactor
from twisted.internet.task import deferLater
from packetlab.controller import read_system_info

async def mlet(session, args):
    info = await read_system_info(session)
    print("started on", info.hostid, flush=True)
    await deferLater(reactor, float(args[0]), lambda: None)
    print("finished on", info.hostid, flush=True)
"""


def test_sigint_wraps_up_then_exits(tmp_path: Path, home: Path, procs: list[object]) -> None:
    mlet = tmp_path / "slow_mlet.py"
    mlet.write_text(textwrap.dedent(SLOW_MLET))
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet), "2"])
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    xp.wait_log(r"started on pktendpt")
    xp.proc.send_signal(signal.SIGINT)
    xp.wait_log(r"wrapping up \(1 running\)")
    assert xp.wait_exit() == 0, xp.text()  # the running mlet was allowed to finish
    assert "finished on pktendpt" in xp.text()
    [r] = xp.result_lines()
    assert r["status"] == "done"


def test_second_sigint_exits_at_once(tmp_path: Path, home: Path, procs: list[object]) -> None:
    mlet = tmp_path / "slow_mlet.py"
    mlet.write_text(textwrap.dedent(SLOW_MLET))
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet), "60"])
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    xp.wait_log(r"started on pktendpt")
    xp.proc.send_signal(signal.SIGINT)
    xp.wait_log(r"wrapping up")
    t0 = time.monotonic()
    xp.proc.send_signal(signal.SIGINT)
    assert xp.wait_exit(10) == 130
    assert time.monotonic() - t0 < 5
    [r] = xp.result_lines()
    assert r["status"] == "failed" and r["error"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_mlets_and_record_them(
    tmp_path: Path, home: Path, procs: list[object], sig: signal.Signals
) -> None:
    """`kill` or a closed terminal: the manager died at the signal's default (SIGHUP, exit
    129) or the reactor's SIGTERM stop (exit 1), silently, its running mlet orphaned and
    still running and its result line never written (session 28). Now both SIGINTs at
    once: the mlet gets SIGTERM, its line says `interrupted`, exit 128 + the signal."""
    import os

    mlet = tmp_path / "slow"
    mlet.write_text('#!/bin/sh\necho "pid $$"\nexec sleep 60\n')
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)])
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    pid = int(xp.wait_log(r"pid (\d+)").group(1))
    xp.proc.send_signal(sig)
    code = xp.wait_exit(10)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(pid, signal.SIGKILL)  # do not leave the orphan behind
        raise AssertionError(f"the mlet (pid {pid}) outlived the manager")
    assert code == 128 + sig, xp.text()
    assert f"xpmgr: {sig.name}: exiting (1 mlet(s) running get SIGTERM)" in xp.text()
    [r] = xp.result_lines()
    assert r["status"] == "failed" and r["error"] == "interrupted"


def test_singleton_mode_passes_every_endpoint_to_one_mlet(
    tmp_path: Path, home: Path, web: int, procs: list[object]
) -> None:
    mlet = [str(REPO / "examples/http_get.py"), f"http://127.0.0.1:{web}/"]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", mlet, "-s", "-n", "2")
    procs.append(xp)
    port = xp.port()
    # s1 starts once s0 is done (it was handed to the singleton), so the order they are handed
    # in is known (started together, whichever finishes its setup first goes first, and
    # the lines' `started` is when each connected: the order could differ from that)
    for i in range(2):
        procs.append(
            EndpointProc(
                tmp_path, home, f"127.0.0.1:{port}", "--sessions", "1", "--host-id", f"s{i}"
            )
        )
        if i == 0:
            xp.wait_log(r"done 1, failed 0", timeout=60)
    assert xp.wait_exit(60) == 0, xp.text()
    out = xp.text()
    assert out.count("status      HTTP/1.0 200 OK") == 2
    assert "hostid 's0'" in out and "hostid 's1'" in out
    # one mlet process served both: the endpoints' lines carry no exit code nor output;
    # the singleton's own line, last, has them (session 25: its output was not recorded)
    *results, single = xp.result_lines()
    assert sorted(r["hostid"] for r in results) == ["s0", "s1"]
    assert all(r["status"] == "done" and "exit_code" not in r for r in results)
    assert all("output" not in r and "singleton" not in r for r in results)
    assert single["singleton"] is True and "address" not in single
    assert single["mlet"] == mlet
    assert single["status"] == "done" and single["exit_code"] == 0 and "error" not in single
    assert single["output"].count("status      HTTP/1.0 200 OK") == 2, single["output"]
    assert "hostid 's0'" in single["output"] and "hostid 's1'" in single["output"]
    # the endpoints handed to it, in that order, as their own lines say
    handed = [(e["hostid"], e["status"]) for e in single["endpoints"]]
    assert sorted(handed) == [("s0", "done"), ("s1", "done")], single
    assert [h for h, _ in handed] == ["s0", "s1"]
    order = [r["hostid"] for r in sorted(results, key=lambda r: r["started"])]
    assert order == ["s0", "s1"]
    assert all(e["address"] == "127.0.0.1" for e in single["endpoints"])
    assert single["started"] <= min(r["started"] for r in results)
    assert single["finished"] >= max(r["finished"] for r in results)


SINGLETON_THAT_FAILS = """#!/usr/bin/env python3
import socket, sys, time
ctl = socket.socket(fileno=0)
msg, fds, flags, addr = socket.recv_fds(ctl, 256, 1)
print("got", msg.rstrip(b"\\0").decode(), flush=True)
print("trouble ahead", file=sys.stderr, flush=True)
if sys.argv[1] == "later":  # done with the endpoint, then a failure of its own
    socket.socket(fileno=fds[0]).close()
    time.sleep(1.0)
else:  # dies holding it
    time.sleep(0.3)
sys.exit(3)
"""


@pytest.mark.parametrize("when", ["holding", "later"])
def test_singleton_failure_is_the_failure_of_the_endpoints_it_held(
    tmp_path: Path, home: Path, procs: list[object], when: str
) -> None:
    # -s: no per-endpoint exit code; an endpoint open when the singleton died failed
    # with it (was "done"), one it had closed before is done
    mlet = tmp_path / "single"
    mlet.write_text(SINGLETON_THAT_FAILS)
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet), when], "-s", "-n", "1")
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    assert xp.wait_exit(30) == 1, xp.text()  # the singleton's status 3
    [r, single] = xp.result_lines()
    if when == "holding":
        assert r["status"] == "failed", r
        assert r["error"] == "the singleton mlet exited with status 3 with this endpoint open"
        assert "failed 1" in xp.text()
    else:
        assert r["status"] == "done" and "error" not in r, r
    # the singleton's line: its own failure, its output and errors, the endpoint's end
    assert single["singleton"] is True and single["status"] == "failed", single
    assert single["error"] == "the singleton mlet exited with status 3"
    assert single["exit_code"] == 3 and single["mlet"] == [str(mlet), when]
    assert single["output"] == "got 127.0.0.1\n" and single["stderr"] == "trouble ahead\n"
    [entry] = single["endpoints"]
    assert entry == {k: r[k] for k in ("hostid", "address", "snikey", "status", "error") if k in r}


SINGLETON_THAT_WAITS = """#!/usr/bin/env python3
import socket, time
ctl = socket.socket(fileno=0)
msg, fds, flags, addr = socket.recv_fds(ctl, 256, 1)
print("holding", msg.rstrip(b"\\0").decode(), flush=True)
time.sleep(60)
"""


def test_singleton_interrupted_says_so_in_its_line(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """The second Ctrl-C ends the singleton (SIGTERM): its line is `failed`,
    `interrupted`, with what it printed and the endpoint it held."""
    mlet = tmp_path / "single"
    mlet.write_text(SINGLETON_THAT_WAITS)
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-s")
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    xp.wait_log(r"holding 127\.0\.0\.1")
    xp.proc.send_signal(signal.SIGINT)
    xp.wait_log(r"wrapping up")
    xp.proc.send_signal(signal.SIGINT)
    assert xp.wait_exit(10) == 130, xp.text()
    [r, single] = xp.result_lines()
    assert r["status"] == "failed" and r["error"] == "interrupted", r
    assert single["singleton"] is True and single["status"] == "failed", single
    assert single["error"] == "interrupted" and single["signal"] == signal.SIGTERM
    assert single["output"] == "holding 127.0.0.1\n"
    assert single["endpoints"] == [
        {"hostid": "pktendpt", "address": "127.0.0.1", "snikey": r["snikey"],
         "status": "failed", "error": "interrupted"}
    ]  # fmt: skip


def test_bad_config_and_mlet_are_clear_errors(tmp_path: Path, home: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.conf"
    bad.write_text("EnableExpPublication 0\nControllerPrivkeyPath x\nExpExec 1:UPPER:a:::\n")
    run = subprocess.run([sys.executable, "-m", "packetlab", "xpmgr", "-c", str(bad), "true"],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert run.returncode == 1
    assert "bad.conf:3: ExpExec SNIKEY 'UPPER' must be 1..63 of [a-z0-9]" in run.stderr
    run = subprocess.run([sys.executable, "-m", "packetlab", "xpmgr", "-c",
                          str(home / "xpmgr.conf"), "/nonexistent/mlet"],
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1
    assert "pktlab xpmgr: MLET '/nonexistent/mlet': no such file\n" in run.stderr


def test_active_mode_with_agent_certs_checked_both_ways(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    """The manager presents agent_xc_xc and checks the proxy against k_prx; the proxy
    requires a manager agent cert chaining to k_xc."""
    proxy = ProxyProc(tmp_path, home, "--manager-roots", str(home / "keys/k_xc.pub"))
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "agentsni",
                       f"BacklogConnAgentCertPath {home / 'certs/agent_xc_xc.cert'}",
                       f"ProxyCertRootPath {home / 'keys/k_prx.pub'}")  # fmt: skip
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey",
                              "agentsni", "--sessions", "1"))  # fmt: skip
    assert xp.wait_exit() == 0, xp.text()
    assert xp.result_lines()[0]["status"] == "done"


def test_active_mode_refuses_a_proxy_it_does_not_trust(
    tmp_path: Path, home: Path, c_mlet: Path, procs: list[object]
) -> None:
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "distrust",
                       f"ProxyCertRootPath {home / 'keys/k_eop.pub'}",
                       "BootstrapBacklogTimeout 1500000000")  # fmt: skip
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", "1"],
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    assert xp.wait_exit(15) == 1
    text = xp.text()
    assert "TLS setup with the proxy failed" in text and "untrusted" in text, text
    # at the first refusal, as pktxpmgr (OBSERVED §4.1), not at BootstrapBacklogTimeout
    assert "FATAL: backlog connection TLS setup with the proxy failed" in text, text
    assert "bootstrap timed out" not in text, text


def test_campaign_through_the_manager(
    tmp_path: Path, home: Path, web: int, procs: list[object]
) -> None:
    """A `pktlab run` measurement as the mlet (packetlab.cli.campaign_mlet): each endpoint
    the manager reaches runs it, every record a JSON line tagged with the hostid."""
    import json

    mlet = ["packetlab.cli.campaign_mlet", "http", f"http://127.0.0.1:{web}/"]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", mlet, "-n", "2")
    procs.append(xp)
    port = xp.port()
    procs.extend(
        EndpointProc(tmp_path, home, f"127.0.0.1:{port}", "--sessions", "1", "--host-id", f"v{i}")
        for i in range(2)
    )
    assert xp.wait_exit(60) == 0, xp.text()
    records = [json.loads(x) for x in xp.text().splitlines() if x.startswith('{"')]
    http = [r for r in records if r.get("type") == "http"]
    assert sorted(r["endpoint"] for r in http) == ["v0", "v1"]
    assert all(r["status"] == 200 and r["body_len"] == len(BODY) for r in http)
    summaries = [r for r in records if r.get("type") == "summary" and "measurement" in r]
    assert sorted(r["endpoint"] for r in summaries) == ["v0", "v1"]


def test_active_mode_more_endpoints_at_once_than_backlogs(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    """Four endpoints at once, one backlog: the proxy holds each one whose snikey has no
    idle backlog until the manager's replenishment registers the next (a TLS alert would
    make a reference endpoint drop the experiment): no endpoint is refused, all run."""
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "xpsni5", "TargetBacklogConn 1")
    n = 4
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", str(n),
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog == 1")
    procs.extend(
        EndpointProc(tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey", "xpsni5",
                     "--sessions", "1", "--host-id", f"ep{i}")
        for i in range(n)
    )  # fmt: skip
    assert xp.wait_exit(60) == 0, xp.text()
    results = xp.result_lines()
    assert sorted(r["hostid"] for r in results) == [f"ep{i}" for i in range(n)], results
    assert all(r["status"] == "done" for r in results), results
    stats = proxy.counters(f"splices == {n}")
    assert stats["refusals"] == {}, stats


def test_second_sigint_leaves_no_mlet_that_ignores_sigterm(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    """An mlet that ignores SIGTERM (and SIGINT) outlived the manager, orphaned and still
    running, after the second SIGINT; now it gets SIGKILL after the grace."""
    import os

    mlet = tmp_path / "stubborn"
    mlet.write_text('#!/bin/sh\ntrap "" TERM INT\necho "pid $$"\nwhile :; do sleep 0.1; done\n')
    mlet.chmod(0o755)
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)])
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    pid = int(xp.wait_log(r"pid (\d+)").group(1))
    xp.proc.send_signal(signal.SIGINT)
    xp.wait_log(r"wrapping up \(1 running\)")
    xp.proc.send_signal(signal.SIGINT)
    assert xp.wait_exit(20) == 130
    assert "still running 2.0 s after SIGTERM: SIGKILL" in xp.text()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(pid, signal.SIGKILL)  # the old manager's orphan: do not leave it
        raise AssertionError(f"the mlet (pid {pid}) outlived the manager")
    [r] = xp.result_lines()
    assert r["status"] == "failed" and r["error"] == "interrupted"


@pytest.mark.parametrize("mode", ["passive", "proxy"])
def test_fifty_endpoints_at_once_progress_and_results(
    tmp_path: Path, home: Path, procs: list[object], mode: str
) -> None:
    """50 endpoints arriving at once, directly or through `twistd pktproxy` (2 backlogs:
    the proxy holds the rest until the manager replenishes): every one gets its mlet, one
    JSON line each (whole lines, hostid and address right, the mlet's output its own),
    and the progress lines add up (seen = running + done + failed) to the final count."""
    import re
    import sys

    from pxworld import Proc

    n = 50
    mlet = tmp_path / "ok"
    mlet.write_text('#!/bin/sh\necho "ok $EPADDR"\n')
    mlet.chmod(0o755)
    snikey: list[str] = []
    if mode == "passive":
        xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet)], "-n", str(n))
        procs.append(xp)
        target = f"127.0.0.1:{xp.port()}"
    else:
        proxy = ProxyProc(tmp_path, home)
        procs.append(proxy)
        conf = active_conf(home, tmp_path / "active.conf", "many50", "TargetBacklogConn 2")
        xp = XpmgrProc(tmp_path, conf, [str(mlet)], "-n", str(n),
                       addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
        procs.append(xp)
        proxy.counters("backlog == 2")
        target, snikey = f"127.0.0.1:{proxy.endpoints}", ["many50"]
    eps = Proc([sys.executable, str(Path(__file__).parent / "many_endpoints.py"),
                str(home / "endpt.conf"), target, str(n), *snikey],
               tmp_path / "many.log", tmp_path)  # fmt: skip
    procs.append(eps)
    assert xp.wait_exit(120) == 0, xp.text()[-3000:]
    results = xp.result_lines()
    assert sorted(r["hostid"] for r in results) == sorted(f"ep{i}" for i in range(n))
    assert {r["status"] for r in results} == {"done"}, [r for r in results if r["status"] != "done"]
    assert all(r["address"] == "127.0.0.1" and r["output"] == "ok 127.0.0.1\n" for r in results)
    progress = re.findall(r"endpoints seen (\d+), running (\d+), done (\d+), failed (\d+)",
                          xp.text())  # fmt: skip
    counts = [tuple(map(int, p)) for p in progress]
    assert all(s == r + d + f for s, r, d, f in counts), counts
    assert counts[-1] == (n, 0, n, 0)
    assert xp.text().count("ok 127.0.0.1\n") == n  # each mlet's line passed through whole


def test_mlet_args_reach_the_mlet_verbatim(tmp_path: Path, home: Path, procs: list[object]) -> None:
    """MLET_ARGS with spaces, dashes that look like our options, an empty one, `--` and
    non-ASCII: each reaches the mlet as one argument, unchanged."""
    mlet = tmp_path / "echoargs"
    mlet.write_text('#!/bin/sh\nfor a in "$@"; do printf \'[%s]\\n\' "$a"; done\n')
    mlet.chmod(0o755)
    given = ["a b", "--x", "-n", "0", "", "--", "-s", "ünï  x"]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [str(mlet), *given], "-n", "1")
    procs.append(xp)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}", "--sessions", "1"))
    assert xp.wait_exit() == 0, xp.text()
    [r] = xp.result_lines()
    assert r["output"] == "".join(f"[{a}]\n" for a in given), r


def test_a_proxy_restarted_under_a_running_manager_gets_its_backlogs_again(
    tmp_path: Path, home: Path, c_mlet: Path, web: int, procs: list[object]
) -> None:
    """The proxy stops (its backlogs close) and comes back on the same ports: the manager
    registers TargetBacklogConn backlogs again and the next endpoint is served."""
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    setup, endpoints = proxy.setup, proxy.endpoints
    conf = active_conf(home, tmp_path / "active.conf", "restart1", "TargetBacklogConn 2")
    xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)],
                   addr=f"127.0.0.1:{setup}")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog == 2")
    proxy.stop()
    xp.wait_log(r"idle backlog to 127\.0\.0\.1:\d+ closed by the proxy")
    again = ProxyProc(tmp_path, home, "--setup", f"tcp:{setup}:interface=127.0.0.1",
                      "--endpoints", f"tcp:{endpoints}:interface=127.0.0.1")  # fmt: skip
    procs.append(again)
    again.counters("backlog == 2", timeout=45)  # after the manager's backoff (0.5 s doubling)
    procs.append(EndpointProc(tmp_path, home, f"127.0.0.1:{endpoints}", "--snikey", "restart1",
                              "--sessions", "1"))  # fmt: skip
    xp.wait_log(r"done 1, failed 0", timeout=30)
    again.counters("splices == 1 and backlog == 2")  # and the used one was replaced
