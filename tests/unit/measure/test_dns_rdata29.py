"""Record data as BIND 9.18.49 reads and writes it where dnspython 2.9 differs (session
29, dig29): each expectation is dig 9.18.49's text for the same reply from
`tests/integration/dns_odd_server.py` (`rTYPE-HEX` names; `test_dns_odd_dig.py` runs
them beside dig)."""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire
import pytest

from packetlab.measure.dnsparse import MALFORMED_NOTE, _Malformed, _parse, _records
from packetlab.measure.dnsrdata import bind_rdata

QNAME = "f.test."


def _reply(rtype: int, data: bytes, rdclass: int = 1) -> tuple[dns.message.Message, bytes]:
    """A query for f.test. A in `rdclass` and its reply: one record of `rtype` whose
    data is `data`, its owner a pointer to the question's name (offset 12)."""
    q = dns.message.make_query(QNAME, "A", rdclass=dns.rdataclass.RdataClass.make(rdclass))
    wire = q.to_wire()
    question = wire[12 : 12 + wire[12:].index(b"\0") + 5]
    head = wire[:2] + struct.pack(">H4H", 0x8500, 1, 1, 0, 0) + question
    record = b"\xc0\x0c" + struct.pack(">HHIH", rtype, rdclass, 60, len(data)) + data
    return q, head + record


SHOWN = [
    # a name compressed in its data (a pointer to the question's name): BIND reads it in
    # every type; dnspython 2.9 refused it but in RFC 3597's list
    (1, 3, "c00c002a", "f.test. 52"),  # CH A (BIND compresses its own)
    (36, 1, "0001c00c", "1 f.test."),  # KX
    (39, 1, "c00c", "f.test."),  # DNAME
    (23, 1, "c00c", "f.test."),  # NSAP-PTR
    (64, 1, "0001c00c", "1 f.test."),  # SVCB
    (65, 1, "0001c00c", "1 f.test."),  # HTTPS
    (107, 1, "0001c00c", "1 f.test."),  # LP
    (260, 1, "0a03c00c", "10 0 3 f.test."),  # AMTRELAY
    (47, 1, "c00c000140", "f.test. A"),  # NSEC
    (46, 1, "0001080200000e1000000000000000001234c00cab",
     "A 8 2 3600 19700101000000 19700101000000 4660 f.test. qw=="),  # RRSIG
    # a TLSA/SMIMEA whose data is not its matching type's length: BIND shows it
    (52, 1, "030101" + "ab" * 20, "3 1 1 " + "AB" * 20),
    (52, 1, "03010100", "3 1 1 00"),
    (53, 1, "030102abab", "3 1 2 ABAB"),
    # BIND's names of RFC 1035's MD, MF, MB, MG, MR, MINFO (dnspython: `\\# N HEX`)
    (3, 1, "016100", "a."),
    (4, 1, "c00c", "f.test."),
    (7, 1, "016100", "a."),
    (8, 1, "016100", "a."),
    (9, 1, "c00c", "f.test."),
    (14, 1, "016100016200", "a. b."),
    (1, 4, "c0000201", "192.0.2.1"),  # HS A: BIND's IPv4 address (dnspython: \\# 4 HEX)
    # WKS without a port: no blank after the protocol
    (11, 1, "c000020106", "192.0.2.1 6"),
    (11, 1, "c00002010640", "192.0.2.1 6 1"),
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "rdclass", "data", "text"), SHOWN,
                         ids=[f"{t}-{c}-{d}" for t, c, d, _ in SHOWN])  # fmt: skip
def test_record_data_shown_as_dig(rtype: int, rdclass: int, data: str, text: str) -> None:
    q, wire = _reply(rtype, bytes.fromhex(data), rdclass)
    msg = _parse(q, wire)
    assert msg is not None
    [record] = _records(msg.answer)
    assert record.data == text
    assert record.name == QNAME


CUT = [(61, ""), (22, ""), (49, ""), (11, "c0000201")]  # OPENPGPKEY, NSAP, DHCID; WKS


