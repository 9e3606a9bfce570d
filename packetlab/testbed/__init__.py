"""Network-namespace testbeds for tests, demos and benchmarks.

from packetlab.testbed import Testbed, chain

with Testbed(chain(hops=2)) as tb:          # ep — r1 — r2 — tg
    tb.run("ep", ["ip", "route"])
    with tb.enter("ep"):                     # this thread is now in ep's namespace
        ...                                  # sockets made here live there
    rtt = tb.call("ep", icmp_echo, tb.addr("tg", 6))
"""

from packetlab.testbed.netns import NetNS, TestbedError, list_netns
from packetlab.testbed.testbed import (
    PREFIX,
    Testbed,
    TestbedInfo,
    down_all,
    down_by_name,
    list_testbeds,
    missing_parts,
    orphan_namespaces,
    testbed,
)
from packetlab.testbed.topology import Interface, Link, Route, Shape, Topology, TopologyError, chain

__all__ = [
    "PREFIX",
    "Interface",
    "Link",
    "NetNS",
    "Route",
    "Shape",
    "Testbed",
    "TestbedError",
    "TestbedInfo",
    "Topology",
    "TopologyError",
    "chain",
    "down_all",
    "down_by_name",
    "list_netns",
    "list_testbeds",
    "missing_parts",
    "orphan_namespaces",
    "testbed",
]
