"""BrokerProtocol over fakes: results in order, pipelined and split frames, delayed errors,
fan-out with backpressure, publication lifetime, bounded input."""

from __future__ import annotations

import time
from typing import Any, cast

from broker_fakes import tls_pair
from testkit.logs import captured_events
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from packetlab.broker.protocol import IDLE_TIMEOUT, MAX_FRAME, BrokerFactory, BrokerProtocol
from packetlab.broker.registry import Registry
from packetlab.broker.session import Role
from packetlab.broker.throttle import Throttle
from packetlab.clockstep import is_wall
from packetlab.wire import Framer, Result, Xcert, Xnotify, Xpub, Xsub, encode
from packetlab.wire.messages import Message

XD = b"controller_addr=127.0.0.1:20600;sni_key=abc;"
ZERO = bytes(32)


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.registry = Registry()
        self.throttle = Throttle(base=1.0, cap=8.0)
        self.factories = {
            r: BrokerFactory(r, self.registry, self.throttle, self.clock) for r in Role
        }

    def connect(self, role: Role, host: str = "10.0.0.1") -> tuple[BrokerProtocol, StringTransport]:
        p = self.factories[role].buildProtocol(None)
        t = StringTransport(peerAddress=IPv4Address("TCP", host, 1234))
        p.makeConnection(t)
        return p, t


def frames(t: StringTransport) -> list[Message]:
    out = list(Framer().feed(t.value()))
    t.clear()
    return out  # type: ignore[return-value]


def sub_frames(channel: bytes = b"public", dattr: bytes = b"") -> bytes:
    return encode(Xsub([channel], ZERO, dattr))


def test_pipelined_frames_split_anywhere_get_one_result_each_in_order() -> None:
    w = World()
    p, t = w.connect(Role.PUBLISH)
    data = encode(Xpub([b"public"], ZERO, XD)) + encode(Xpub([b"p2"], ZERO, b"controller_addr=h;"))
    for i in range(len(data)):  # one byte at a time
        p.dataReceived(data[i : i + 1])
    assert frames(t) == [Result(0), Result(0)]
    assert len(w.registry.publications) == 2


def test_subscriber_gets_live_publication_after_its_result() -> None:
    w = World()
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.dataReceived(sub_frames())
    assert frames(st) == [Result(0), Xnotify(b"public", XD)]
    # and a new publication goes out at once
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h2;")))
    assert frames(st) == [Xnotify(b"public", b"controller_addr=h2;")]


def test_error_answer_is_delayed_and_later_frames_wait_for_it() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    bad = encode(Xsub([b"x" * 32], ZERO, b""))  # private channel, no chain
    p.dataReceived(bad + sub_frames())
    assert t.value() == b"" and t.producerState == "paused"
    w.clock.advance(0.99)
    assert t.value() == b""
    w.clock.advance(0.02)
    assert frames(t) == [Result(0x61), Result(0)]  # ESUBBADCHN, then the good xsub
    assert t.producerState == "producing"
    # errors in a row wait twice as long each time
    p2, t2 = w.connect(Role.SUBSCRIBE, "10.0.0.9")
    p2.dataReceived(bad)
    w.clock.advance(1.01)
    p2.dataReceived(bad)
    w.clock.advance(1.9)
    assert frames(t2) == [Result(0x61)]
    w.clock.advance(0.2)
    assert frames(t2) == [Result(0x61)]


def test_malformed_xsub_gets_esubbadchl_and_the_link_stays() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(bytes([0x38, 0, 0, 3, 5, 1, 2]))  # chlist runs past the body
    w.clock.advance(1)
    assert frames(t) == [Result(0x60)]
    assert not t.disconnecting


def test_unknown_frame_gets_ectlnotsup_then_close() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(bytes([0x99, 0, 0, 0]) + sub_frames())
    w.clock.advance(1)
    assert frames(t) == [Result(0x11)]
    assert t.disconnecting
    assert not w.registry.subscribers  # the xsub after it was never taken


def test_xpub_on_the_subscribe_port_is_refused() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    w.clock.advance(1)
    assert frames(t) == [Result(0x11)] and t.disconnecting
    assert not w.registry.publications


def test_oversized_frame_closes_without_reading_it() -> None:
    w = World()
    p, t = w.connect(Role.PUBLISH)
    n = MAX_FRAME + 1
    p.dataReceived(bytes([0x31, n >> 16, (n >> 8) & 0xFF, n & 0xFF]) + b"\0" * 100)
    w.clock.advance(1)
    assert t.value() == b"" and t.disconnecting


