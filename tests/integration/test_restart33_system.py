"""Daemons restarted under a running system (session 33, restart33): the README's main job
in real processes (a `twistd pktbroker`, two broker-mode `twistd pktendpoint`, a `pktlab
xpmgr` publishing an experiment that both run), then one piece killed with SIGKILL mid-
session and started again. SIGTERM restarts of the broker and the proxy are in
test_daemon_operations.py.

* the broker: the sessions under way finish (`done`), the endpoints are subscribed again
  within the 5 s backoff cap of the broker listening, each saying it in two lines (lost,
  back after N attempts over T s; before, a line per attempt), and xpmgr says its
  publication is over (OBSERVED §3.4: pktxpmgr never republishes);
* an endpoint (SIGKILL or SIGTERM): its result is `failed` with `endpoint_closed` (`lost`,
  `closed`), the other is `done`; back, it
  subscribes again and is not offered the experiment again (the broker's delivery record
  by agent key: OBSERVED §2.3, a reference endpoint crashes on the same bytes twice);
* xpmgr: the endpoints' sessions end, its mlets (talking to their endpoints) do not
  outlive it (one that neither reads nor writes does: docs/usability.md), and a new xpmgr's
  publication runs on both;
* a broker (behind a balancer) that drops each subscription a second after it: the
  endpoint backs off to its 5 s cap (before, it was back every ~1.3 s for ever).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from broker_world import BrokerProcess, Identity, free_port
from pxworld import EndpointProc, XpmgrProc
from tls_world import home_fixture

from packetlab.ppks import PktlabHome

home = home_fixture()

MLET = """\
import socket, sys, time
from packetlab import wire
from packetlab.wire import vmem
sock = socket.socket(fileno=0)
framer, n, end = wire.Framer(), 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    sock.sendall(wire.encode(wire.Mread(vmem.HOSTID.addr, 4)))
    got = []
    sock.settimeout(10)
    while not got:
        data = sock.recv(65536)
        if not data:
            sys.exit(4)
        got += list(framer.feed(data))
    n += 1
    time.sleep(0.1)
