"""The broker and the proxy as an operator runs them for a week (docs/broker.md and
docs/proxy.md, "Running it as a service"): real `twistd` processes in the background
(no `-n`) with `--pidfile` and `--logfile`, the log rotated on SIGUSR1, SIGTERM and SIGHUP
stopping them cleanly (the pid file removed); a broker restarted under its subscribed
endpoints and a publishing xpmgr; a proxy restarted under an xpmgr in proxy mode."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity, free_ports, pythonpath_env
from conftest import twistd
from pxworld import EndpointProc, Proc, XpmgrProc, active_conf
from tls_world import home_fixture

from packetlab.ppks import PktlabHome

home = home_fixture()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def poll(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def daemon_argv(role: str, home: PktlabHome, tmp: Path) -> list[str]:
    here = "tcp:0:interface=127.0.0.1"
    if role == "pktbroker":
        conf = tmp / "broker.conf"
        conf.write_text(f"StatusListen {here}\n")
        return ["pktbroker", "--config", str(conf), "--publish", here, "--subscribe", here]
    return ["pktproxy", "--home", str(home.root), "--setup", here, "--endpoints", here,
            "--stats-interval", "0"]  # fmt: skip


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("role", ["pktbroker", "pktproxy"])
def test_a_daemon_writes_its_pidfile_rotates_its_log_on_sigusr1_and_stops_cleanly(
    home: PktlabHome, tmp_path: Path, role: str, stop: signal.Signals
) -> None:
    pidfile, logfile = tmp_path / f"{role}.pid", tmp_path / f"{role}.log"
    argv = [*twistd(), f"--pidfile={pidfile}", f"--logfile={logfile}",
            *daemon_argv(role, home, tmp_path)]  # fmt: skip
    start = subprocess.run(argv, cwd=tmp_path, env=pythonpath_env(home), capture_output=True,
                           timeout=60)  # fmt: skip
    # the parent returns once the daemon is forked, saying where its log and pid are
    assert start.returncode == 0, start.stderr
    assert f"pid in {pidfile}" in start.stderr.decode(), start.stderr
    poll(pidfile.exists, 30, "the pid file")
    pid = int(pidfile.read_text())
    try:
        poll(lambda: re.search(r"port listening on 127\.0\.0\.1:(\d+)", logfile.read_text()),
             30, "the listening line")  # fmt: skip
        port = int(re.findall(r"port listening on 127\.0\.0\.1:(\d+)", logfile.read_text())[0])
        # twistd's own log rotation: SIGUSR1 renames the log to .1 and opens a new one
        # (logrotate's postrotate `kill -USR1`); SIGHUP is no reload (below)
        os.kill(pid, signal.SIGUSR1)
        rotated = tmp_path / f"{role}.log.1"
        poll(rotated.exists, 10, "the rotated log")
        assert "listening on 127.0.0.1" in rotated.read_text()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # still serving after the rotation
        poll(lambda: "listening on" not in logfile.read_text() and alive(pid), 5, "a new log")
        os.kill(pid, stop)
        poll(lambda: not alive(pid), 20, f"{role} stopping on {stop.name}")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists()  # removed: a stale one would stop the next start
    text = logfile.read_text()
    assert f"Received {stop.name}, shutting down" in text and "Server Shut Down." in text
    assert "Traceback" not in text + rotated.read_text()
    if role == "pktproxy":  # its counters, once more at the end
        assert "stopping: registrations=0" in text


broker = broker_world.broker_per_test


def test_a_restarted_broker_has_its_endpoints_back_and_the_xpmgr_says_its_publication_is_over(
    home: PktlabHome, tmp_path: Path, broker: BrokerProcess
) -> None:
    """Endpoints resubscribe within seconds (0.25 s doubling to 5 s); a publication is tied
    to its link (OBSERVED §3.4: pktxpmgr never republishes), so the restarted broker has
    none, and xpmgr says so in one line and keeps greeting."""
    text = (home.root / "xpmgr.conf").read_text().replace("EnableExpPublication 0", "")
    conf = tmp_path / "pub.conf"
    conf.write_text(text.replace("ExpExec 1::", "ExpExec 1:opssni:")
                    + f"EnableExpPublication 1\nBrokerAddr 127.0.0.1:{broker.pub_port}\n"
                    + f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\n"
                    + "PubPeriod 120000000000\n")  # fmt: skip
    idents = [Identity(home, tmp_path, f"ep{i}") for i in range(2)]
    where = ("--broker", f"127.0.0.1:{broker.sub_port}", "--ipv4", "127.0.0.1/8")
    eps = [EndpointProc(tmp_path, home.root, None, *where, *i.endpoint_args()) for i in idents]
    xp = XpmgrProc(tmp_path, conf, ["true"], "-n", "10")
    try:
        poll(lambda: len(xp.result_lines()) == 2, 60, "both endpoints ran the experiment")
        broker.stop()
        assert "publication end id=1 " in broker.output()
        assert "reason=broker stopping" in broker.output()  # not the publisher's doing
        mark = len(broker.output())
        # its counters, in its last line (what a restart would otherwise lose)
        assert re.search(
            r"pktbroker stopping; since \S+Z: publish: links=1 .*xpub=1.*; "
            r"subscribe: links=2 .*xsub=2",
            broker.output(),
        ), broker.output()[-2000:]
        broker.start()  # the same ports
        xp.wait_log("broker EOF: the publication is over .* run xpmgr again", timeout=10)
        out = broker.wait_log("subscribe peer=", timeout=15, since=mark)
        poll(lambda: broker.output()[mark:].count("subscribe peer=") >= 2, 15,
             "both endpoints subscribed again")  # fmt: skip
        again = broker.output()[mark:]
        assert again.count("live_offered=0") == 2, again  # the publication did not come back
        assert "Traceback" not in out + xp.text()
        assert xp.proc.poll() is None  # greeting goes on until pub_end
    finally:
        for ep in eps:
            ep.stop()
        xp.stop()


def test_a_restarted_proxy_gets_the_xpmgr_backlogs_back_and_splices_again(
    home: PktlabHome, tmp_path: Path
) -> None:
    setup, endpoints = free_ports(2)

    def proxy(n: int) -> Proc:
        argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktproxy", "--home",
                str(home.root), "--setup", f"tcp:{setup}:interface=127.0.0.1", "--endpoints",
                f"tcp:{endpoints}:interface=127.0.0.1", "--stats-interval", "0"]  # fmt: skip
        p = Proc(argv, tmp_path / f"proxy{n}.log", tmp_path)
        p.wait_log("endpoints port listening", timeout=30)
        return p

    def endpoint() -> EndpointProc:
        return EndpointProc(tmp_path, home.root, f"127.0.0.1:{endpoints}", "--snikey", "opspx",
                            "--ipv4", "127.0.0.1/8")  # fmt: skip

    first = proxy(1)
    xp = XpmgrProc(tmp_path, active_conf(home.root, tmp_path / "x.conf", "opspx"), ["true"],
                   "-n", "100", addr=f"127.0.0.1:{setup}")  # fmt: skip
    second = None
    try:
        xp.wait_log("ready for snikey opspx", timeout=30)
        first.stop()  # SIGTERM: it closes the idle backlogs
        xp.wait_log("cannot connect", timeout=10)  # retried meanwhile
        # A restart that takes a while: on the back-off the manager's tries came ~1, 2, 4
        # and 12 s after the first failure, so a proxy listening again after ~5 s waited
        # ~7 s more for its backlogs.
        time.sleep(4)
        ready = xp.text().count("ready for snikey opspx")
        second = proxy(2)
        listening = time.monotonic()
        # A proxy that worked is tried every second for a minute (was: the back-off,
        # 0.5 s doubling to 30 s, so this one waited ~6 s more with no backlog).
        poll(lambda: xp.text().count("ready for snikey opspx") > ready, 15,
             "a backlog registered at the restarted proxy")  # fmt: skip
        waited = time.monotonic() - listening
        assert waited < 3.0, f"the backlogs came back {waited:.1f} s after the proxy listened"
        assert xp.text().count("cannot connect") <= 5, xp.text()  # 1st, 2nd, 4th, 8th
        ep = endpoint()
        try:
            poll(lambda: len(xp.result_lines()) >= 1, 30, "an endpoint through the new proxy")
        finally:
            ep.stop()
        assert xp.result_lines()[0]["status"] == "done"
        assert "spliced to backlog" in second.text()
    finally:
        xp.stop()
        first.stop()
        if second is not None:
            second.stop()


def free_privileged_ports(n: int) -> list[int]:
    """`n` ports below 1024 free on 127.0.0.1 now (held at once, so all different)."""
    held: list[socket.socket] = []
    try:
        for port in range(700, 1000):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) == n:
                break
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@pytest.mark.root
@pytest.mark.parametrize("role", ["pktbroker", "pktproxy"])
def test_u_nobody_binds_ports_below_1024_before_dropping_privileges(
    home: PktlabHome, tmp_path: Path, role: str
) -> None:
    """`twistd -u nobody -g nogroup` with ports below 1024: they were bound after the drop,
    `cannot listen: Couldn't listen on 127.0.0.1:556: [Errno 13] Permission denied.`, exit
    1. Now they are bound first, as Twisted's own servers do, and the daemon runs as
    nobody."""
    import grp
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root (it drops to nobody)")
    try:
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user nobody or group nogroup here")
    ports = free_privileged_ports(3)
    here = [f"tcp:{p}:interface=127.0.0.1" for p in ports]
    if role == "pktbroker":
        conf = tmp_path / "broker.conf"
        conf.write_text(f"StatusListen {here[2]}\n")
        args = ["pktbroker", "--config", str(conf), "--publish", here[0], "--subscribe", here[1]]
    else:
        args = ["pktproxy", "--home", str(home.root), "--setup", here[0], "--endpoints", here[1]]
    log = tmp_path / "daemon.log"
    argv = [*twistd(), "-n", "-u", str(uid), "-g", str(gid), "--pidfile=", f"--logfile={log}",
            *args]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=tmp_path, env=pythonpath_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        poll(lambda: (log.exists() and log.read_text().count("port listening on") == 2)
             or proc.poll() is not None, 30, "both ports listening")  # fmt: skip
        assert proc.poll() is None, log.read_text()[-2000:]
        for port in ports[:2]:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass

        def dropped() -> bool:  # the ports are bound first, then twistd drops to nobody
            status = Path(f"/proc/{proc.pid}/status").read_text()
            return re.search(rf"^Uid:\s+{uid}\s", status, re.M) is not None

        poll(dropped, 10, "the daemon running as nobody")
        assert proc.poll() is None, log.read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)
    assert "Permission denied" not in log.read_text()