def test_garbage_xcert_is_refused_with_the_chain_code() -> None:
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xcert(b"not a certificate")))
    w.clock.advance(1)
    assert frames(t) == [Result(0x51)]  # EPUBBADCHN


def test_publisher_close_ends_its_publications() -> None:
    w = World()
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert len(w.registry.publications) == 1
    pp.connectionLost(None)  # type: ignore[arg-type]
    assert not w.registry.publications
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.dataReceived(sub_frames())
    assert frames(st) == [Result(0)]


def test_pub_end_ends_the_publication() -> None:
    w = World()
    w.clock.advance(time.time())  # pub_end is checked against wall time too
    end = time.time_ns() + 10**10
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"pub_end=%d;" % end + XD)))
    assert len(w.registry.publications) == 1
    w.clock.advance(9.5)
    assert len(w.registry.publications) == 1
    w.clock.advance(1.0)
    assert not w.registry.publications


def test_slow_subscriber_queues_alone_and_gets_it_on_resume() -> None:
    w = World()
    slow, st = w.connect(Role.SUBSCRIBE, "10.0.0.2")
    fast, ft = w.connect(Role.SUBSCRIBE, "10.0.0.3")
    # distinct agents (the peer address stands in for the key on a plain link)
    slow.session.agent_key = b"S" * 32  # type: ignore[union-attr]
    fast.session.agent_key = b"F" * 32  # type: ignore[union-attr]
    slow.dataReceived(sub_frames())
    fast.dataReceived(sub_frames())
    frames(st), frames(ft)
    slow.pauseProducing()  # its transport is full
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(ft) == [Xnotify(b"public", XD)]
    assert st.value() == b""
    slow.resumeProducing()
    assert frames(st) == [Xnotify(b"public", XD)]


def test_queued_offer_of_an_ended_publication_is_dropped() -> None:
    w = World()
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.dataReceived(sub_frames())
    frames(st)
    sp.pauseProducing()
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    pp.connectionLost(None)  # type: ignore[arg-type]
    sp.resumeProducing()
    assert st.value() == b""


def test_idle_client_is_closed() -> None:
    w = World()
    _, t = w.connect(Role.SUBSCRIBE)
    w.clock.advance(IDLE_TIMEOUT + 0.1)
    assert t.disconnecting


def test_idle_timeout_is_the_factorys() -> None:
    """IdleTimeout / --idle-timeout: the deadline each port's links get."""
    w = World()
    f = BrokerFactory(Role.PUBLISH, w.registry, w.throttle, w.clock, idle_timeout=5.0)
    p = f.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.2", 1234))
    p.makeConnection(t)
    w.clock.advance(4.9)
    assert not t.disconnecting
    w.clock.advance(0.2)
    assert t.disconnecting


def test_subscribed_client_may_idle() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(sub_frames())
    w.clock.advance(IDLE_TIMEOUT * 10)
    assert not t.disconnecting


def test_fanout_sends_one_batch_per_reactor_turn_in_order() -> None:
    w = World()
    w.factories[Role.SUBSCRIBE].fanout.batch = 3
    subs = []
    for i in range(7):
        p, t = w.connect(Role.SUBSCRIBE, f"10.0.1.{i}")
        p.session.agent_key = bytes([i]) * 32  # type: ignore[union-attr]
        p.dataReceived(sub_frames())
        frames(t)
        subs.append(t)
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(
        encode(Xpub([b"public"], ZERO, XD))
        + encode(Xpub([b"public"], ZERO, b"controller_addr=h2;"))
    )
    got = [len(frames(t)) for t in subs]
    assert sum(got) == 3  # the first batch at once, the rest in later turns
    w.clock.advance(0)
    w.clock.advance(0)
    w.clock.advance(0)
    w.clock.advance(0)
    w.clock.advance(0)
    later = [frames(t) for t in subs]
    assert sum(got) + sum(len(f) for f in later) == 14
    for f in later:  # one link's notifications stay in publication order
        xds = [m.xdescr for m in f if isinstance(m, Xnotify)]
        assert xds == sorted(xds, key=lambda x: x != XD)


def test_idle_link_gives_back_its_tls_bio_buffers_after_the_result() -> None:
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    _client, server = tls_pair()  # real pyOpenSSL, after a handshake
    t._tlsConnection = server  # type: ignore[attr-defined]  # as TLSMemoryBIOProtocol has
    bios = (server._into_ssl, server._from_ssl)
    p.dataReceived(sub_frames())
    assert frames(t) == [Result(0)]
    assert (server._into_ssl, server._from_ssl) == bios
    w.clock.advance(0)  # the turn after the result
    assert (server._into_ssl, server._from_ssl) != bios
    assert not w.clock.getDelayedCalls() or all(c.getTime() > 0 for c in w.clock.getDelayedCalls())


