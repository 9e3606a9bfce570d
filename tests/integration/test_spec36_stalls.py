"""Slow loris after the xsub/xpub, and the same cut frame a thousand times, against a
real ``twistd pktbroker`` (session 36, spec36).

Until the first xsub/xpub a link has IdleTimeout (session 18); after it a link may idle
for ever (BROKER-PROXY-OBSERVED.md §1.2: the endpoint sends nothing after its xsub),
and a link that then sent part of a frame and stopped was held for ever, with no line.
Now the frame must be whole within IdleTimeout: one line names the frame and how much
came, the link is closed (a publisher's publications end with it), and the broker
serves on. Repeated 1,000 times (subscribe, begin a frame, leave), the broker's memory
stays where it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity, RawClient, publish_raw

from packetlab import wire
from packetlab.ppks import PktlabHome

home = broker_world.home  # fixture

IDLE = 2.0  # the broker's IdleTimeout here (default 30)
REPEATS = 1000
RSS_GROWTH_KIB = 8 * 1024  # what 1,000 links that came and went may leave behind


@pytest.fixture(scope="module")
def broker(home: PktlabHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(
        home, tmp_path_factory.mktemp("stall36"), "--idle-timeout", f"{IDLE:g}", error_delay=0
    )
    yield b
    b.stop()


def _rss_kib(b: BrokerProcess) -> int:
    assert b.proc is not None
    status = Path(f"/proc/{b.proc.pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1])


def test_links_stalled_in_a_frame_after_subscribing_or_publishing_are_closed(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    mark = len(broker.output())
    sub = Identity(home, broker.workdir, "stall-sub").subscribe(broker.sub_port)
    pub = publish_raw(home, broker, b"controller_addr=127.0.0.1:9;sni_key=stall36;")
    assert isinstance(sub.recv(), wire.Xnotify)  # subscribed and published
    xcert = wire.encode(wire.Xcert(home.certificate("pubcmd_exper_xc").der))
    sub.sock.sendall(xcert[:10])  # a header and 6 bytes of body, then nothing
    pub.sock.sendall(xcert[:3])  # 3 of the 4 header bytes
    t0 = time.monotonic()
    assert sub.closed_by_peer(IDLE + 10) and pub.closed_by_peer(IDLE + 10)
    assert time.monotonic() - t0 < IDLE + 8
    text = broker.wait_log("(xcert, 10 of", since=mark)
    broker.wait_log("(xcert, 3 of its 4 header bytes) not finished", since=mark)
    broker.wait_log("reason=publisher closed the connection", since=mark)
    lines = [x for x in text[mark:].splitlines() if "not finished within" in x]
    assert any("subscribe link" in x and f"within {IDLE:g} s" in x for x in lines), lines
    # the broker serves on: a new subscriber and publisher meet
    good = Identity(home, broker.workdir, "stall-good").subscribe(broker.sub_port)
    again = publish_raw(home, broker, b"controller_addr=127.0.0.1:9;sni_key=after36;")
    assert good.recv() == wire.Xnotify(
        good_channel(home), b"controller_addr=127.0.0.1:9;sni_key=after36;"
    )
    assert "Traceback" not in broker.output()
    for c in (sub, pub, good, again):
        c.close()


def good_channel(home: PktlabHome) -> bytes:
    from packetlab.ppks import key_id

    return key_id(home.public_key("k_eop"))


def test_a_thousand_links_that_subscribe_and_leave_mid_frame_leave_no_memory(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """1,000 times: TLS, a public xsub, half an xcert, close. The broker's RSS after
    against after the first 100 (the warm-up: caches, allocator arenas)."""
    ident = Identity(home, broker.workdir, "repeat36")
    xsub = wire.encode(wire.Xsub([b"public36"], bytes(32), b""))
    xcert = wire.encode(wire.Xcert(home.certificate("pubcmd_exper_xc").der))
    warm = 0
    for i in range(REPEATS):
        c = RawClient(broker.sub_port, ident.cert_path, ident.key_path)
        c.send(xsub, split=False)
        assert c.recv() == wire.Result(0), i
        c.sock.sendall(xcert[:100])
        c.close()
        if i == 99:
            warm = _rss_kib(broker)
    ident.subscribe(broker.sub_port).close()  # answered: the closes before it were read
    grown = _rss_kib(broker) - warm
    print(f"broker RSS {warm} KiB after 100 links, +{grown} KiB after {REPEATS}")
    assert grown < RSS_GROWTH_KIB, f"RSS grew {grown} KiB over {REPEATS - 100} links"
    assert "Traceback" not in broker.output()
