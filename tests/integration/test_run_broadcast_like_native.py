"""`pktlab run ping|traceroute|sendgap` to a broadcast address (loopback's own,
127.255.255.255, which every host has) beside iputils ping and traceroute (session 32,
ops32). Before: `no route to 127.255.255.255: Permission denied` (the shared route
lookup's EACCES), exit 2 in all three; traceroute exits 1 there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, native

pytestmark = [pytest.mark.root]
BROADCAST = "127.255.255.255"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"bc32{os.getpid() % 10000}-")


def test_ping_asks_as_iputils_and_exits_2() -> None:
    theirs = native("ping", "-n", "-c", "1", "-W", "1", BROADCAST)
    ours = pktlab_run("ping", "-n", "-c", "1", "-W", "1", BROADCAST)
    assert theirs.stderr.startswith("ping: Do you want to ping broadcast? Then -b.")
    assert (ours.returncode, ours.stdout) == (theirs.returncode, "") == (2, "")
    assert ours.stderr == (
        f"pktlab run ping: Do you want to ping broadcast? {BROADCAST} is one, and ping -b's "
        "SO_BROADCAST is not a PacketLab socket option\n"
    )


def test_traceroute_says_connect_permission_denied_and_exits_1() -> None:
    theirs = native("traceroute", "-n", "-m", "1", "-q", "1", "-w", "1", BROADCAST)
    ours = pktlab_run("traceroute", "-n", "-m", "1", "-q", "1", "-w", "1", BROADCAST)
    assert theirs.stderr.strip().endswith("connect: Permission denied")
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == (
        f"pktlab run traceroute: connect: Permission denied ({BROADCAST} is a broadcast address)\n"
    )


def test_sendgap_names_the_broadcast_address() -> None:
    ours = pktlab_run("sendgap", "--to", f"{BROADCAST}:9", "--count", "2", "--trains", "1")
    assert (ours.returncode, ours.stdout) == (2, "")
    assert ours.stderr == (
        f"pktlab run sendgap: {BROADCAST} is a broadcast address (sending there takes "
        "SO_BROADCAST, which is not a PacketLab socket option)\n"
    )