def test_a_subscriber_that_never_reads_is_not_read_and_queues_each_publication_once() -> None:
    # Its transport is full (it does not read). It pipelines 200 xsubs: each would be
    # answered into the full transport and re-offer every live publication to its queue
    # (200 x 5 entries from 8 KB of input). Instead the broker stops reading it until it
    # takes data again, keeps at most one entry per live publication, and says so once.
    w = World()
    pp, _ = w.connect(Role.PUBLISH)
    for i in range(5):
        pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.dataReceived(sub_frames())
    assert frames(st)[0] == Result(0)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=late;")))
    assert frames(st) == [Xnotify(b"public", b"controller_addr=late;")]
    with captured_events() as events:
        sp.pauseProducing()  # the transport is full
        pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=later;")))
        pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=last;")))
        sp.dataReceived(sub_frames() * 200)
    assert st.value() == b"" and st.producerState == "paused"
    assert len(sp._queue or ()) <= len(w.registry.publications)
    said = events.lines(fmt="does not read")
    assert len(said) == 1 and "10.0.0.1" in said[0], said
    sp.resumeProducing()
    w.clock.advance(0)  # the frames already read are handled in a turn of their own
    assert frames(st) == [
        Xnotify(b"public", b"controller_addr=later;"),
        Xnotify(b"public", b"controller_addr=last;"),
    ]
    # The xsubs are read again, one at a time: each replaces the subscription after the
    # throttle's delay (test_a_repeated_xsub_on_one_link_waits_like_an_error_answer), and
    # its re-offers find everything delivered.
    w.clock.advance(1.01)
    assert frames(st) == [Result(0)]


def test_frames_that_arrive_while_an_error_answer_is_held_wait_for_it() -> None:
    # The reference endpoint sends each field as its own TLS record; a transport may hand
    # them over one by one after the link was paused for a held error answer.
    w = World()
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(encode(Xsub([b"x" * 32], ZERO, b"")))  # refused: held 1 s
    p.dataReceived(sub_frames())
    assert t.value() == b""
    w.clock.advance(1.01)
    assert frames(t) == [Result(0x61), Result(0)]


def test_live_publications_are_capped_broker_wide() -> None:
    # 64 per link, but links are free (self-signed agent certs): without a cap over all
    # links a publisher flood held ~12 KB per 4 KB publication for as long as it liked.
    w = World()
    w.registry.max_publications = 3
    links = [w.connect(Role.PUBLISH, f"10.0.1.{i}") for i in range(4)]
    for i, (p, _) in enumerate(links):
        p.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))
    w.clock.advance(1.01)
    assert [frames(t) for _, t in links] == [[Result(0)]] * 3 + [[Result(0x54)]]
    assert len(w.registry.publications) == 3
    links[0][0].connectionLost(None)  # type: ignore[arg-type]
    p, t = links[3]
    p.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=again;")))
    assert frames(t) == [Result(0)]


def test_a_publication_on_many_channels_caches_few_frames() -> None:
    # Each channel's xnotify differs only in its prefix; caching one 4 KB frame per channel
    # of a 64-channel publication kept 256 KB per publication.
    w = World()
    xd = b"controller_addr=h;pad=" + b"x" * 4000 + b";"
    subs = []
    for i in range(64):
        sp, st = w.connect(Role.SUBSCRIBE, f"10.0.2.{i}")
        sp.session.agent_key = bytes([i]) * 32  # type: ignore[union-attr]
        sp.dataReceived(sub_frames(b"ch%02d" % i))
        frames(st)
        subs.append(st)
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"ch%02d" % i for i in range(64)], ZERO, xd)))
    assert [frames(st) for st in subs] == [[Xnotify(b"ch%02d" % i, xd)] for i in range(64)]
    (pub,) = w.registry.publications.values()
    assert len(pub._frames) <= 4


def test_an_xcert_dated_in_year_0_gets_the_chain_code() -> None:
    # GeneralizedTime can say year 0; the date conversion raised ValueError, which escaped
    # the certificate parser and the xcert handler (a traceback, the link dropped).
    from ppks_factory import good, resign, tlv

    from packetlab.ppks import CertType

    validity = tlv(0x30, tlv(0x18, b"00000101000000Z") + tlv(0x18, b"21000101000000Z"))
    der = resign(
        good(CertType.PUBCMD, "exper", "xc"), "exper", lambda f: [*f[:4], validity, *f[5:]]
    )
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xcert(der)))
    assert frames(t) == [Result(0)]  # a well-formed certificate (it is valid from year 0)
    bad = resign(
        der, "exper", lambda f: [*f[:4], tlv(0x30, tlv(0x18, b"00000230000000Z") * 2), *f[5:]]
    )
    p.dataReceived(encode(Xcert(bad)))
    w.clock.advance(1.01)
    assert frames(t) == [Result(0x51)] and not t.disconnecting


