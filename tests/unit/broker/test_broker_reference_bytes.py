"""The broker against the byte sequences of BROKER-PROXY-OBSERVED.md, compared as bytes
(not through our own decoder): what a reference pktendpt and pktxpmgr send, and exactly
what the broker writes back."""

from __future__ import annotations

import time

from ppks_factory import cert, key, pub
from test_broker_protocol import World

from packetlab.broker.registry import Publication
from packetlab.broker.session import Role
from packetlab.ppks import key_id
from packetlab.wire import Xcert, Xpub, encode

# §0: keyid(k_eop) and raw k_eop of the observed runs
KEYID_EOP = bytes.fromhex("2f5559e24dce30cd0123c08ac40286bc417c42c65d08138d19446c187c419035")
RAW_EOP = bytes.fromhex("14e1d3ba8bed4c0b0a172a647b7e6bf87ae6fd3a0b1b6dab74a789284dfcff57")
DATTR = b"hostid=pktendpt;endpoint_country=USA;"
OK = bytes.fromhex("40000000")
LIFE = {"nb": 0, "na": 2**31 - 1}


def test_the_xnotify_of_section_2_1_byte_for_byte() -> None:
    # broker->endpoint  70 000053 20 2f5559e2...7c419035 636f6e74...3b
    xd = b"controller_addr=127.0.0.1:20601;sni_key=snitesta1;"
    frame = Publication(1, (KEYID_EOP,), xd, ()).frame(KEYID_EOP)
    assert frame.hex() == (
        "70000053" + "20" + KEYID_EOP.hex()
        + "636f6e74726f6c6c65725f616464723d3132372e302e302e313a32303630313b"
        + "736e695f6b65793d736e697465737461313b"
    )  # fmt: skip


def test_a_public_subscription_as_pktendpt_sends_it_gets_two_results_then_the_xnotify() -> None:
    # §1.3 row "BrokerChannel 7075626c6963": the subcmd xcert, then
    # 38 00004d 06 7075626c6963 00 <raw k_eop> <dattr>, pipelined in one segment; the eopkey
    # is not zero although no channel needs it. Each message: exactly `40 000000`.
    w = World()
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.session.agent_key = pub("ep")  # type: ignore[union-attr]
    subcmd = cert("subcmd", "eop", "ep", **LIFE)
    xsub = bytes.fromhex("3800004d" + "06" + b"public".hex() + "00") + RAW_EOP + DATTR
    sp.dataReceived(encode(Xcert(subcmd.der)) + xsub)
    assert st.value() == OK + OK
    st.clear()
    # pktxpmgr [pub_noeop]: no xcerts, 31 LLLLLL 06 7075626c6963 00 <32 zero bytes> <xdescr>
    xd = b"controller_addr=127.0.0.1:20600;sni_key=pubsnikey1;"
    pp, pt = w.connect(Role.PUBLISH)
    body = bytes.fromhex("06" + b"public".hex() + "00") + bytes(32) + xd
    pp.dataReceived(b"\x31" + len(body).to_bytes(3, "big") + body)
    assert pt.value() == OK
    assert st.value() == b"\x70" + (7 + len(xd)).to_bytes(3, "big") + b"\x06public" + xd


def test_several_expexec_entries_on_one_publisher_link() -> None:
    # §3.3 [pub_multi]: each entry sends its own chain (leaf first, lockstep) before its
    # xpub, on the one broker link; an entry without TRUSTEDEOP sends no xcert and a zero
    # eopkey. Every message gets `40 000000`, and each xpub uses only the xcerts sent since
    # the xpub before it.
    w = World()
    w.clock.advance(time.time())
    sp, st = w.connect(Role.SUBSCRIBE)
    sp.session.agent_key = pub("ep")  # type: ignore[union-attr]
    channel = key_id(key("eop"))
    subcmd = cert("subcmd", "eop", "ep", **LIFE)
    sp.dataReceived(encode(Xcert(subcmd.der)))
    sp.dataReceived(b"\x38" + (34 + 32).to_bytes(3, "big") + b"\x20" + channel + b"\0" + pub("eop"))
    assert st.value() == OK + OK
    st.clear()
    pp, pt = w.connect(Role.PUBLISH)
    pp.session.agent_key = pub("xc")  # type: ignore[union-attr]
    pubcmd = cert("pubcmd", "exper", "xc", **LIFE)
    exppriv = cert("exppriv", "eop", "exper", **LIFE)
    xds = [b"controller_addr=127.0.0.1;sni_key=two;", b"controller_addr=127.0.0.1;sni_key=one;"]
    for xd in xds:
        for msg in (Xcert(pubcmd.der), Xcert(exppriv.der), Xpub([channel], pub("eop"), xd)):
            pp.dataReceived(encode(msg))
            assert pt.value() == OK
            pt.clear()
    # a private channel with no xcerts since the last xpub is not proven
    pp.dataReceived(encode(Xpub([channel], pub("eop"), b"controller_addr=h;sni_key=three;")))
    w.clock.advance(1.0)
    assert pt.value() == bytes.fromhex("400000020051")  # EPUBBADCHN
    pt.clear()
    pp.dataReceived(encode(Xpub([b"public"], bytes(32), b"controller_addr=h;sni_key=four;")))
    w.clock.advance(2.0)
    assert pt.value() == OK
    assert len(w.registry.publications) == 3
    frames = [b"\x70" + (33 + len(xd)).to_bytes(3, "big") + b"\x20" + channel + xd for xd in xds]
    assert st.value() == b"".join(frames)


def test_a_publication_without_pub_end_lives_exactly_as_long_as_its_link() -> None:
    # §3.2 [pub_minimal] and §3.4: no pub_end; pktxpmgr's close ends the publication.
    w = World()
    pp, pt = w.connect(Role.PUBLISH)
    xd = b"controller_addr=127.0.0.1:20600;sni_key=" + b"a" * 63 + b";"
    pp.dataReceived(encode(Xpub([b"public"], bytes(32), xd)))
    assert pt.value() == OK
    w.clock.advance(365 * 86400.0)
    assert len(w.registry.publications) == 1 and not pt.disconnecting
    pp.connectionLost(None)  # type: ignore[arg-type]
    assert not w.registry.publications
