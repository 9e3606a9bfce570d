"""``--log-level warn`` with the real daemons (session 34, acct34): each still says that it
started (twistd's version line), where it listens or connects, and that it stopped, and
nothing else below warn. Before, a daemon at warn wrote nothing at all from start to stop
(loglevel32 found it and left it): an operator could not tell it was up. At `critical`
the lines are gone too."""

from __future__ import annotations

from pathlib import Path

from broker_world import BrokerProcess, free_ports
from conftest import twistd
from pxworld import Proc
from test_loglvl32_daemons import ORDER, events, level_of, wait_listening
from tls_world import TLSController, TLSEndpoint, controller_chain, home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome
from packetlab.wire.constants import Proto

LO = b"\x7f\x00\x00\x01"
STARTED = ") starting up."  # twistd's "twistd 26.10.0 (/usr/bin/python3 3.11.7) starting up."
STOPPED = "Server Shut Down."

home = home_fixture(command=False)


def assert_warn(lines: list[str], start_stop: list[str]) -> None:
    """`lines` (a daemon's events at warn) hold each of `start_stop`, in that order, once;
    every other line is a warning or worse."""
    said = [next((i for i, line in enumerate(lines) if text in line), -1) for text in start_stop]
    assert -1 not in said and said == sorted(said), (start_stop, "\n".join(lines))
    others = [line for i, line in enumerate(lines) if i not in said]
    low = [line for line in others if ORDER.index(level_of(line)) < ORDER.index("warn")]
    assert not low, "\n".join(lines)


def test_endpoint_at_warn_says_where_it_connects(home: PktlabHome, tmp_path: Path) -> None:
    chain = controller_chain(home, tmp_path / "chain")
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    ep = TLSEndpoint(home, ctl.address, tmp_path, "--sessions", "1", "--log-level", "warn")
    try:
        c = ctl.accept()  # a session with a few requests: its info lines are left out
        c.start()
        c.ok(wire.Nopen(1, 4, int(Proto.UDP), 65536, LO, 0))
        c.mread(0x10000000, 8)
        c.close()
        ep.proc.wait(30)  # --sessions 1: it stops after it
    finally:
        ep.stop()
        ctl.close()
    lines = events(ep.output())
    where = f"pktendpoint: NoSub mode, connecting to controller {ctl.address} over TLS"
    assert_warn(lines, [STARTED, where, "ran 1 session(s) as asked; stopping", STOPPED])


def test_broker_at_warn_says_where_it_listens(home: PktlabHome, tmp_path: Path) -> None:
    # (BrokerProcess waits for the status page's line: at warn before, it never came)
    broker = BrokerProcess(home, tmp_path, "--log-level", "warn")
    broker.stop()
    lines = events(broker.output())
    start = [f"port listening on 127.0.0.1:{p}" for p in (broker.pub_port, broker.sub_port)]
    start.sort(key=lambda text: broker.output().index(text))  # (listened to in turn)
    stop = ["Received SIGTERM, shutting down.", "pktbroker stopping; since", STOPPED]
    assert_warn(lines, [STARTED, *start, "pktbroker status page on http", *stop])


def proxy(home: PktlabHome, tmp_path: Path, level: str) -> list[str]:
    setup, endpoints = free_ports(2)
    argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktproxy", "--home",
            str(home.root), "--setup",
            f"tcp:{setup}:interface=127.0.0.1", "--endpoints",
            f"tcp:{endpoints}:interface=127.0.0.1", "--stats-interval", "0", "--log-level",
            level]  # fmt: skip
    p = Proc(argv, tmp_path / f"pktproxy-{level}.log", tmp_path)
    try:
        wait_listening([setup, endpoints])
    finally:
        p.stop()
    return events(p.text())


def test_proxy_at_warn_says_where_it_listens_and_at_critical_nothing(
    home: PktlabHome, tmp_path: Path
) -> None:
    lines = proxy(home, tmp_path, "warn")
    start = ["setup port listening on", "endpoints port listening on"]
    stop = ["Received SIGTERM, shutting down.", "stopping: registrations=", STOPPED]
    assert_warn(lines, [STARTED, *start, *stop])
    assert proxy(home, tmp_path, "critical") == []