def test_the_xcerts_of_one_chain_are_capped_in_bytes_too() -> None:
    # 32 xcerts of up to 64 KiB each were held per link until its xsub/xpub (2 MiB for
    # every connection, for 30 s); a real chain is a few certificates of ~400 bytes.
    from ppks_factory import cert

    big = cert("exppriv", "eop", "exper", limits="monitor=" + "ab" * 32 * 120 + ";").der
    assert 7000 < len(big) < 9000
    from packetlab.broker.session import MAX_XCERT_BYTES

    n = MAX_XCERT_BYTES // len(big)
    assert n < 32  # the count limit would not see it
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xcert(big)) * (n + 1))
    assert frames(t) == [Result(0)] * n
    w.clock.advance(1.01)
    assert frames(t) == [Result(0x51)] and t.disconnecting


def test_observed_delegated_subscription_and_xpmgr_publication() -> None:
    # BROKER-PROXY-OBSERVED.md §1.3 (SubPrivCertChainPath subcmd_eop2_ep,delpriv_eop_eop2:
    # xcerts in listed order, chlist = AKI of the last listed first, eopkey = k_eop) and
    # §3.2 (pktxpmgr: xcerts leaf first in lockstep, then the xpub with its xdescr field
    # order, globs, repeated names and pub_end in ns), the subscriber's frames split into
    # one TLS record per encoder piece: each message gets its one result, in order, and
    # the xnotify carries the xdescr bytes unchanged on the private channel.
    from ppks_factory import cert, key, pub

    from packetlab.ppks import key_id

    life = {"nb": 0, "na": 2**31 - 1}
    subcmd = cert("subcmd", "eop2", "ep", **life)
    delpriv = cert("delpriv", "eop", "eop2", del_type="reppriv", **life)
    k_eop, k_eop2 = key_id(key("eop")), key_id(key("eop2"))
    w = World()
    w.clock.advance(time.time())
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.session.agent_key = pub("ep")  # type: ignore[union-attr]
    dattr = b"hostid=pktendpt;endpoint_country=USA;"
    pieces = [
        encode(Xcert(subcmd.der))[:4],
        subcmd.der,
        encode(Xcert(delpriv.der))[:4],
        delpriv.der,
        encode(Xsub([k_eop, k_eop2], pub("eop"), dattr))[:4],
        bytes([32]) + k_eop + bytes([32]) + k_eop2 + b"\0",
        pub("eop"),
        dattr,
    ]
    for piece in pieces:
        sp.dataReceived(piece)
    assert frames(st) == [Result(0)] * 3
    pubcmd = cert("pubcmd", "exper", "xc", **life)
    exppriv = cert("exppriv", "eop", "exper", limits="max_num_priority=7;", **life)
    pp, pt = w.connect(Role.PUBLISH)
    pp.session.agent_key = pub("xc")  # type: ignore[union-attr]
    end = time.time_ns() + 30 * 10**9
    xd = (
        b"hostid=pktendpt*;endpoint_location=IO91*;endpoint_country=GBR;endpoint_country=USA;"
        b"exp_priority=7;pub_end=%d;controller_addr=127.0.0.1:20600;sni_key=pubsnikey1;" % end
    )
    for msg in (Xcert(pubcmd.der), Xcert(exppriv.der), Xpub([k_eop], pub("eop"), xd)):
        pp.dataReceived(encode(msg))
        assert frames(pt) == [Result(0)]
    assert frames(st) == [Xnotify(k_eop, xd)]


