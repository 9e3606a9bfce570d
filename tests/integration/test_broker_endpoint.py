"""Broker mode end to end with real processes: `pktlab init` home -> `twistd pktbroker` +
`twistd pktendpoint --broker` (NoSubMode 0) + a controller publishing -> the endpoint
connects to the controller with the xdescr's sni_key and the experiment runs
(PROTOCOL.md §5.3, §1.4; BROKER-PROXY-OBSERVED.md §2)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity, RawClient
from testkit.poll import poll_until
from tls_world import TLSController, TLSEndpoint, controller_chain, home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome, key_id, raw_public_key
from packetlab.wire.vmem import SYS_BASE

home = home_fixture(scope="function")


broker = broker_world.broker_per_test


@pytest.fixture
def ctl(home: PktlabHome, tmp_path: Path) -> Iterator[TLSController]:
    chain = controller_chain(home, tmp_path / "chain")
    c = TLSController(chain, home.key_path("k_xc"), tmp_path)
    yield c
    c.close()


def refused(ep: TLSEndpoint, since: int) -> bool:
    """Refused since `since`: in its backoff. (Until session 33 each attempt had its line
    and this waited for two; now the first refusal is the one said.)"""
    return "cannot connect" in ep.output()[since:]


def endpoint(home: PktlabHome, broker: BrokerProcess, tmp_path: Path, *args: str) -> TLSEndpoint:
    """`twistd pktendpoint -c HOME/endpt.conf --broker 127.0.0.1:SUB` (no ADDR)."""
    ep = TLSEndpoint(home, f"--broker=127.0.0.1:{broker.sub_port}", tmp_path, *args)
    return ep


class Publisher:
    """pktxpmgr's publication (xcerts leaf first, then xpub, lockstep) over raw frames."""

    def __init__(self, home: PktlabHome, broker: BrokerProcess, xdescr: bytes) -> None:
        self.client = RawClient(
            broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc")
        )
        for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):
            self.client.send(wire.Xcert(home.certificate(name).der))
            assert self.client.recv() == wire.Result(0)
        eop = home.public_key("k_eop")
        self.client.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xdescr))
        assert self.client.recv() == wire.Result(0)

    def close(self) -> None:
        self.client.close()


