"""Per-address shares over IPv6 beyond the /64 (session 33, share33), against a real
`twistd pktbroker` in a network namespace of our own: many source addresses of one /48
on its loopback, and link-local peers on a veth.

Before, an IPv6 source was its /64 only: the /64s of one /48 each had their own share and
together took the whole subscribe port; every link-local peer, of any interface, was the
one source fe80::/64. Now a /48 (one link's link-local peers) holds two addresses' shares
and a link-local peer is its address and zone (packetlab/addrshare.py)."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from broker_world import BrokerProcess, Identity, RawClient, publish_raw
from tls_world import home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome

home = home_fixture()
T = TypeVar("T")

FLOOD = "2001:db8:33"  # the /48 of the flood: /64s 1..3, 10 addresses each
OTHER = "2001:db8:34::1"  # a host of another /48
VETH = "s33d"  # the interface of the link-local peers (a veth: no dummy module here)
SUB_PORT = 20556  # the namespace is ours: any port is free
XD = b"controller_addr=127.0.0.1:9;sni_key=share33;"


def _ip(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", *argv], input=stdin, text=True, check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace of our own with the flood's /48 and another /48 on its loopback and
    link-local addresses on a veth; deleted after (its processes gone)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs ip(8) and root for a network namespace")
    name = f"share33-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"no network namespace here: {e.stderr.strip()}")
    try:
        batch = [
            "link set lo up",
            f"link add {VETH} type veth peer name {VETH}p",
            f"link set {VETH}p up",
            f"link set {VETH} up",
            f"addr add {OTHER}/128 dev lo nodad",
        ]
        batch += [
            f"addr add {FLOOD}:{n}::{h:x}/128 dev lo nodad" for n in (1, 2, 3) for h in range(1, 11)
        ]
        batch += [f"addr add fe80::33:{h}/64 dev {VETH} nodad" for h in (1, 2, 3)]
        _ip("-n", name, "-batch", "-", stdin="\n".join(batch) + "\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def inside(name: str) -> ThreadPoolExecutor:
    """One thread in namespace `name`: sockets it makes are the namespace's (setns moves
    the calling thread only), used from any thread after."""
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    return ThreadPoolExecutor(1, initializer=enter)


def broker_in(name: str, home: PktlabHome, tmp: Path, nofile: int) -> BrokerProcess:
    return BrokerProcess(
        home,
        tmp,
        "--subscribe",
        f"tcp6:{SUB_PORT}",
        sub_port=SUB_PORT,
        error_delay=0,
        prefix=["ip", "netns", "exec", name, "prlimit", f"--nofile={nofile}", "--"],
    )


def subscribe(
    pool: ThreadPoolExecutor, who: Identity, source: str, host: str = "::1"
) -> RawClient | None:
    """One link from `source` subscribing to the public channel: kept open if answered
    result 0, else (refused, closed by the broker) None."""
    made = pool.submit(RawClient, SUB_PORT, who.cert_path, who.key_path, source=source, host=host)
    c = made.result()
    c.send(wire.Xsub([b"public"], bytes(32), b""))
    if c.recv() == wire.Result(0):
        return c
    assert c.closed_by_peer()
    c.close()
    return None


def share_lines(b: BrokerProcess) -> list[str]:
    return [line for line in b.output().splitlines() if "its share" in line]


def test_the_64s_of_one_48_hold_two_shares_and_another_48_subscribes(
    home: PktlabHome, tmp_path: Path, netns: str
) -> None:
    """`ulimit -n 512`: 144 subscribed links, 64 per address. 150 subscriptions from 30
    addresses in three /64s of one /48: before, 144 taken (50 + 50 + 44, the whole port)
    and a host of another /48 refused for the port's cap; now 128 (the /48's two
    shares), 22 refused with one line naming the /48, and the other host subscribes and
    is notified of a publication."""
    b = broker_in(netns, home, tmp_path, 512)
    pool = inside(netns)
    links: list[RawClient] = []

    def run(f: Callable[[], T]) -> T:
        return pool.submit(f).result()

    try:
        found = re.search(
            r"at most (\d+) subscribed and \d+ publishing links at once, (\d+) and \d+ from "
            r"one address",
            b.wait_log("descriptor limit"),
        )
        assert found is not None and found.group(1, 2) == ("144", "64"), found
        flood = Identity(home, tmp_path, "flood")
        refused = 0
        for n in (1, 2, 3):
            for i in range(50):
                c = subscribe(pool, flood, f"{FLOOD}:{n}::{i % 10 + 1:x}")
                refused += c is None
                links += [c] if c is not None else []
        assert (len(links), refused) == (128, 22)
        lines = share_lines(b)
        assert len(lines) == 1, lines  # one line for the /48 a minute
        assert f"address {FLOOD}::/48 holds 128 subscribed links, its share (128: " in lines[0]
        assert "[one line per /48 a 60 s]" in lines[0]
        me = Identity(home, tmp_path, "good")  # an endpoint on its EOp's channel
        good = run(lambda: RawClient(SUB_PORT, me.cert_path, me.key_path, source=OTHER, host="::1"))
        links.append(good)
        good.send(wire.Xcert(me.subcmd.der), wire.Xsub([me.channel], me.eopkey, b""))
        assert [good.recv(), good.recv()] == [wire.Result(0)] * 2, b.output()[-2000:]
        links.append(run(lambda: publish_raw(home, b, XD)))
        note = good.recv()
        assert isinstance(note, wire.Xnotify) and note.xdescr == XD
    finally:
        for c in links:
            c.close()
        b.stop()
        pool.shutdown()


def test_link_local_peers_are_each_their_own_address(
    home: PktlabHome, tmp_path: Path, netns: str
) -> None:
    """`ulimit -n 128`: 24 subscribed links, 12 per address. One link-local peer asks for
    14: 12 taken, 2 refused, the line naming it with its zone; another peer of the same
    link then takes its own 12. Before: both were fe80::/64, the second refused all 12."""
    b = broker_in(netns, home, tmp_path, 128)
    pool = inside(netns)
    links: list[RawClient] = []

    def run(f: Callable[[], T]) -> T:
        return pool.submit(f).result()

    try:
        b.wait_log("descriptor limit")
        who = Identity(home, tmp_path, "lan")
        server = f"fe80::33:1%{VETH}"
        first = [subscribe(pool, who, f"fe80::33:2%{VETH}", server) for _ in range(14)]
        links += [c for c in first if c is not None]
        assert len(links) == 12
        lines = share_lines(b)
        assert len(lines) == 1 and f"address fe80::33:2%{VETH} holds 12 " in lines[0], lines
        second = [subscribe(pool, who, f"fe80::33:3%{VETH}", server) for _ in range(12)]
        links += [c for c in second if c is not None]
        assert len(links) == 24, b.output()[-2000:]
    finally:
        for c in links:
            c.close()
        b.stop()
        pool.shutdown()