@pytest.mark.parametrize(("rtype", "data"), CUT, ids=[str(t) for t, _ in CUT])
def test_an_empty_openpgpkey_nsap_dhcid_is_cut_short_as_dig(rtype: int, data: str) -> None:
    """BIND runs out of data in them (its best effort: no record, the malformed-packet
    warning, `N extra bytes at end`); dnspython took them as empty (dig 9.18.49)."""
    from packetlab.measure.dnsparse import _fill
    from packetlab.measure.dnsresult import DnsResult

    q, wire = _reply(rtype, bytes.fromhex(data))
    msg = _parse(q, wire)
    assert msg is not None and not msg.answer
    result = DnsResult(qname=QNAME, qtype="A", server="192.0.2.53", port=53, proto="udp")
    _fill(result, msg, wire)
    assert result.notes == [MALFORMED_NOTE]
    assert result.extra_bytes == len(data) // 2  # from its data on (dig: the A after it too)


@pytest.mark.parametrize("data", ["c00002010600", "c0000201064000"], ids=["zero", "zeros"])
def test_a_wks_bitmap_ending_in_a_zero_byte_is_bind_s_formerr(data: str) -> None:
    q, wire = _reply(11, bytes.fromhex(data))
    with pytest.raises(_Malformed) as e:
        _parse(q, wire)
    assert e.value.reason == "FORMERR"  # dig: `;; Got bad packet: FORMERR`


def test_bind_rdata_puts_dnspython_back_after_the_block() -> None:
    """Outside a reply's reading dnspython stays as it is (zone text, other users)."""
    bad_tlsa = bytes.fromhex("030101ab")
    IN, TLSA, MB = dns.rdataclass.IN, dns.rdatatype.TLSA, dns.rdatatype.MB
    get_name = dns.wire.Parser.get_name
    with bind_rdata(), bind_rdata():
        assert dns.rdata.from_wire(IN, TLSA, bad_tlsa, 0, 4).to_text() == "3 1 1 ab"
    assert dns.wire.Parser.get_name is get_name
    with pytest.raises(dns.exception.FormError):
        dns.rdata.from_wire(IN, TLSA, bad_tlsa, 0, 4)
    rd = dns.rdata.from_wire(IN, MB, b"\x01a\x00", 0, 3)
    assert isinstance(rd, dns.rdata.GenericRdata)


OWNERS = {"2t7b4g4vsa5smi47k61mv5bv1a22bojr": True, "nsec3": False, "nsec3w": False,
          "c0": True, "c1": False, "c000": True, "c001": False, "c0000": True, "c0001": False,
          "c000000": True, "c000004": False, "c00": False, "CCCCCCCC": True}  # fmt: skip


@pytest.mark.parametrize(("owner", "good"), OWNERS.items(), ids=list(OWNERS))
def test_an_nsec3_whose_owner_is_no_hash_is_bind_s_bad_owner(owner: str, good: bool) -> None:
    """BIND's message parser checks each NSEC3's owner: its first label base32hex
    without padding, the bits past its bytes zero (dig 9.18.49 on each of these names:
    `Got bad packet: bad owner name (check-names)`; dnspython took any)."""
    q = dns.message.make_query(f"{owner}.test.", "NSEC3")
    r = dns.message.make_response(q)
    nsec3 = "1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A"
    r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "NSEC3", nsec3))
    if good:
        assert _parse(q, r.to_wire()) is not None
        return
    with pytest.raises(_Malformed) as e:
        _parse(q, r.to_wire())
    assert e.value.reason == "bad owner name (check-names)"


@pytest.mark.parametrize(
    ("rtype", "text", "unknown"),
    [
        ("NID", "10 14:4fff:ff20:ee64", "\\# 10 000A00144FFFFF20EE64"),
        ("L64", "10 2001:db8:1140:1000", "\\# 10 000A20010DB811401000"),
        ("MB", "a.", "\\# 3 016100"),
        ("MINFO", "a. b.", "\\# 6 016100016200"),
    ],
    ids=["nid", "l64", "mb", "minfo"],
)
def test_unknownformat_of_types_dnspython_reads_no_bind_text_of(
    rtype: str, text: str, unknown: str
) -> None:
    """+unknownformat rewrites a record's text: an NID's or L64's as BIND writes it
    (groups without their leading zeros) and MB/MINFO's did not read back, so they
    stayed in words (dig 9.18.49: RFC 3597's form, as here)."""
    from packetlab.measure.dnstext import restyle

    assert restyle(text, rtype, unknown=True) == unknown
    assert restyle(text, rtype, linebreak="\n\t") == text  # (+multiline: one line, as BIND)