def test_published_experiment_runs_on_the_subscribed_endpoint(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    ep = endpoint(home, broker, tmp_path)
    try:
        ep.wait_log("Broker subscription finished")
        pub = Publisher(home, broker, f"controller_addr={ctl.address};sni_key=brk1;".encode())
        c = ctl.accept()
        c.start()
        assert len(c.mread(SYS_BASE, 8)) == 8
        c.close()
        out = ep.wait_log("experiment #1 over")
        assert "sni_key brk1" in out
        pub.close()
    finally:
        ep.stop()


def xd(ctl: TLSController, sni: str, extra: str = "") -> bytes:
    return f"{extra}controller_addr={ctl.address};sni_key={sni};".encode()


def test_non_matching_dattr_is_not_run(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    ep = endpoint(home, broker, tmp_path, "--set", "EndpointAttr=endpoint_country=GBR;")
    try:
        ep.wait_log("Broker subscription finished")
        usa = Publisher(home, broker, xd(ctl, "usa", "endpoint_country=USA;"))
        with pytest.raises(TimeoutError):
            ctl.accept(timeout=1.5)
        gbr = Publisher(home, broker, xd(ctl, "gbr", "endpoint_country=G?R;"))
        c = ctl.accept()
        c.start()
        c.close()
        ep.wait_log("experiment #1 over")
        assert "sni_key usa" not in ep.output()
        usa.close()
        gbr.close()
    finally:
        ep.stop()


def test_broker_restart_every_endpoint_resubscribes_within_10s(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    for i in range(3):
        (tmp_path / f"ep{i}").mkdir()
    # three endpoints of one operator, each with its own key (the broker tells them apart
    # by agent key: one key gets each xdescr once)
    eps = [
        endpoint(
            home, broker, tmp_path / f"ep{i}", *Identity(home, tmp_path, f"ep{i}").endpoint_args()
        )
        for i in range(3)
    ]
    try:
        for ep in eps:
            ep.wait_log("Broker subscription finished")
        stopped = [len(ep.output()) for ep in eps]
        broker.stop()
        for ep, mark in zip(eps, stopped, strict=True):  # each backs off, refused
            poll_until(
                functools.partial(refused, ep, mark),
                what=f"a refused attempt in {ep.logfile}",
            )
        marks = [len(ep.output()) for ep in eps]
        restarted = time.monotonic()
        broker.start()
        for ep, mark in zip(eps, marks, strict=True):
            deadline = restarted + 10
            while "Broker subscription finished" not in ep.output()[mark:]:
                assert time.monotonic() < deadline, ep.output()[-3000:]
                time.sleep(0.05)
        took = time.monotonic() - restarted
        assert took < 10
        # and the new broker's publications reach them
        pub = Publisher(home, broker, xd(ctl, "afterrestart"))
        for _ in eps:
            c = ctl.accept()
            c.start()
            c.close()
        pub.close()
    finally:
        for ep in eps:
            ep.stop()


def test_higher_priority_preempts_with_suspd_and_the_first_resumes(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    ep = endpoint(home, broker, tmp_path)
    try:
        ep.wait_log("Broker subscription finished")
        pa = Publisher(home, broker, xd(ctl, "prioa", "exp_priority=1;"))
        a = ctl.accept()
        a.start()
        first = a.mread(SYS_BASE, 8)
        pb = Publisher(home, broker, xd(ctl, "priob", "exp_priority=5;"))
        assert a.recv() == wire.Suspd()
        a.send(wire.Mread(addr=SYS_BASE, len=8))  # held while suspended
        b = ctl.accept()
        b.start()
        b.mread(SYS_BASE, 8)
        assert a.quiet(0.3) == []  # still suspended: no answer
        b.close()
        assert a.recv() == wire.Resumd()
        again = a.response()
        assert isinstance(again, wire.Mdata) and len(again.data) == len(first)
        a.close()
        out = ep.wait_log("experiment #1 over")
        assert "experiment #1 pre-empted: suspd" in out and "experiment #1 resumed" in out
        pa.close()
        pb.close()
    finally:
        ep.stop()


def test_two_experiments_at_once(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    ep = endpoint(home, broker, tmp_path, "--max-experiments", "2")
    try:
        ep.wait_log("Broker subscription finished")
        p1 = Publisher(home, broker, xd(ctl, "conc1"))
        p2 = Publisher(home, broker, xd(ctl, "conc2"))
        c1 = ctl.accept()
        c2 = ctl.accept()
        c1.start()
        c2.start()
        # each has its own socket table: both open sktid 0
        for c in (c1, c2):
            c.ok(
                wire.Nopen(sktid=0, family=4, proto=17, rbufsz=65536, laddr=b"\x7f\0\0\1", lport=0)
            )
        for c in (c1, c2):
            c.close()
        ep.wait_log("experiment #2 over")
        p1.close()
        p2.close()
    finally:
        ep.stop()


def test_yield_runs_the_same_xdescr_again_after_its_hint(
    home: PktlabHome, broker: BrokerProcess, ctl: TLSController, tmp_path: Path
) -> None:
    ep = endpoint(home, broker, tmp_path)
    try:
        ep.wait_log("Broker subscription finished")
        pub = Publisher(home, broker, xd(ctl, "yieldy"))
        c = ctl.accept()
        c.start()
        t0 = time.monotonic()
        c.ok(wire.Yield(rhint=time.time_ns() + 1_000_000_000))
        c.close()
        again = ctl.accept()  # the same experiment, from the start
        assert time.monotonic() - t0 >= 0.9
        again.start()
        again.close()
        out = ep.wait_log("experiment #1 over: controller closed")
        assert out.count("experiment #1: connecting to controller") == 2
        pub.close()
    finally:
        ep.stop()


def test_priority_above_the_controller_chain_max_is_refused(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    from packetlab.ppks import CertLimits

    chain = controller_chain(home, tmp_path / "lim", limits=CertLimits(max_num_priority=3))
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    ep = endpoint(home, broker, tmp_path)
    try:
        ep.wait_log("Broker subscription finished")
        pub = Publisher(home, broker, xd(ctl, "toohigh", "exp_priority=5;"))
        try:  # refused right after the handshake (the abort may beat our handshake end)
            assert ctl.accept().closed_by_peer()
        except OSError:
            pass
        out = ep.wait_log("experiment #1 over")
        assert "max_num_priority" in out
        pub.close()
    finally:
        ep.stop()
        ctl.close()