class _DrainingTransport(StringTransport):
    """A transport whose buffer fills with each write and drains before the write returns
    (the socket took it all meanwhile): pause, then resume, from inside `write`."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None:
            self.producer.pauseProducing()
            self.producer.resumeProducing()


def test_a_transport_that_pauses_and_resumes_inside_a_write_gets_everything_in_order() -> None:
    # The resume comes while the broker is still handling the xsub that wrote: it must not
    # start reading the link's next frames from in there (the frame iterator is in use).
    w = World()
    pp, _ = w.connect(Role.PUBLISH)
    for i in range(3):
        pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))
    p = w.factories[Role.SUBSCRIBE].buildProtocol(None)
    t = _DrainingTransport(peerAddress=IPv4Address("TCP", "10.0.0.5", 1234))
    p.makeConnection(t)
    from broker_fakes import make_world

    p.dataReceived(sub_frames() + encode(Xcert(make_world().subcmd.der)))  # both answered now
    assert frames(t) == [
        Result(0),
        *(Xnotify(b"public", b"controller_addr=h%d;" % i) for i in range(3)),
        Result(0),
    ]


def test_a_repeated_xsub_on_one_link_waits_like_an_error_answer() -> None:
    # Each xsub offers the subscriber every live publication of its channels again (5 ms
    # with 9,600 of them, for a 55-byte frame); the reference sends one per connection.
    # A second and later xsub replaces the subscription after the throttle's delay,
    # doubling, and nothing else of the link is read meanwhile.
    w = World()
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"b"], ZERO, XD)))
    p, t = w.connect(Role.SUBSCRIBE)
    p.dataReceived(sub_frames(b"a") + sub_frames(b"b") + sub_frames(b"c"))
    assert frames(t) == [Result(0)]
    assert t.producerState == "paused"
    w.clock.advance(0.99)
    assert frames(t) == []
    w.clock.advance(0.02)
    assert frames(t) == [Result(0), Xnotify(b"b", XD)]  # now subscribed to b
    w.clock.advance(1.9)
    assert frames(t) == []
    w.clock.advance(0.2)
    assert frames(t) == [Result(0)]
    (sub,) = w.registry.subscribers
    assert sub.channels == (b"c",) and t.producerState == "producing"


def test_an_xcert_with_a_5000_digit_limit_gets_the_chain_code() -> None:
    # int() refuses over 4,300 digits with ValueError, which escaped the certificate
    # parser and the xcert handler (a traceback, the link dropped).
    from ppks_factory import good, resign, tlv

    from packetlab.ppks import CertType

    def big_limit(exts: list[bytes]) -> list[bytes]:
        text = b"max_send_byte=" + b"9" * 5000 + b";"
        value = tlv(0x04, tlv(0x04, text))
        oid = tlv(0x06, bytes([0x2A, 0x03, 0x03]))  # 1.2.3.3, cert_limit
        return [*exts, tlv(0x30, oid + b"\x01\x01\xff" + value)]

    der = resign(good(CertType.EXPPRIV, "eop", "exper"), "eop", mutate_exts=big_limit)
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(encode(Xcert(der)))
    w.clock.advance(1.01)
    assert frames(t) == [Result(0x51)] and not t.disconnecting


def test_a_subscriber_that_never_reads_does_not_keep_ended_publications() -> None:
    # Its queue took one entry per publication offered and dropped the ended ones only
    # when it was drained: with publications coming and going, a subscriber that never
    # reads kept every one of them (xdescr, pairs, frames) for good.
    w = World()
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.dataReceived(sub_frames())
    frames(st)
    sp.pauseProducing()
    for i in range(1000):
        pp, _ = w.connect(Role.PUBLISH, f"10.0.3.{i % 250}")
        pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))
        pp.connectionLost(None)  # type: ignore[arg-type]
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=live;")))
    assert len(sp._queue or ()) <= 2 * len(w.registry.publications) + 64
    sp.resumeProducing()
    assert frames(st) == [Xnotify(b"public", b"controller_addr=live;")]


def _expiring_subscriber(w: World, not_after: int) -> tuple[BrokerProtocol, StringTransport]:
    """A subscriber on its EOp's private channel and on "public", proven by a subcmd
    that expires at `not_after` (s, on the world's clock)."""
    from packetlab.ppks import generate_private_key, issue_certificate, key_id, raw_public_key

    eop, ep = generate_private_key(), generate_private_key()
    subcmd = issue_certificate("subcmd", eop, ep, 0, not_after)
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.session.agent_key = raw_public_key(ep)  # type: ignore[union-attr]
    xsub = Xsub([key_id(eop), b"public"], raw_public_key(eop), b"")
    sp.dataReceived(encode(Xcert(subcmd.der)) + encode(xsub))
    assert frames(st) == [Result(0), Result(0)]
    return sp, st


def test_a_subscription_ends_when_its_certificate_chain_expires() -> None:
    # A fresh xsub with that chain would get ESUBBADCHN once it expired (§5.5); the
    # subscriber sends nothing after its xsub, so the broker ends the subscription and
    # closes the link: it reconnects with its chain (renewed, or refused).
    w = World()
    now = int(time.time())  # the chain is valid on the clock and on the wall clock
    w.clock.advance(now)
    sp, st = _expiring_subscriber(w, now + 100)
    assert is_wall(sp._sub_expiry)  # on its wall moment across a clock step (clockstep)
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h1;")))
    assert frames(st) == [Xnotify(b"public", b"controller_addr=h1;")]
    w.clock.advance(99.9)
    assert not st.disconnecting and len(w.registry.subscribers) == 1
    with captured_events() as events:
        w.clock.advance(0.2)
    assert st.disconnecting and not w.registry.subscribers
    pp.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h2;")))
    assert frames(st) == []  # no longer delivered
    [line] = events.lines("subscription expired")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 100))
    assert f"its certificate chain expired at {now + 100} ({when}); closing" in line
    assert not [
        c for c in w.clock.getDelayedCalls() if cast(Any, c).func == sp._subscription_expired
    ]


