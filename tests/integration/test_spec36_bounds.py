"""xpub and xsub at and one past each of the broker's limits, as hand-built bytes over a
real TLS link to ``twistd pktbroker`` (session 36, spec36).

The same cases as ``tests/unit/broker/test_broker_at_limits.py`` (over fakes), here with
the daemon's own TLS and framing: a 64 KiB frame spans four TLS records, each message
goes as the reference sends it (header, then body, in records of their own: O §1.2).
PROTOCOL.md §5.2 (a channel is 1..32 bytes), §5.6 (controller_addr at most 255), §1.3
(the codes); each answer is checked as bytes, and the link goes on after each refusal
but the frame past the cap (closed, no answer).
"""

from __future__ import annotations

import broker_world
import pytest
from broker_world import BrokerProcess, RawClient
from testkit.brokerframes import BASE, channels, padded, pub, sub

from packetlab import wire
from packetlab.ppks import PktlabHome

home, broker = broker_world.home, broker_world.broker  # fixtures

OK = "40000000"

CASES = {
    "xdescr of 4096 bytes": ("pub", pub(padded(4096, BASE)), OK),
    "xdescr of 4097 bytes": ("pub", pub(padded(4097, BASE)), "40000002" + "0054"),
    "dattr of 4096 bytes": ("sub", sub(padded(4096)), OK),
    "dattr of 4097 bytes": ("sub", sub(padded(4097)), "40000002" + "0062"),
    "xsub of 64 channels": ("sub", sub(chlist=channels(64)), OK),
    "xsub of 65 channels": ("sub", sub(chlist=channels(65)), "40000002" + "0060"),
    "xpub of 64 channels": ("pub", pub(BASE, channels(64)), OK),
    "xpub of 65 channels": ("pub", pub(BASE, channels(65)), "40000002" + "0050"),
    "a channel of 33 bytes": ("pub", pub(BASE, b"\x21" + b"a" * 33), "40000002" + "0050"),
    "controller_addr of 255": ("pub", pub(b"controller_addr=" + b"a" * 249 + b":20600;"), OK),
    "controller_addr of 256": (
        "pub",
        pub(b"controller_addr=" + b"a" * 250 + b":20600;"),
        "40000002" + "0052",
    ),
    "exp_priority 2**32-1": ("pub", pub(BASE + f"exp_priority={2**32 - 1};".encode()), OK),
    "exp_priority 2**32": ("pub", pub(BASE + f"exp_priority={2**32};".encode()), "400000020053"),
    "a frame body of 65536": ("pub", pub(b"x" * (65536 - 40)), "40000002" + "0054"),
    "a frame body of 65537": ("pub", pub(b"x" * (65537 - 40)), ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_at_and_one_past_each_limit_on_the_real_broker(
    home: PktlabHome, broker: BrokerProcess, case: str
) -> None:
    role, data, answer = CASES[case]
    port = broker.pub_port if role == "pub" else broker.sub_port
    c = RawClient(port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
    try:
        c.send(data)  # header, then the body (TLS splits it at 16 KiB)
        if not answer:  # past the frame cap: closed, nothing read, no answer
            assert c.closed_by_peer(15), case
            return
        got = c.recv(15)
        assert wire.encode(got).hex() == answer, (case, got)  # type: ignore[arg-type]
        # the link goes on: a good frame of its role is answered SUCCESS
        again = pub(BASE) if role == "pub" else sub()
        c.send(again)
        assert wire.encode(c.recv(15)).hex() == OK, case  # type: ignore[arg-type]
    finally:
        c.close()
    assert "Traceback" not in broker.output()
