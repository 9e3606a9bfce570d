"""pytest fixtures for namespace testbeds.

Enable them in ``tests/conftest.py`` (or a test module)::

    pytest_plugins = ["packetlab.testbed.pytest_fixtures"]

Then::

    @pytest.mark.root
    def test_something(chain_testbed):         # ep — r1 — r2 — tg, torn down afterwards
        chain_testbed.call("ep", icmp_echo, chain_testbed.addr("tg"))

    @pytest.mark.root
    def test_other(testbed_factory):
        tb = testbed_factory(chain(1, shape=Shape.parse("1mbit")))

Both skip (with the reason) when not root or iproute2 is missing. Every testbed a test
made is torn down after it, whether it passed or failed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from packetlab.testbed.netns import TestbedError
from packetlab.testbed.testbed import Testbed
from packetlab.testbed.topology import Topology, chain


def skip_unless_testbed_possible() -> None:
    """pytest.skip with a clear reason where namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and raw sockets")
    if shutil.which("ip") is None and not os.path.exists("/usr/sbin/ip"):
        pytest.skip("needs the 'ip' command (Debian package iproute2)")


@pytest.fixture
def testbed_factory() -> Iterator[Callable[..., Testbed]]:
    """``make(topology=None, *, hops=2, name=None, tx_checksum_offload=False) -> Testbed``
    (already up; TX checksum offload off, see `Testbed`)."""
    made: list[Testbed] = []

    def make(
        topology: Topology | None = None,
        *,
        hops: int = 2,
        name: str | None = None,
        tx_checksum_offload: bool = False,
    ) -> Testbed:
        skip_unless_testbed_possible()
        topo = topology if topology is not None else chain(hops)
        tb = Testbed(topo, name=name, tx_checksum_offload=tx_checksum_offload)
        made.append(tb)
        return tb.up()

    yield make
    errors = []
    for tb in reversed(made):
        try:
            tb.down()
        except TestbedError as exc:
            errors.append(str(exc))
    if errors:
        raise TestbedError("; ".join(errors))


@pytest.fixture
def chain_testbed(testbed_factory: Callable[..., Testbed]) -> Testbed:
    """``ep — r1 — r2 — tg`` with IPv4 and IPv6, up for the test."""
    return testbed_factory(chain(2))