def test_a_later_xsub_replaces_the_expiry_timer_of_the_link() -> None:
    # One timer per link: a second xsub (public channels only, no chain) replaces the
    # subscription, and the first chain's expiry no longer ends anything.
    w = World()
    now = int(time.time())  # the chain is valid on the clock and on the wall clock
    w.clock.advance(now)
    sp, st = _expiring_subscriber(w, now + 100)
    sp.dataReceived(sub_frames())
    w.clock.advance(1.01)  # a repeated xsub waits for the throttle's delay
    assert frames(st) == [Result(0)]
    w.clock.advance(200)
    assert not st.disconnecting and len(w.registry.subscribers) == 1
    timers = [c for c in w.clock.getDelayedCalls() if cast(Any, c).func == sp._subscription_expired]
    assert timers == []
    sp.connectionLost(connectionDone)
    assert not w.registry.subscribers


def test_a_publication_ends_when_its_experiment_chain_expires() -> None:
    # As a subscription: an xpub with that chain would get EPUBBADCHN once it expired,
    # and endpoints would refuse the controller's chain; pub_end if that comes first.
    from packetlab.ppks import generate_private_key, issue_certificate, key_id, raw_public_key

    w = World()
    now = int(time.time())
    w.clock.advance(now)
    eop, exper, xc = (generate_private_key() for _ in range(3))
    pubcmd = issue_certificate("pubcmd", exper, xc, 0, now + 300)
    exppriv = issue_certificate("exppriv", eop, exper, 0, now + 100)
    pp, pt = w.connect(Role.PUBLISH)
    pp.session.agent_key = raw_public_key(xc)  # type: ignore[union-attr]
    chain = encode(Xcert(pubcmd.der)) + encode(Xcert(exppriv.der))
    xpub = Xpub([key_id(eop)], raw_public_key(eop), XD)
    later = b"pub_end=%d;" % ((now + 50) * 10**9) + XD
    pp.dataReceived(chain + encode(xpub) + chain + encode(Xpub(xpub.chlist, xpub.eopkey, later)))
    assert frames(pt) == [Result(0)] * 6 and len(w.registry.publications) == 2
    # both on their wall moment across a clock step (packetlab.clockstep)
    assert [is_wall(t) for t in pp._expiry.values()] == [True, True]
    with captured_events() as events:
        w.clock.advance(50.1)
        assert [p.xdescr for p in w.registry.publications.values()] == [XD]
        w.clock.advance(49.8)
        assert len(w.registry.publications) == 1
        w.clock.advance(0.2)
    assert not w.registry.publications and not pt.disconnecting
    ends = events.lines("publication end")
    assert [e.rsplit("reason=", 1)[1] for e in ends] == [
        "pub_end reached",
        "its certificate chain expired",
    ]


def test_the_same_xdescr_published_again_after_its_end_skips_who_got_it() -> None:
    # pktxpmgr -n ends the publication as the endpoints start; a publisher that then
    # reconnects and publishes the same bytes must not reach an endpoint still running
    # them (the reference crashes on the copy, OBSERVED §2.3); a new subscriber gets them.
    w = World()
    sp, st = w.connect(Role.SUBSCRIBE, "10.0.0.2")
    sp.session.agent_key = b"S" * 32  # type: ignore[union-attr]
    sp.dataReceived(sub_frames())
    pp, _ = w.connect(Role.PUBLISH)
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(st) == [Result(0), Xnotify(b"public", XD)]
    pp.connectionLost(connectionDone)  # the publication ends
    assert not w.registry.publications
    np, nt = w.connect(Role.SUBSCRIBE, "10.0.0.3")
    np.session.agent_key = b"N" * 32  # type: ignore[union-attr]
    np.dataReceived(sub_frames())
    pp2, _ = w.connect(Role.PUBLISH)
    pp2.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(st) == []
    assert frames(nt) == [Result(0), Xnotify(b"public", XD)]


