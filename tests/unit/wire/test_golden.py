"""Golden vectors written by hand from PROTOCOL.md §1.2 (not produced by our encoder).

Each frame is spelled field by field: `type | length (u24) | body fields ...`, all
big-endian. Every one must decode to the listed fields and re-encode to the same bytes on
both paths. Then one malformed vector per rule, and unknown type codes.
"""

from __future__ import annotations

import pytest

from packetlab import wire
from packetlab.wire import (
    Cdata,
    Cont,
    End,
    Linfo,
    Mdata,
    Message,
    Mread,
    Mwrite,
    Nblock,
    Ncap,
    Nclose,
    Nctl,
    Ndata,
    Ndrop,
    Nopen,
    Nsend,
    Nstat,
    Ntag,
    Result,
    Resumd,
    Start,
    Suspd,
    Xcert,
    Xnotify,
    Xpub,
    Xreg,
    Xsub,
    Yield,
)

V4_ANY = bytes(4)
V4_LO = bytes([127, 0, 0, 1])
V4_DOC = bytes([192, 0, 2, 1])  # 192.0.2.1
V4_DNS = bytes([192, 0, 2, 53])  # 192.0.2.53
V4_WEB = bytes([198, 51, 100, 7])  # 198.51.100.7
V6_ANY = bytes(16)
V6_LO = bytes(15) + b"\x01"  # ::1
V6_DOC = bytes.fromhex("20010db8") + bytes(11) + b"\x01"  # 2001:db8::1
V6_DNS = bytes.fromhex("20010db8") + bytes(11) + b"\x35"  # 2001:db8::35
V6_WEB = bytes.fromhex("20010db8") + bytes(11) + b"\x80"  # 2001:db8::80
XDESCR = b"controller_addr=127.0.0.1;"  # 26 bytes
# type byte 00 (eBPF), then: mov r0, 0xffff; exit
EBPF_ACCEPT_ALL = bytes.fromhex("00  b7 00 0000 0000ffff  95 00 0000 00000000")

