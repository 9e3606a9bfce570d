"""``--log-level`` with the real daemons (session 32, loglvl32): the lines each writes for
a few sessions at ``debug`` (what twistd wrote before the option: every event) and at the
default ``info``, counted in the log file. An endpoint session over TLS with a few
requests, a broker publish + subscribe, a proxy xreg + relay; each round's lines counted
from the line that says the daemon listens (or connects) to the first line of its stop."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

from broker_world import BrokerProcess, Identity, free_ports, publish_raw
from conftest import twistd
from pxworld import Proc, client_hello, closed_by_peer, register
from tls_world import TLSController, TLSEndpoint, controller_chain, home_fixture, udp_sink

from packetlab import wire
from packetlab.ppks import PktlabHome
from packetlab.wire.constants import Proto

ROUNDS = 3
LO = b"\x7f\x00\x00\x01"
LEVELS = {"debug": ["--log-level", "debug"], "info (default)": []}

home = home_fixture(command=False)


def events(text: str) -> list[str]:
    """The log's events: a line starting with twistd's timestamp (a traceback's lines
    continue the event before them)."""
    return [line for line in text.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]


def between(lines: list[str], start: str, stop: str) -> list[str]:
    """The events after the first holding `start` (all if none does), before the first
    holding `stop`."""
    first = next((i for i, line in enumerate(lines) if start in line), -1)
    end = next((i for i, line in enumerate(lines) if stop in line), len(lines))
    return lines[first + 1 : end]


def wait_count(read: Callable[[], str], text: str, count: int, timeout: float = 30.0) -> None:
    """Until `text` is `count` times in what `read` returns (a log)."""
    deadline = time.monotonic() + timeout
    while read().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not {count} times in:\n{read()}"
        time.sleep(0.05)


def wait_listening(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(listening(port) for port in ports):
        assert time.monotonic() < deadline, f"nothing listens on {ports}"
        time.sleep(0.05)


def level_of(line: str) -> str:
    """The level twistd wrote; ``[-]`` is a legacy `log.msg` (info)."""
    found = re.search(r"#(\w+)\] ", line)
    return found.group(1) if found else "info"


def report(daemon: str, got: dict[str, list[str]]) -> None:
    """What the test measured, for `pytest -s` (docs/usability.md quotes it)."""
    for level, lines in got.items():
        debug = sum(level_of(line) == "debug" for line in lines)
        print(f"{daemon} {level}: {len(lines)} lines in {ROUNDS} rounds ({debug} debug)")


ORDER = ["debug", "info", "warn", "error", "critical"]


def assert_filtered(low: list[str], high: list[str], level: str) -> None:
    """`high`, the run at `level`, has the lines of `low` (a lower level) at `level` or
    above, and more than `ROUNDS` lines of `low` were below it."""
    keep = ORDER.index(level)
    both = "\n".join(low) + "\n---\n" + "\n".join(high)
    assert all(ORDER.index(level_of(line)) >= keep for line in high), both
    below = [line for line in low if ORDER.index(level_of(line)) < keep]
    assert len(below) >= ROUNDS, both
    assert len(high) == len(low) - len(below), both


def test_endpoint_sessions_at_debug_and_info(home: PktlabHome, tmp_path: Path) -> None:
    chain = controller_chain(home, tmp_path / "chain")
    sink, port = udp_sink()
    got: dict[str, list[str]] = {}
    try:
        for level, args in LEVELS.items():
            ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
            ep = TLSEndpoint(home, ctl.address, tmp_path, "--sessions", str(ROUNDS), *args)
            try:
                for _ in range(ROUNDS):  # start, nopen, two nsends, an mread, the close
                    c = ctl.accept()
                    c.start()
                    c.ok(wire.Nopen(1, 4, int(Proto.UDP), 65536, LO, 0))
                    for _ in range(2):
                        c.ok(wire.Nsend(1, 4, int(Proto.UDP), 0, 0, b"x" * 100, LO, port))
                    c.mread(0x10000000, 8)
                    c.close()
                ep.proc.wait(30)  # --sessions: it stops after the last one
            finally:
                ep.stop()
                ctl.close()
            lines = events(ep.output())
            got[level] = between(lines, "reactor class:", "Main loop terminated")
    finally:
        sink.close()
    report("pktendpoint", got)
    assert_filtered(got["debug"], got["info (default)"], "info")


def test_broker_publish_and_subscribe_at_debug_and_info(home: PktlabHome, tmp_path: Path) -> None:
    got: dict[str, list[str]] = {}
    for n, (level, args) in enumerate(LEVELS.items()):
        workdir = tmp_path / f"b{n}"
        workdir.mkdir()
        broker = BrokerProcess(home, workdir, *args)
        try:
            for i in range(ROUNDS):
                sub = Identity(home, workdir, f"s{i}").subscribe(broker.sub_port)
                xd = f"controller_addr=127.0.0.1:9;sni_key=k{i};".encode()
                pub = publish_raw(home, broker, xd)
                note = sub.recv()
                assert isinstance(note, wire.Xnotify) and note.xdescr == xd
                sub.close()
                pub.close()
                wait_count(broker.output, "publisher closed the connection", i + 1)
        finally:
            broker.stop()
        lines = events(broker.output())
        got[level] = between(lines, "status page on http", "Received SIGTERM")
    report("pktbroker", got)
    assert_filtered(got["debug"], got["info (default)"], "info")


def listening(port: int) -> bool:
    """Something listens on 127.0.0.1:`port` (found by binding it: a connection would be
    a line of the proxy's log)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_proxy_xreg_and_relay_at_info_and_warn(home: PktlabHome, tmp_path: Path) -> None:
    """A round: a manager's xreg, an endpoint relayed to it, and an endpoint whose snikey
    has no backlog (refused: a warning). The proxy logs no debug event on these: the
    levels that differ here are info and warn."""
    got: dict[str, list[str]] = {}
    for level, args in {"info (default)": [], "warn": ["--log-level", "warn"]}.items():
        setup, endpoints = free_ports(2)
        argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktproxy", "--home",
                str(home.root), "--setup", f"tcp:{setup}:interface=127.0.0.1", "--endpoints",
                f"tcp:{endpoints}:interface=127.0.0.1", "--stats-interval", "0", *args]  # fmt: skip
        proxy = Proc(argv, tmp_path / f"pktproxy-{level[:4]}.log", tmp_path)
        try:
            wait_listening([setup, endpoints])
            for i in range(ROUNDS):
                backlog = register(setup, f"relay{i}")
                hello = client_hello(f"relay{i}")
                ep = socket.create_connection(("127.0.0.1", endpoints), timeout=10)
                ep.sendall(hello)
                got_hello = b""
                while len(got_hello) < len(hello):
                    got_hello += backlog.recv(65536)
                backlog.sendall(b"answer")
                ep.settimeout(10)
                assert ep.recv(100) == b"answer"
                ep.shutdown(socket.SHUT_WR)
                assert closed_by_peer(backlog) == b""
                backlog.close()
                assert closed_by_peer(ep) == b""
                ep.close()
                lost = socket.create_connection(("127.0.0.1", endpoints), timeout=10)
                lost.sendall(client_hello(f"nobody{i}"))
                closed_by_peer(lost)  # (an alert: unrecognized_name)
                lost.close()
            wait_count(proxy.text, "nobody", ROUNDS)
        finally:
            proxy.stop()
        # (from its last start line: at warn the start lines are kept, `reactor class:` is
        # not; session 34)
        got[level] = between(
            events(proxy.text()), "endpoints port listening on", "Received SIGTERM"
        )
    report("pktproxy", got)
    assert_filtered(got["info (default)"], got["warn"], "warn")
    assert sum("nobody" in line for line in got["warn"]) == ROUNDS