def test_links_silent_after_tls_are_capped_oldest_out() -> None:
    """Session 18: anyone can make an agent certificate; a link that completes TLS and
    then sends nothing held its descriptor for IDLE_TIMEOUT, uncapped (with 256
    descriptors, 243 such links and the broker refused every real subscriber at accept).
    Past `unproven_max` links without an xsub/xpub on a port, the oldest is closed for
    each new one, with one warning per episode; a subscribed link never counts."""
    w = World()
    f = w.factories[Role.SUBSCRIBE]
    f.unproven_max = 3
    with captured_events() as events:
        sub, st = w.connect(Role.SUBSCRIBE)
        sub.dataReceived(sub_frames())  # subscribed: not counted
        links = [w.connect(Role.SUBSCRIBE) for _ in range(8)]
        assert [t.disconnecting for _, t in links] == [True] * 5 + [False] * 3
        assert not st.disconnecting
        links[6][0].dataReceived(sub_frames())  # proven now: its slot is free
        w.connect(Role.SUBSCRIBE)
        assert not links[5][1].disconnecting and not links[6][1].disconnecting
        w.connect(Role.SUBSCRIBE)
        assert links[5][1].disconnecting and not links[6][1].disconnecting
        w.connect(Role.PUBLISH)  # the other port has its own count
        assert not links[7][1].disconnecting
    said = events.lines("without an xsub/xpub")
    assert len(said) == 1 and "(cap 3)" in said[0], said


def test_a_flood_of_silent_links_from_one_address_closes_its_own() -> None:
    """Session 31: past `unproven_max` the oldest link without an xsub was closed for
    each new one, so a flood from one address closed a real endpoint's link between its
    TLS handshake and its xsub. Now the oldest of the address holding the most goes."""
    w = World()
    f = w.factories[Role.SUBSCRIBE]
    f.unproven_max = 3
    with captured_events() as events:
        real, rt = w.connect(Role.SUBSCRIBE, "10.0.0.1")  # its xsub not yet in
        flood = [w.connect(Role.SUBSCRIBE, "10.0.0.2") for _ in range(8)]
        assert [t.disconnecting for _, t in flood] == [True] * 6 + [False] * 2
        assert not rt.disconnecting
        real.dataReceived(sub_frames())
        assert frames(rt) == [Result(0)]
        assert f.unproven_by.held == {"10.0.0.2": 2}
        for p, _ in flood:
            p.connectionLost(connectionDone)
        assert f.unproven_by.held == {} and f.unproven == {}
    said = events.lines("closing the oldest")
    assert len(said) == 1 and "holding the most (10.0.0.2)" in said[0], said


def test_links_past_the_descriptor_budget_are_refused_and_closed() -> None:
    """Session 30: anyone with a self-made agent certificate subscribes to a public
    channel; 115 such links under `ulimit -n 128` took every descriptor, and Twisted then
    closed every new connection at accept (EMFILE). Past `link_max` subscribed links on a
    port, a first xsub gets ESUBBADCHN (after the throttle's delay, as every refusal)
    and the link is closed; a repeated xsub on a subscribed link is no new link, and the
    publish port has its own count."""
    w = World()
    f = w.factories[Role.SUBSCRIBE]
    f.link_max = 2
    f.share.fraction = 1.0  # the port's cap alone (the address share has its own test)
    with captured_events() as events:
        (a, at), (b, _) = w.connect(Role.SUBSCRIBE), w.connect(Role.SUBSCRIBE)
        a.dataReceived(sub_frames())
        b.dataReceived(sub_frames())
        assert f.links_full() == (
            "2 subscribed links (cap 2, from the descriptor limit: raise `ulimit -n`)"
        )
        c, ct = w.connect(Role.SUBSCRIBE, "10.0.0.3")
        c.dataReceived(sub_frames())
        w.clock.advance(1.0)
        assert frames(ct) == [Result(0x61)] and ct.disconnecting
        frames(at)
        a.dataReceived(sub_frames())  # a's second xsub: still its one link
        w.clock.advance(8.0)
        assert frames(at) == [Result(0)] and not at.disconnecting
        pp, pt = w.connect(Role.PUBLISH)
        pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
        assert frames(pt) == [Result(0)]
        b.connectionLost(connectionDone)  # a link gone: room for one more
        d, dt = w.connect(Role.SUBSCRIBE, "10.0.0.4")
        d.session.agent_key = b"D" * 32  # type: ignore[union-attr]  # (not a's: XD again)
        d.dataReceived(sub_frames())
        assert frames(dt) == [Result(0), Xnotify(b"public", XD)]
    said = events.lines("from the descriptor limit")
    assert len(said) == 1 and "refuse xsub" in said[0] and "ESUBBADCHN" in said[0], said