# (id, frame in hex as written from the spec, the message it is)
GOLDEN: list[tuple[str, str, Message]] = [
    # --- requests
    ("cdata-monitor", "20 00000d  07 6d6f6e69746f72  01 0061736d",
     Cdata(hint=b"monitor", data=b"\x01\x00asm")),
    ("cdata-empty", "20 000001  00", Cdata(hint=b"", data=b"")),
    ("start", "21 000000", Start()),
    ("end", "22 000000", End()),
    ("yield", "23 000008  0102030405060708", Yield(rhint=0x0102030405060708)),
    ("cont", "24 000000", Cont()),
    ("mread-time", "28 000006  10010000 0008", Mread(addr=0x10010000, len=8)),
    ("mread-top", "28 000006  ffffffff 0001", Mread(addr=0xFFFFFFFF, len=1)),
    ("mwrite-notifmask", "29 000006  20000470 0008", Mwrite(addr=0x20000470, data=b"\x00\x08")),
    ("mwrite-empty", "29 000004  ffffffff", Mwrite(addr=0xFFFFFFFF, data=b"")),
    ("nopen-raw-v4", "2a 00000b  00 04 00 00010000  00000000",
     Nopen(sktid=0, family=4, proto=0, rbufsz=0x10000, laddr=V4_ANY)),
    ("nopen-raw-v6", "2a 000017  01 06 00 00010000  00000000000000000000000000000001",
     Nopen(sktid=1, family=6, proto=0, rbufsz=0x10000, laddr=V6_LO)),
    ("nopen-udp-v4", "2a 00000d  02 04 11 00100000  c0000201 14e9",
     Nopen(sktid=2, family=4, proto=17, rbufsz=0x100000, laddr=V4_DOC, lport=5353)),
    ("nopen-udp-v6", "2a 000019  02 06 11 00100000  20010db8000000000000000000000001 0000",
     Nopen(sktid=2, family=6, proto=17, rbufsz=0x100000, laddr=V6_DOC, lport=0)),
    # §3.1: "UDP binds laddr:lport (raddr ignored)": a UDP nopen may carry a peer.
    ("nopen-udp-with-raddr-v4", "2a 000013  02 04 11 00010000  c0000201 0035  c6336407 0050",
     Nopen(sktid=2, family=4, proto=17, rbufsz=0x10000, laddr=V4_DOC, lport=53,
           raddr=V4_WEB, rport=80)),
    ("nopen-tcp-connect-v4", "2a 000013  03 04 06 00004000  00000000 0000  c6336407 0050",
     Nopen(sktid=3, family=4, proto=6, rbufsz=0x4000, laddr=V4_ANY, lport=0,
           raddr=V4_WEB, rport=80)),
    ("nopen-tcp-connect-v6",
     "2a 00002b  03 06 06 00004000  00000000000000000000000000000000 0000"
     "  20010db8000000000000000000000080 01bb",
     Nopen(sktid=3, family=6, proto=6, rbufsz=0x4000, laddr=V6_ANY, lport=0,
           raddr=V6_WEB, rport=443)),
    ("nopen-tcp-listen-v4", "2a 00000d  04 04 06 00004000  7f000001 1f90",
     Nopen(sktid=4, family=4, proto=6, rbufsz=0x4000, laddr=V4_LO, lport=8080)),
    ("nopen-tcp-listen-v6", "2a 000019  04 06 06 00004000  00000000000000000000000000000001 1f90",
     Nopen(sktid=4, family=6, proto=6, rbufsz=0x4000, laddr=V6_LO, lport=8080)),
    ("nclose", "2b 000001  03", Nclose(sktid=3)),
    ("nsend-tcp", "2c 00000f  03 04 06 0000000000000000 0007  6869",
     Nsend(sktid=3, family=4, proto=6, time=0, tag=7, data=b"hi")),
    ("nsend-tcp-empty", "2c 00000d  03 04 06 0000000000000000 0008",
     Nsend(sktid=3, family=4, proto=6, time=0, tag=8, data=b"")),
    ("nsend-udp-v4", "2c 000016  02 04 11 0000000000000064 0001  c0000235 0035  616263",
     Nsend(sktid=2, family=4, proto=17, time=100, tag=1, raddr=V4_DNS, rport=53, data=b"abc")),
    ("nsend-udp-v6",
     "2c 000020  02 06 11 0000000000000064 0002  20010db8000000000000000000000035 0035  00",
     Nsend(sktid=2, family=6, proto=17, time=100, tag=2, raddr=V6_DNS, rport=53,
           data=b"\x00")),
    ("nsend-raw", "2c 000011  00 04 00 0000000000000005 0009  4500001c",
     Nsend(sktid=0, family=4, proto=0, time=5, tag=9, data=bytes.fromhex("4500001c"))),
    ("ncap", "2d 00001c  00 04 00 ffffffffffffffff  00 b700000000 00ffff 9500000000000000",
     Ncap(sktid=0, family=4, proto=0, endtime=0xFFFFFFFFFFFFFFFF, filter=EBPF_ACCEPT_ALL)),
    ("nctl", "2e 00000c  03 04 06 0000000000000000 01",
     Nctl(sktid=3, family=4, proto=6, time=0, command=1)),
    ("xcert", "30 000005  3003020100", Xcert(cert=bytes.fromhex("3003020100"))),
    ("xpub-two-public-channels-xdescr",
     "31 000043  04 74657374 02 6162 00  " + "11" * 32 + "  " + XDESCR.hex(),
     Xpub(chlist=[b"test", b"ab"], eopkey=b"\x11" * 32, xdescr=XDESCR)),
    ("xpub-private-channel",
     "31 000042  20 " + "aa" * 32 + " 00  " + "22" * 32,
     Xpub(chlist=[b"\xaa" * 32], eopkey=b"\x22" * 32)),
    ("xpub-empty-chlist", "31 000021  00  " + "33" * 32, Xpub(chlist=[], eopkey=b"\x33" * 32)),
    ("xsub-dattr", "38 00002f  03 707562 00  " + "00" * 32 + "  686f737469643d68313b",
     Xsub(chlist=[b"pub"], eopkey=bytes(32), dattr=b"hostid=h1;")),
    ("xsub-public-and-private",
     "38 000044  01 78 20 " + "bb" * 32 + " 00  " + "00" * 32,
     Xsub(chlist=[b"x", b"\xbb" * 32], eopkey=bytes(32))),
    # --- responses
    ("result-success", "40 000000", Result()),
    ("result-errid", "40 000002  0011", Result(errid=0x11)),
    ("result-monukn", "40 000004  0013 0002", Result(errid=0x13, monindx=2)),
    ("result-monrej", "40 000006  0012 0001 0007", Result(errid=0x12, monindx=1, monerrid=7)),
    ("mdata", "41 00000c  10010000 1800000000000000",
     Mdata(addr=0x10010000, data=bytes.fromhex("1800000000000000"))),
    ("mdata-empty", "41 000004  00000000", Mdata(addr=0, data=b"")),
    # --- notifications
    ("ntag-success", "60 00000b  03 0007 0000000000001000", Ntag(sktid=3, tag=7, time=0x1000)),
    ("ntag-errid", "60 00000d  03 0007 0000000000001000 0041",
     Ntag(sktid=3, tag=7, time=0x1000, errid=0x41)),
    ("nstat-code", "61 00000c  03 04 06 0000000000000001 03",
     Nstat(sktid=3, family=4, proto=6, time=1, code=3)),
    ("nstat-code-established", "61 00000c  03 04 06 0000000000000001 00",
     Nstat(sktid=3, family=4, proto=6, time=1, code=0)),
    ("nstat-established-v4", "61 000011  03 04 06 0000000000000002 c6336407 0050",
     Nstat(sktid=3, family=4, proto=6, time=2, raddr=V4_WEB, rport=80)),
    ("nstat-established-v6",
     "61 00001d  03 06 06 0000000000000002 20010db8000000000000000000000080 01bb",
     Nstat(sktid=3, family=6, proto=6, time=2, raddr=V6_WEB, rport=443)),
    ("ndata-tcp", "62 00000f  03 04 06 0000000000000002  48545450",
     Ndata(sktid=3, family=4, proto=6, time=2, data=b"HTTP")),
    ("ndata-udp-v4", "62 000012  02 04 11 0000000000000003 c0000235 0035  00",
     Ndata(sktid=2, family=4, proto=17, time=3, raddr=V4_DNS, rport=53, data=b"\x00")),
    ("ndata-udp-v6",
     "62 00001f  02 06 11 0000000000000003 20010db8000000000000000000000035 0035  6f6b",
     Ndata(sktid=2, family=6, proto=17, time=3, raddr=V6_DNS, rport=53, data=b"ok")),
    ("ndata-raw", "62 00000d  00 04 00 0000000000000004  4500",
     Ndata(sktid=0, family=4, proto=0, time=4, data=b"\x45\x00")),
    ("ndrop", "63 00001b  00 04 00 0000000000000010 0000000000000020 00000003 000005dc",
     Ndrop(sktid=0, family=4, proto=0, tfirst=0x10, tlast=0x20, unitcnt=3, bytecnt=1500)),
    ("nblock", "64 00000d  02 04 11 fffd 0000000000000030",
     Nblock(sktid=2, family=4, proto=17, monerrid=0xFFFD, time=0x30)),
    ("linfo", "65 000017  00000007 00000002 00000002  6d6f6e69746f72 0100 6f6b",
     Linfo(name=b"monitor", aux=b"\x01\x00", info=b"ok")),
    ("linfo-empty", "65 00000c  00000000 00000000 00000000", Linfo(name=b"", aux=b"", info=b"")),
    ("suspd", "68 000000", Suspd()),
    ("resumd", "69 000000", Resumd()),
    ("xnotify-xdescr", "70 00001f  04 74657374  " + XDESCR.hex(),
     Xnotify(channel=b"test", xdescr=XDESCR)),
    ("xnotify-private", "70 000021  20 " + "cc" * 32, Xnotify(channel=b"\xcc" * 32)),
    # --- proxy
    ("xreg", "80 000006  616263313233", Xreg(snikey=b"abc123")),
]  # fmt: skip