print("mlet: done", n, "mreads", flush=True)
"""


def poll(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().split(")")[-1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


class System:
    """The broker, two endpoints of their own identities, and a publishing xpmgr."""

    def __init__(self, home: PktlabHome, tmp: Path, mlet_seconds: float) -> None:
        self.home, self.tmp = home, tmp
        self.broker = BrokerProcess(home, tmp)
        self.eps: list[EndpointProc] = []
        self.xps: list[XpmgrProc] = []
        text = (home.root / "xpmgr.conf").read_text().replace("EnableExpPublication 0", "")
        self.conf = tmp / "pub.conf"
        where = f"127.0.0.1:{self.broker.pub_port}"
        self.conf.write_text(text.replace("ExpExec 1::", "ExpExec 1:rs33sni:")
                             + f"EnableExpPublication 1\nBrokerAddr {where}\n"
                             + f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\n"
                             + "PubPeriod 120000000000\n")  # fmt: skip
        self.mlet = tmp / "mlet.py"
        self.mlet.write_text(MLET)
        self.mlet_seconds = mlet_seconds
        self.idents = [Identity(home, tmp, f"rs33ep{i}") for i in range(2)]

    def endpoint(self, i: int) -> EndpointProc:
        where = ("--broker", f"127.0.0.1:{self.broker.sub_port}", "--ipv4", "127.0.0.1/8")
        ep = EndpointProc(self.tmp, self.home.root, None, *where, *self.idents[i].endpoint_args(),
                          "--set", f"HostID=rs33ep{i}")  # fmt: skip
        self.eps.append(ep)
        return ep

    def xpmgr(self) -> XpmgrProc:
        xp = XpmgrProc(self.tmp, self.conf, [sys.executable, str(self.mlet),
                                             str(self.mlet_seconds)], "-n", "10")  # fmt: skip
        self.xps.append(xp)
        return xp

    def stop(self) -> None:
        for p in [*self.eps, *self.xps]:
            p.stop()
        self.broker.stop()


@pytest.fixture
def system(home: PktlabHome, tmp_path: Path) -> Iterator[System]:
    s = System(home, tmp_path, 6.0)
    try:
        yield s
    finally:
        s.stop()


def running_on_both(system: System) -> tuple[EndpointProc, EndpointProc, XpmgrProc]:
    ep0, ep1 = system.endpoint(0), system.endpoint(1)
    for ep in (ep0, ep1):
        ep.wait_log("Broker subscription finished", timeout=30)
    xp = system.xpmgr()
    xp.wait_log("endpoints seen 2, running 2", timeout=60)
    return ep0, ep1, xp


def test_a_broker_killed_mid_session_and_started_again(system: System) -> None:
    ep0, ep1, xp = running_on_both(system)
    broker = system.broker
    assert broker.proc is not None
    marks = [len(ep.text()) for ep in (ep0, ep1)]
    broker.proc.kill()  # SIGKILL: no close_notify, the kernel's FIN
    broker.proc.wait(10)
    time.sleep(3)  # the outage itself (not a wait for anything): a restart that takes a while
    broker.start()  # the same ports
    listening = time.monotonic()
    pairs = list(zip((ep0, ep1), marks, strict=True))
    poll(lambda: all("back after" in ep.text()[m:] for ep, m in pairs), 30,
         "both endpoints subscribed again")  # fmt: skip
    waited = time.monotonic() - listening
    # the backoff's cap (5 s) plus a handshake; a loaded machine has more
    assert waited < 12, f"subscribed again {waited:.1f} s after the broker listened"
    for ep, mark in zip((ep0, ep1), marks, strict=True):
        since = ep.text()[mark:]
        said = [ln for ln in since.splitlines() if "broker 127.0.0.1:" in ln]
        # a line when lost, one when refused, one when back (before: one per failed
        # attempt, 5 or more over these 3 s and the broker's start)
        assert len(said) == 2 and "link lost" in said[0] and "refused" in said[1], since
        assert re.search(r"Broker subscription finished: .*; back after \d+ failed attempt\(s\) "
                         r"over [\d.]+ s", since), since  # fmt: skip
    poll(lambda: len(xp.result_lines()) == 2, 60, "both sessions ended")
    assert [r["status"] for r in xp.result_lines()] == ["done", "done"], xp.result_lines()
    xp.wait_log("broker EOF: the publication is over", timeout=10)
    assert "Traceback" not in xp.text() + ep0.text() + ep1.text()


# SIGTERM: a stopping endpoint aborts its sessions (endpoint/protocol.py `end_session`):
# xpmgr read `closed` in restart33's runs and `lost` (a reset) in one CI run, both right.
@pytest.mark.parametrize(("stop", "closed"), [(signal.SIGKILL, ("lost",)),
                                              (signal.SIGTERM, ("closed", "lost"))],
                         ids=["SIGKILL", "SIGTERM"])  # fmt: skip
def test_an_endpoint_killed_mid_session_and_started_again(
    system: System, stop: signal.Signals, closed: tuple[str, ...]
) -> None:
    ep0, _, xp = running_on_both(system)
    ep0.proc.send_signal(stop)
    ep0.proc.wait(20)
    poll(lambda: len(xp.result_lines()) >= 1, 30, "the stopped endpoint's result")
    first = xp.result_lines()[0]
    assert (first["hostid"], first["status"]) == ("rs33ep0", "failed"), first
    # SIGKILL: the kernel's FIN or RST; SIGTERM: the endpoint's close or reset, and its log
    # says why (`session over: closed by the endpoint: the endpoint is stopping`)
    assert first["endpoint_closed"].startswith(closed), first
    if stop == signal.SIGTERM:
        assert "closed by the endpoint: the endpoint is stopping" in ep0.text()
    mark = len(system.broker.output())
    again = system.endpoint(0)
    again.wait_log("Broker subscription finished", timeout=30)
    # the same agent key: the broker's delivery record holds it (a reference endpoint given
    # the same xdescr bytes while it still holds them crashes; it cannot tell a restart)
    system.broker.wait_log("live_offered=0", timeout=10, since=mark)
    poll(lambda: len(xp.result_lines()) == 2, 60, "the other session ended")
    assert xp.result_lines()[1]["status"] == "done", xp.result_lines()
    assert "endpoints seen 2, running 0, done 1, failed 1" in xp.text()
    assert "experiment #" not in again.text()  # not run again
    xp.proc.send_signal(signal.SIGINT)  # wrap up: one endpoint succeeded
    assert xp.wait_exit(30) == 0


def test_xpmgr_killed_mid_session_and_started_again(system: System) -> None:
    ep0, ep1, xp = running_on_both(system)
    poll(lambda: len(children(xp.proc.pid)) == 2, 10, "both mlets started")
    mlets = children(xp.proc.pid)
    marks = [len(ep.text()) for ep in (ep0, ep1)]
    xp.proc.kill()
    xp.proc.wait(10)
    # its mlets see their endpoint link (a socketpair with the manager) end, and go
    poll(lambda: not any(alive(p) for p in mlets), 15, "the killed manager's mlets gone")
    pairs = list(zip((ep0, ep1), marks, strict=True))
    poll(lambda: all("session over" in e.text()[m:] for e, m in pairs), 15,
         "both endpoints' sessions over")  # fmt: skip
    second = system.xpmgr()
    poll(lambda: len(second.result_lines()) == 2, 90, "both ran the new publication")
    assert [r["status"] for r in second.result_lines()] == ["done", "done"]
    assert "reason=publisher closed" in system.broker.output()


class CuttingRelay:
    """A TCP relay in front of the broker that cuts each connection `hold` s after it
    came (a balancer in front of a broker that drops its subscribers)."""

    def __init__(self, target: int, hold: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.hold = target, hold
        self.accepted: list[float] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                c, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(time.monotonic())
            t = threading.Thread(target=self._relay, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _relay(self, c: socket.socket) -> None:
        end = time.monotonic() + self.hold
        try:
            b = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            c.close()
            return
        import selectors

        with c, b, selectors.DefaultSelector() as sel:
            sel.register(c, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, c)
            while not self.stopping.is_set() and time.monotonic() < end:
                for key, _ in sel.select(max(0.0, end - time.monotonic())):
                    src = key.fileobj
                    assert isinstance(src, socket.socket)
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        for t in self.threads:
            t.join(5)


# Not `serial` (pass 1 since session 35): 21 s of waiting on 1 s of CPU, and a neighbour's
# load only slows the reconnects (fewer, wider apart), never past the bounds; the defect
# (every ~1.3 s, ~15 in 20 s, no gap over 4 s) still fails both.
def test_a_broker_that_drops_each_subscription_gets_the_capped_backoff(
    home: PktlabHome, tmp_path: Path
) -> None:
    broker = BrokerProcess(home, tmp_path, sub_port=free_port())
    relay = CuttingRelay(broker.sub_port, hold=1.0)
    ident = Identity(home, tmp_path, "rs33flap")
    ep = None
    try:
        ep = EndpointProc(tmp_path, home.root, None, "--broker", f"127.0.0.1:{relay.port}",
                          "--ipv4", "127.0.0.1/8", *ident.endpoint_args())  # fmt: skip
        ep.wait_log("Broker subscription finished", timeout=30)
        start = relay.accepted[0]
        # the rate of reconnects is what is measured, over 20 s from the first connection
        # (not from the log line: seen 1 s or more after it at load 15, a reconnect at the
        # end of the sleep fell past start + 21 s, the window's old bound)
        time.sleep(max(0.0, start + 20 - time.monotonic()))
        accepted = [t for t in relay.accepted if t - start <= 20]
        n = len(accepted)
        gaps = [b - a for a, b in itertools.pairwise(accepted)]
        # 1 s held + 0.25 s doubling to 5 s: ~7 in 20 s; before, every ~1.3 s: ~15
        assert n <= 10, (n, [round(g, 2) for g in gaps])
        assert max(gaps) > 4.0, gaps  # reached the cap
        said = [ln for ln in ep.text().splitlines() if "broker 127.0.0.1:" in ln
                or "Broker subscription finished" in ln]  # fmt: skip
        assert len(said) <= 6, said  # lost once, back twice, then quiet (before: 2 each time)
    finally:
        if ep is not None:
            ep.stop()
        relay.close()
        broker.stop()