def test_nocrypto_omits_openpgpkey_s_key_and_zonemd_s_digest() -> None:
    """As dig 9.18.49's +nocrypto (ours showed them whole), +multiline's too."""
    from packetlab.measure.dnstext import presentation

    pgp = dns.rdata.from_text("IN", "OPENPGPKEY", "AwEAAaz/tAm8yTn4Mfeh5eyI")
    zmd = dns.rdata.from_text("IN", "ZONEMD", "2026120401 1 1 " + "AB" * 48)
    assert presentation(pgp, crypto=False) == "[omitted]"
    assert presentation(zmd, crypto=False) == "2026120401 1 1 [omitted]"
    assert presentation(pgp, linebreak="\n\t", crypto=False) == "( [omitted] )"
    assert presentation(zmd, linebreak="\n\t", crypto=False) == "2026120401 1 1 (\n\t[omitted] )"
    assert presentation(pgp) == "AwEAAaz/tAm8yTn4Mfeh5eyI"


def test_an_hs_a_in_rfc_3597_form_with_unknownformat() -> None:
    from packetlab.measure.dnstext import restyle

    assert restyle("192.0.2.1", "A", "HS", unknown=True) == "\\# 4 C0000201"


FAULTS = [
    (104, "000a00144fffff20ee", "FORMERR"),  # NID of 9 bytes (BIND: 10 or FORMERR)
    (104, "000a00144fffff20ee6400", "FORMERR"),
    (104, "", "FORMERR"),
    (105, "000a0a0102", "FORMERR"),  # L32 of 5
    (106, "000a20010db81140100000", "FORMERR"),  # L64 of 11
    (260, "00030161", None),  # AMTRELAY, its relay name cut: best effort
    (260, "000301610000", "extra input data"),  # a byte past its name
    (260, "000101020304ff", "FORMERR"),  # an IPv4 relay of 5 bytes
    (55, "01020001aabb0161", None),  # HIP, its rendezvous server's name cut
    (55, "01020005aabb", "FORMERR"),  # HIP, a key longer than the data
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "data", "said"), FAULTS, ids=[f"{t}-{d}" for t, d, _ in FAULTS])
def test_more_record_data_faults_in_bind_s_words(rtype: int, data: str, said: str | None) -> None:
    """dig 9.18.49 on 260 faulty records (each of 65 types one byte short, one byte
    long, one byte alone, empty): these 23 differed before (NID, L32, L64: FORMERR
    whatever the length; AMTRELAY's and HIP's names read as names)."""
    q, wire = _reply(rtype, bytes.fromhex(data))
    if said is None:
        msg = _parse(q, wire)
        assert msg is not None and not msg.answer
        return
    with pytest.raises(_Malformed) as e:
        _parse(q, wire)
    assert e.value.reason == said


NSEC3_HASHES = {  # (algorithm, next hash's bytes): BIND 9.18.49 reads it (dig: FORMERR if not)
    (1, 20): True, (1, 1): False, (1, 8): False, (1, 19): False, (1, 21): False,
    (2, 8): True, (0, 1): True,
}  # fmt: skip


@pytest.mark.parametrize(("alg", "size"), NSEC3_HASHES, ids=[f"{a}-{n}" for a, n in NSEC3_HASHES])
def test_an_nsec3_of_sha1_whose_hash_is_not_20_bytes_is_bind_s_formerr(alg: int, size: int) -> None:
    """BIND 9.18 refuses an NSEC3 of hash algorithm 1 (SHA-1) whose next hash is not its
    digest's 20 bytes: dig's `Got bad packet: FORMERR`, before the owner's check; another
    algorithm's any length (session 30, dig30: dnspython took each; `dns_odd_server.py`'s
    `r50-HEX` beside dig)."""
    data = bytes([alg, 1, 0, 12, 0, size]) + bytes(range(size))
    q, wire = _reply(50, data)
    if NSEC3_HASHES[(alg, size)]:  # read: then the owner's check (f.test. is no hash)
        with pytest.raises(_Malformed, match="bad owner name"):
            _parse(q, wire)
        return
    with pytest.raises(_Malformed) as e:
        _parse(q, wire)
    assert e.value.reason == "FORMERR"