def frame_bytes(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(("frame", "msg"), [pytest.param(h, m, id=i) for i, h, m in GOLDEN])
def test_golden_frame(frame: str, msg: Message) -> None:
    raw = frame_bytes(frame)
    assert int.from_bytes(raw[1:4], "big") == len(raw) - 4, "hand-written length is wrong"
    assert wire.decode_frame(raw) == msg
    assert wire.construct_decode_body(raw[0], raw[4:]) == msg
    assert wire.encode(msg) == raw
    assert wire.construct_encode(msg) == raw


def test_every_message_form_has_a_golden_vector() -> None:
    assert {type(m) for _, _, m in GOLDEN} == set(wire.ALL_MESSAGES)


def test_golden_stream_through_the_framer() -> None:
    stream = b"".join(frame_bytes(h) for _, h, _ in GOLDEN)
    items = list(wire.Framer().feed(stream))
    assert items == [m for _, _, m in GOLDEN]


# ------------------------------------------------------------------ non-canonical forms


@pytest.mark.parametrize(
    ("frame", "msg", "canonical"),
    [
        # An explicit SUCCESS errid is accepted, but the encoder writes the short form (§1.2).
        ("40 000002  0000", Result(), "40 000000"),
        ("60 00000d  03 0007 0000000000001000 0000", Ntag(sktid=3, tag=7, time=0x1000),
         "60 00000b  03 0007 0000000000001000"),
    ],
)  # fmt: skip
def test_explicit_success_decodes_and_reencodes_short(
    frame: str, msg: Message, canonical: str
) -> None:
    assert wire.decode_frame(frame_bytes(frame)) == msg
    assert wire.encode(msg) == frame_bytes(canonical)


# --------------------------------------------------------------------- malformed bodies

# (id, type code, body in hex, text the MalformedMessage rule must contain)
MALFORMED: list[tuple[str, int, str, str]] = [
    ("cdata-empty", 0x20, "", "truncated"),
    ("cdata-hint-past-end", 0x20, "07 6d6f6e", "hint: needs 7 bytes"),
    ("start-trailing", 0x21, "00", "1 trailing bytes"),
    ("end-trailing", 0x22, "0000", "2 trailing bytes"),
    ("yield-short", 0x23, "01020304050607", "truncated at field rhint"),
    ("yield-long", 0x23, "010203040506070809", "1 trailing bytes"),
    ("cont-trailing", 0x24, "ff", "trailing"),
    ("mread-len-0", 0x28, "10010000 0000", "mread len must be > 0"),
    ("mread-past-4g", 0x28, "ffffffff 0002", "mread addr+len must be <= 2^32"),
    ("mread-short", 0x28, "10010000 00", "truncated"),
    ("mread-long", 0x28, "10010000 0008 00", "trailing"),
    ("mwrite-past-4g", 0x29, "ffffffff 0102", "mwrite addr+len must be <= 2^32"),
    ("mwrite-short", 0x29, "ffffff", "truncated at field addr"),
    ("nopen-short", 0x2A, "00 04 00 000100", "truncated"),
    ("nopen-bad-family", 0x2A, "00 05 00 00010000 00000000", "family must be 4"),
    ("nopen-family-0", 0x2A, "00 00 11 00010000 00000000 0035", "family must be 4"),
    ("nopen-bad-proto", 0x2A, "00 04 07 00010000 00000000", "proto must be 0 (raw), 6 (TCP)"),
    ("nopen-raw-v4-long", 0x2A, "00 04 00 00010000 00000000 0000", "nopen length must be"),
    ("nopen-raw-v6-as-v4", 0x2A, "00 06 00 00010000 00000000", "nopen length must be"),
    ("nopen-udp-no-lport", 0x2A, "02 04 11 00010000 c0000201", "nopen length must be"),
    ("nopen-udp-raddr-short", 0x2A, "02 04 11 00010000 c0000201 0035 c6336407",
     "nopen length must be"),
    ("nopen-tcp-odd-length", 0x2A, "03 04 06 00010000 00000000 0000 c6336407",
     "nopen length must be"),
    ("nclose-empty", 0x2B, "", "truncated at field sktid"),
    ("nclose-long", 0x2B, "0303", "trailing"),
    ("nsend-short", 0x2C, "03 04 06 0000000000000000 00", "truncated"),
    ("nsend-udp-bad-family", 0x2C, "02 05 11 0000000000000000 0001 c0000235 0035",
     "raddr: no layout for 5"),
    ("nsend-udp-v6-truncated-raddr", 0x2C, "02 06 11 0000000000000000 0001 c0000235 0035",
     "truncated at field raddr"),
    ("nsend-udp-no-rport", 0x2C, "02 04 11 0000000000000000 0001 c0000235 00",
     "truncated at field rport"),
    ("ncap-no-filter", 0x2D, "00 04 00 ffffffffffffffff", "ncap needs a filter"),
    ("ncap-short", 0x2D, "00 04 00 ffffffff", "truncated"),
    ("nctl-udp", 0x2E, "02 04 11 0000000000000000 01", "nctl proto must be TCP"),
    ("nctl-raw", 0x2E, "00 04 00 0000000000000000 01", "nctl proto must be TCP"),
    ("nctl-len-11", 0x2E, "03 04 06 0000000000000000", "truncated at field command"),
    ("nctl-long", 0x2E, "03 04 06 0000000000000000 01 00", "trailing"),
    ("xcert-empty", 0x30, "", "xcert needs a certificate"),
    ("xpub-no-terminator", 0x31, "04 74657374", "chlist: missing 0 terminator"),
    ("xpub-empty", 0x31, "", "chlist: missing 0 terminator"),
    ("xpub-channel-33", 0x31, "21" + "aa" * 33 + "00" + "11" * 32, "channel length 33 > 32"),
    ("xpub-channel-past-end", 0x31, "08 74657374", "chlist: channel runs past the body"),
    ("xpub-short-eopkey", 0x31, "00" + "11" * 31, "truncated at field eopkey"),
    ("xsub-no-terminator", 0x38, "03 707562", "chlist: missing 0 terminator"),
    ("xsub-channel-255", 0x38, "ff" + "aa" * 255 + "00" + "00" * 32, "channel length 255 > 32"),
    ("xsub-no-eopkey", 0x38, "03 707562 00", "truncated at field eopkey"),
    ("result-len-1", 0x40, "00", "result length must be 0, 2, 4 or 6"),
    ("result-len-3", 0x40, "001200", "result length must be 0, 2, 4 or 6"),
    ("result-len-8", 0x40, "0012000100070000", "result length must be 0, 2, 4 or 6"),
    ("result-monrej-len-2", 0x40, "0012", "ECTLMONREJ needs monindx and monerrid"),
    ("result-monrej-len-4", 0x40, "0012 0001", "ECTLMONREJ needs monindx and monerrid"),
    ("result-monukn-len-2", 0x40, "0013", "ECTLMONUKN needs monindx"),
    ("result-monukn-len-6", 0x40, "0013 0001 0007", "ECTLMONUKN needs monindx"),
    ("result-plain-with-monindx", 0x40, "0011 0001", "others neither"),
    ("mdata-short", 0x41, "100100", "truncated at field addr"),
    ("ntag-len-12", 0x60, "03 0007 0000000000001000 00", "ntag length must be 11 or 13"),
    ("ntag-len-10", 0x60, "03 0007 00000000000010", "ntag length must be 11 or 13"),
    ("nstat-len-11", 0x61, "03 04 06 0000000000000001", "truncated at field raddr"),
    ("nstat-len-13", 0x61, "03 04 06 0000000000000001 0300", "truncated at field raddr"),
    ("nstat-v4-len-18", 0x61, "03 04 06 0000000000000001 c6336407 0050 00", "trailing"),
    ("nstat-v6-len-17", 0x61, "03 06 06 0000000000000001 c6336407 0050",
     "truncated at field raddr"),
    ("nstat-bad-family", 0x61, "03 05 06 0000000000000001 c6336407 0050",
     "raddr: no layout for 5"),
    ("ndata-short", 0x62, "03 04 06 00000000000000", "truncated"),
    ("ndata-udp-bad-family", 0x62, "02 07 11 0000000000000003 c0000235 0035",
     "raddr: no layout for 7"),
    ("ndrop-len-26", 0x63, "00 04 00 0000000000000010 0000000000000020 00000003 0005dc",
     "truncated"),
    ("ndrop-len-28", 0x63, "00 04 00 0000000000000010 0000000000000020 00000003 000005dc 00",
     "trailing"),
    ("nblock-len-12", 0x64, "02 04 11 fffd 00000000000030", "truncated"),
    ("nblock-len-14", 0x64, "02 04 11 fffd 0000000000000030 00", "trailing"),
    ("linfo-short-header", 0x65, "00000007 00000002", "truncated"),
    ("linfo-name-past-end", 0x65, "00000007 00000002 00000002 6d6f6e", "name: needs 7 bytes"),
    ("linfo-trailing", 0x65, "00000000 00000000 00000000 00", "1 trailing bytes"),
    ("suspd-trailing", 0x68, "00", "trailing"),
    ("resumd-trailing", 0x69, "00", "trailing"),
    ("xnotify-empty", 0x70, "", "truncated at length of channel"),
    ("xnotify-channel-0", 0x70, "00", "xnotify channel length must be 1..32"),
    ("xnotify-channel-0-xdescr", 0x70, "00 " + XDESCR.hex(), "xnotify channel length must be"),
    ("xnotify-channel-33", 0x70, "21" + "cc" * 33, "xnotify channel length must be 1..32"),
    ("xnotify-channel-past-end", 0x70, "04 7465", "channel: needs 4 bytes"),
    ("xreg-empty", 0x80, "", "xreg snikey must be 1..63 characters of [a-z0-9]"),
    ("xreg-upper", 0x80, "414243", "xreg snikey must be"),
    ("xreg-dash", 0x80, "612d62", "xreg snikey must be"),
    ("xreg-nul", 0x80, "6100", "xreg snikey must be"),
    ("xreg-64", 0x80, "61" * 64, "xreg snikey must be"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("msgtype", "body", "rule"), [pytest.param(t, b, r, id=i) for i, t, b, r in MALFORMED]
)
def test_malformed_body(msgtype: int, body: str, rule: str) -> None:
    raw = bytes.fromhex(body)
    with pytest.raises(wire.MalformedMessage) as err:
        wire.decode_body(msgtype, raw)
    assert err.value.msgtype == msgtype
    assert rule in err.value.rule
    assert 0 <= err.value.offset <= len(raw)
    with pytest.raises(wire.MalformedMessage):  # the construct path agrees
        wire.construct_decode_body(msgtype, raw)
    # Through the framer: a Malformed item, and the stream carries on after it.
    frame = bytes([msgtype]) + len(raw).to_bytes(3, "big") + raw
    items = list(wire.Framer().feed(frame + bytes.fromhex("21000000")))
    assert isinstance(items[0], wire.Malformed)
    assert (items[0].msgtype, items[0].body, items[0].offset) == (msgtype, raw, 0)
    assert rule in items[0].error.rule
    assert items[1:] == [Start()]


def test_every_message_type_has_a_malformed_vector() -> None:
    assert {t for _, t, _, _ in MALFORMED} == {int(m.TYPE) for m in wire.ALL_MESSAGES}


def test_malformed_rule_offsets_point_at_the_fault() -> None:
    with pytest.raises(wire.MalformedMessage) as err:
        wire.decode_body(0x28, bytes.fromhex("10010000 0000"))
    assert err.value.offset == 6  # rules are checked after the fields they read
    with pytest.raises(wire.MalformedMessage) as err:
        wire.decode_body(0x31, bytes.fromhex("21" + "aa" * 33))
    assert "offset 0" in err.value.rule


# --------------------------------------------------------------------- unknown types


@pytest.mark.parametrize("code", [0x00, 0x25, 0x2F, 0x39, 0x42, 0x66, 0x71, 0x81, 0x90, 0xFF])
def test_unknown_type_code(code: int) -> None:
    body = bytes.fromhex("deadbeef")
    frame = bytes([code]) + b"\x00\x00\x04" + body
    items = list(wire.Framer().feed(b"\x21\x00\x00\x00" + frame + b"\x68\x00\x00\x00"))
    assert items == [Start(), wire.Unknown(code, body, 4), Suspd()]
    with pytest.raises(wire.UnknownType) as err:
        wire.decode_body(code, body)
    assert err.value.msgtype == code
    with pytest.raises(wire.UnknownType):
        wire.construct_decode_body(code, body)


def test_truncated_frame_waits() -> None:
    framer = wire.Framer()
    raw = frame_bytes("2c 00000f  03 04 06 0000000000000000 0007  6869")
    assert list(framer.feed(raw[:3])) == []  # header incomplete
    assert list(framer.feed(raw[3:-1])) == []  # body incomplete
    assert framer.buffered == len(raw) - 1
    assert list(framer.feed(raw[-1:])) == [Nsend(3, 4, 6, 0, 7, b"hi")]
    assert framer.buffered == 0


def test_frame_too_large_only_above_the_cap() -> None:
    raw = frame_bytes("2c 00000f  03 04 06 0000000000000000 0007  6869")
    assert len(list(wire.Framer(max_body=15).feed(raw))) == 1
    with pytest.raises(wire.FrameTooLarge) as err:
        list(wire.Framer(max_body=14).feed(raw))
    assert (err.value.offset, err.value.length, err.value.limit) == (0, 15, 14)


def test_decode_frame_checks_the_header() -> None:
    with pytest.raises(wire.MalformedMessage, match="shorter than its header"):
        wire.decode_frame(b"\x21\x00")
    with pytest.raises(wire.MalformedMessage, match="does not match its header"):
        wire.decode_frame(frame_bytes("2b 000001  03 03"))


# ------------------------------------------------------- encoder refusals (no silent drops)


@pytest.mark.parametrize(
    ("msg", "text"),
    [
        (Nsend(1, 4, 6, 0, 0, b"", raddr=V4_DNS, rport=53), "UDP needs raddr and rport"),
        (Nsend(1, 4, 17, 0, 0, b""), "UDP needs raddr and rport"),
        (Ndata(1, 4, 0, 0, b"", raddr=V4_DNS, rport=53), "UDP needs raddr and rport"),
        (Nopen(0, 4, 0, 0, V4_ANY, lport=5), "raw nopen has no lport"),
        (Nopen(0, 4, 0, 0, V4_ANY, raddr=V4_DNS, rport=53), "raw nopen has no raddr"),
        (Nopen(0, 4, 6, 0, V4_ANY), "UDP/TCP nopen needs lport"),
        (Nopen(0, 5, 0, 0, V4_ANY), "family must be 4"),
        (Nstat(3, 4, 6, 0, rport=80), "raddr needs rport"),
        (Nstat(3, 4, 6, 0, code=1, raddr=V4_WEB, rport=80), "ESTABLISHED"),
        (Result(errid=0x12, monindx=1), "ECTLMONREJ needs monindx and monerrid"),
        (Result(errid=0x11, monindx=1), "others neither"),
        (Mread(0, 0), "mread len must be > 0"),
        (Mwrite(0xFFFFFFFF, b"ab"), "mwrite addr+len"),
        (Nctl(3, 4, 17, 0, 1), "nctl proto must be TCP"),
        (Ncap(0, 4, 0, 0, b""), "ncap needs a filter"),
        (Xcert(b""), "xcert needs a certificate"),
        (Xpub([b""], bytes(32)), "channel length 0"),
        (Xpub([b"a" * 33], bytes(32)), "channel length 33"),
        (Xpub([b"a"], bytes(31)), "eopkey must be 32 bytes"),
        (Xnotify(b""), "xnotify channel length"),
        (Xreg(b"ABC"), "xreg snikey"),
        (Nclose(256), "Nclose"),
        (Nsend(1, 4, 6, 0, 0, 5), "expected bytes, not int"),  # type: ignore[arg-type]
        (Cdata(b"x" * 256, b""), "Cdata"),
        (Linfo(b"monitor", None, b""), "Linfo"),  # type: ignore[arg-type]
    ],
)
def test_encoder_refuses(msg: Message, text: str) -> None:
    with pytest.raises(wire.EncodeError) as err:
        wire.encode(msg)
    assert text in str(err.value)
    with pytest.raises(wire.EncodeError):
        wire.construct_encode(msg)
