"""The publisher's side of a broker link, byte for byte (BROKER-PROXY-OBSERVED.md §3.2-3.4):
xcerts of the verified chain leaf first whatever the config order, each message only after
the result of the one before (lockstep), the xpub last; an error result ends it with the
code; no TRUSTEDEOP key: no xcerts and 32 zero bytes."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from ppks_factory import cert, key, pub
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.python.failure import Failure

from packetlab.controller.publish import (
    Publication,
    PublishCredentials,
    PublishError,
    PublishRefused,
    _BrokerLink,
)
from packetlab.ppks import Certificate, key_id
from packetlab.tls import Credentials
from packetlab.wire import Framer, Result, Xcert, Xpub, encode

LIFE = {"nb": 0, "na": 2**31 - 1}
XD = b"controller_addr=127.0.0.1:20600;sni_key=pubsnikey1;"


def delegated_chain() -> dict[str, Certificate]:
    """pubcmd (exper2 -> xc) <- delpriv[exppriv] (exper -> exper2) <- exppriv (eop -> exper)."""
    return {
        "pubcmd": cert("pubcmd", "exper2", "xc", **LIFE),
        "delpriv": cert("delpriv", "exper", "exper2", del_type="exppriv", **LIFE),
        "exppriv": cert("exppriv", "eop", "exper", **LIFE),
        "agent": cert("agent", "xc", "xc", **LIFE),
    }


def write(tmp: Path, certs: dict[str, Certificate]) -> dict[str, str]:
    out = {}
    for name, c in certs.items():
        p = tmp / f"{name}.cert"
        p.write_bytes(c.to_pem())
        out[name] = str(p)
    from cryptography.hazmat.primitives import serialization

    for name in ("xc", "eop"):
        k = key(name)
        (tmp / f"k_{name}").write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (tmp / f"k_{name}.pub").write_bytes(
            k.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return out


@pytest.mark.parametrize(
    "listed",
    [
        ["exppriv", "delpriv", "pubcmd"],
        ["delpriv", "exppriv", "pubcmd"],
        ["exppriv", "pubcmd", "delpriv"],
        ["pubcmd", "exppriv", "delpriv"],
    ],
)
def test_xcerts_go_leaf_first_along_the_chain_whatever_the_config_order(
    tmp_path: Path, listed: list[str]
) -> None:
    # OBSERVED §3.2/§5.4.1: "xcerts go leaf-first from the verified chain, regardless of
    # config order". Leaf first and then the listed order sent exppriv before the delpriv
    # for ["exppriv", "delpriv", "pubcmd"].
    certs = delegated_chain()
    files = write(tmp_path, certs)
    creds = PublishCredentials.load(
        files["agent"],
        str(tmp_path / "k_xc"),
        [files[n] for n in listed],
        str(tmp_path / "k_eop.pub"),
    )
    assert [c.der for c in creds.chain] == [certs[n].der for n in ("pubcmd", "delpriv", "exppriv")]


def link_and_pub(
    chain: list[Certificate], eopkey: bytes | None
) -> tuple[_BrokerLink, Publication, StringTransport]:
    link = _BrokerLink()
    t = StringTransport()
    link.makeConnection(t)
    agent = Credentials([cert("agent", "xc", "xc", **LIFE)], key("xc"))
    return link, Publication(link, PublishCredentials(agent, chain, eopkey)), t


def sent(t: StringTransport) -> bytes:
    out = t.value()
    t.clear()
    return out


def test_one_message_per_result_in_lockstep_then_the_xpub() -> None:
    certs = delegated_chain()
    chain = [certs["pubcmd"], certs["delpriv"], certs["exppriv"]]
    link, publication, t = link_and_pub(chain, pub("eop"))
    d = publication.add(XD)
    ok = encode(Result(0))
    # Nothing goes out before the result of the message before it (pktxpmgr's lockstep).
    assert sent(t) == encode(Xcert(certs["pubcmd"].der))
    link.dataReceived(ok[:2])  # a result split across reads is still one result
    assert sent(t) == b""
    link.dataReceived(ok[2:])
    assert sent(t) == encode(Xcert(certs["delpriv"].der))
    link.dataReceived(ok)
    assert sent(t) == encode(Xcert(certs["exppriv"].der))
    link.dataReceived(ok)
    xpub = sent(t)
    # 31 LLLLLL 20 <keyid(k_eop)> 00 <raw k_eop> <xdescr>: the default channel is the root
    # EOp's keyid, the eopkey its raw key
    assert xpub == (
        bytes([0x31]) + (34 + 32 + len(XD)).to_bytes(3, "big")
        + b"\x20" + key_id(pub("eop")) + b"\x00" + pub("eop") + XD
    )  # fmt: skip
    assert list(Framer().feed(xpub)) == [Xpub([key_id(pub("eop"))], pub("eop"), XD)]
    assert not d.called
    link.dataReceived(ok)
    assert d.called and publication.xdescrs == [XD]
    assert not t.disconnecting  # the link stays: the publication lives as long as it


def test_public_channel_without_a_chain_sends_no_xcert_and_a_zero_eopkey() -> None:
    # OBSERVED §3.3 [pub_noeop]: `31 ... 06 7075626c6963 00 <32 zero bytes> <xdescr>`
    link, publication, t = link_and_pub([], None)
    d = publication.add(XD, [b"public"])
    assert sent(t) == (
        bytes([0x31]) + (8 + 32 + len(XD)).to_bytes(3, "big")
        + b"\x06public\x00" + bytes(32) + XD
    )  # fmt: skip
    link.dataReceived(encode(Result(0)))
    assert d.called


@pytest.mark.parametrize(("at", "errid"), [(0, 0x51), (1, 0x54)])
def test_an_error_result_stops_the_publication_with_its_code(at: int, errid: int) -> None:
    # OBSERVED §3.4: an error to an xcert stops before the next message; pktxpmgr prints
    # the code in decimal (81, 82), we keep it too.
    certs = delegated_chain()
    link, publication, t = link_and_pub([certs["pubcmd"]], pub("eop"))
    d = publication.add(XD)
    failures: list[BaseException] = []

    def failed(f: Failure) -> None:
        failures.append(f.value)  # type: ignore[arg-type]

    d.addErrback(failed)
    if at == 1:
        link.dataReceived(encode(Result(0)))
    sent(t)
    link.dataReceived(encode(Result(errid)))
    assert sent(t) == b""  # nothing after the refused message
    [e] = failures
    assert isinstance(e, PublishRefused)
    assert e.what == ("xcert", "xpub")[at] and int(e.status) == errid
    assert f"error {errid}" in str(e)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x40\xff\xff\xff",  # a result announcing 16 MiB: over the link's 1 KiB frame cap
        b"GET / HTTP/1.1\r\n\r\n",  # not a broker at all
    ],
)
def test_a_frame_too_large_from_the_broker_is_a_stated_error_not_a_traceback(
    frame: bytes,
) -> None:
    # FrameTooLarge left dataReceived: Twisted logged it as an unhandled traceback.
    link, publication, t = link_and_pub([], None)
    d = publication.add(XD, [b"public"])
    failures: list[Failure] = []
    d.addErrback(failures.append)
    lines: list[str] = []
    link.log = Logger(observer=cast(ILogObserver, lambda e: lines.append(formatEvent(e))))
    link.dataReceived(frame)  # does not raise
    assert t.disconnecting
    assert len(lines) == 1 and "bad frame from the broker" in lines[0], lines
    assert "(limit 1024)" in lines[0]
    link.connectionLost(Failure(ConnectionDone()))
    assert isinstance(failures[0].value, PublishError)