def test_one_address_holds_at_most_its_share_of_the_links() -> None:
    """Session 31: one stranger (one address, any number of self-made keys) took every
    subscribed link the descriptor limit allows, and real endpoints from other addresses
    got ESUBBADCHN. Now an address holds at most its share (a quarter of `link_max`, at
    least 64 or half): a first xsub past it gets ESUBBADCHN and a close, one line per
    address a minute, a counter; another address still subscribes, and a link gone gives
    its address room again."""
    w = World()
    f = w.factories[Role.SUBSCRIBE]
    f.link_max = 400  # share: 100 (a quarter)
    with captured_events() as events:
        held = []
        for _ in range(100):
            p, t = w.connect(Role.SUBSCRIBE, "10.0.0.2")
            p.dataReceived(sub_frames())
            assert frames(t) == [Result(0)]
            held.append(p)
        refused = []
        for _ in range(3):
            p, t = w.connect(Role.SUBSCRIBE, "10.0.0.2")
            p.dataReceived(sub_frames())
            refused.append((p, t))
        for _ in range(3):  # the throttle's delays: 1, 2, 4 s (one peer)
            w.clock.advance(4.0)
        for _, t in refused:
            assert frames(t) == [Result(0x61)] and t.disconnecting
        good, gt = w.connect(Role.SUBSCRIBE, "10.0.0.1")
        good.dataReceived(sub_frames())
        assert frames(gt) == [Result(0)]
        assert f.counters.refused_share == 3 and f.share.refused == 3
        assert f.counters.as_dict()["refused_share"] == 3
        assert "refused_share=3" in f.counters.line()
        held[0].connectionLost(connectionDone)  # room for one more from 10.0.0.2
        again, at = w.connect(Role.SUBSCRIBE, "10.0.0.2")
        again.dataReceived(sub_frames())
        assert frames(at) == [Result(0)]
        pub, pt = w.connect(Role.PUBLISH, "10.0.0.2")  # the publish port counts its own
        pub.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
        assert frames(pt) == [Result(0)]
    said = events.lines("its share")
    assert len(said) == 1, said  # three refusals, one line for the address in a minute
    assert "address 10.0.0.2 holds 100 subscribed links" in said[0], said
    assert "ESUBBADCHN" in said[0] and "one line per address a 60 s" in said[0], said


def test_the_address_share_of_publishing_links_answers_epubbadxd() -> None:
    w = World()
    f = w.factories[Role.PUBLISH]
    f.link_max = 4  # share: half of it under the floor of 64
    for i in range(2):
        p, t = w.connect(Role.PUBLISH, f"2001:db8::{i + 1}")
        p.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))
        assert frames(t) == [Result(0)]
    p, t = w.connect(Role.PUBLISH, "2001:db8::99")  # the same /64
    p.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    w.clock.advance(1.0)
    assert frames(t) == [Result(0x54)] and t.disconnecting  # EPUBBADXD
    other, ot = w.connect(Role.PUBLISH, "2001:db8:1::1")
    other.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    assert frames(ot) == [Result(0)]


def test_a_subscriber_gone_mid_fan_out_gets_the_publication_when_it_comes_back() -> None:
    """Session 30: a fan-out turn wrote to a link whose connection was already lost (the
    turn comes after the publish, in batches), and counted the publication as delivered
    to that endpoint key: when the endpoint reconnected and subscribed again it was never
    offered it (the rule that each endpoint gets an xdescr once). A lost link takes no
    more notifications, so the publication is still its to get."""
    w = World()
    w.factories[Role.SUBSCRIBE].fanout.batch = 1
    subs = []
    for i in range(4):
        p, t = w.connect(Role.SUBSCRIBE, f"10.0.0.{i + 1}")
        p.session.agent_key = bytes([65 + i]) * 32  # type: ignore[union-attr]
        p.dataReceived(sub_frames())
        frames(t)
        subs.append((p, t))
    pp, _ = w.connect(Role.PUBLISH, "10.0.1.1")
    pp.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    waiting = [(p, t) for p, t in subs if not frames(t)]  # the first went out at once
    assert len(waiting) == 3
    gone, gone_t = waiting[0]
    key = gone.session.agent_key  # type: ignore[union-attr]
    gone.connectionLost(connectionDone)
    for _ in range(4):
        w.clock.advance(0)
    assert gone_t.value() == b""  # nothing written to the lost link
    assert all(frames(t) == [Xnotify(b"public", XD)] for _, t in waiting[1:])
    back, bt = w.connect(Role.SUBSCRIBE, "10.0.0.9")
    back.session.agent_key = key  # type: ignore[union-attr]
    back.dataReceived(sub_frames())
    assert frames(bt) == [Result(0), Xnotify(b"public", XD)]
