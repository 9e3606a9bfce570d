"""TSIG as dig 9.18 does it (measure/dnstsig.py): the signed query byte for byte against
queries captured from dig, each way a reply fails in BIND's order and words, the
multi-message chaining of a transfer (RFC 8945 5.3.1), dig's -y and -k keys, and
dns_query signing and checking through the scripted endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.renderer
import dns.rrset
import dns.tsig
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig

from packetlab.measure import dnstsig
from packetlab.measure.dns import dns_query
from packetlab.measure.dnsquery import _make_query

SERVER = ("192.0.2.53", 53)
SECRET = "c2VjcmV0c2VjcmV0"  # "secretsecret"

# `dig @127.0.0.1 -p P +tries=1 +time=1 -y KEY a.test` to a UDP listener (dig 9.18.49):
# hmac-sha256 given, and no algorithm (dig 9.18: hmac-md5, not hmac-sha256)
DIG_SHA256 = bytes.fromhex(
    "87d50120000100000000000201610474657374000001000100002904d000000000000c000a0008"
    "2610ff8b5c647fa402746b04746573740000fa00ff00000000003d0b686d61632d7368613235360000"
    "006b13ad9a012c0020b771631955dacd22af26571bbf67314de43c4b6a3748e55dc154a14839e8d4"
    "8387d500000000"
)
DIG_DEFAULT = bytes.fromhex(
    "84a70120000100000000000201610474657374000001000100002904d000000000000c000a0008"
    "3e364c45f9e74ba102746b04746573740000fa00ff00000000003a08686d61632d6d6435077369"
    "672d616c670372656703696e740000006b13ae11012c0010da843af1b80601cfc9b4eb882cbe74c7"
    "84a700000000"
)


@pytest.mark.parametrize(("y", "dig"), [(f"hmac-sha256:tk.test:{SECRET}", DIG_SHA256),
                                         (f"tk.test:{SECRET}", DIG_DEFAULT)])  # fmt: skip
def test_the_signed_query_is_digs_bytes(y: str, dig: bytes, monkeypatch: Any) -> None:
    """The same ID, client cookie and time: dig's bytes (the TSIG owner written whole,
    the MAC the same)."""
    sent = dns.message.from_wire(dig, keyring=False)
    assert sent.tsig is not None
    query = _make_query(dns.name.from_text("a.test"), "A", 0, 1232, False, True, "IN",
                        False, sent.options[0].to_wire())  # fmt: skip
    query.id = sent.id
    key = dnstsig.key_from_y(y).key
    assert key is not None
    dnstsig.sign(query, key)
    monkeypatch.setattr(dns.renderer.time, "time", lambda: sent.tsig[0].time_signed)
    assert dnstsig.render(query) == dig
    assert dnstsig.query_mac(query) == sent.tsig[0].mac


KEY = dnstsig.TsigKey("tk.test.", "hmac-sha256", b"secretsecret")
NOW = 1796450000


def signed(wire: bytes, prior: bytes, key: dnstsig.TsigKey = KEY, *, error: int = 0,
           when: int = NOW, owner: str = "tk.test.", maclen: int | None = None,
           first: bool = True, pending: bytes = b"",
           secret: bytes | None = None) -> bytes:  # fmt: skip
    """`wire` with a TSIG appended, computed here as RFC 8945 says (not by the code
    under test): the prior MAC, unsigned messages since, the message, the variables
    (a transfer's later messages: the times only)."""
    alg = dns.name.from_text(key.algorithm_name)
    owner_wire = bytes(dns.name.from_text(owner).to_wire() or b"")
    alg_wire = bytes(alg.to_wire() or b"")
    times = struct.pack(">HIH", when >> 32, when & 0xFFFFFFFF, 300)
    data = struct.pack(">H", len(prior)) + prior + pending + wire
    if first:
        data += owner_wire + struct.pack(">HI", 255, 0)
        data += alg_wire + times + struct.pack(">HH", error, 0)
    else:
        data += times
    digest = hmac.new(secret or key.secret, data, hashlib.sha256).digest()
    mac = b"" if maclen == 0 else digest[:maclen]
    rdata = alg_wire + times[:6] + struct.pack(">HH", 300, len(mac)) + mac
    rdata += wire[:2] + struct.pack(">HH", error, 0)
    out = bytearray(wire)
    out += owner_wire + struct.pack(">HHIH", 250, 255, 0, len(rdata))
    out += rdata
    out[10:12] = struct.pack(">H", struct.unpack(">H", out[10:12])[0] + 1)
    return bytes(out)


def reply(n: int = 0) -> bytes:
    r = dns.message.make_response(dns.message.make_query("a.test", "A"))
    r.id = 4242
    r.answer.append(dns.rrset.from_text("a.test.", 300, "IN", "A", f"192.0.2.{n + 1}"))
    return bytes(r.to_wire())


QMAC = b"\x01" * 32


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({}, None),
        ({"secret": b"another"}, "tsig verify failure"),
        ({"owner": "other.key."}, "tsig verify failure"),
        ({"when": NOW - 301}, "clocks are unsynchronized"),
        ({"when": NOW + 301}, "clocks are unsynchronized"),
        ({"error": 18}, "clocks are unsynchronized"),
        ({"error": 17}, "tsig indicates error"),
        ({"error": 17, "maclen": 0}, "tsig indicates error"),
        ({"error": 16, "maclen": 0}, "tsig indicates error"),
        ({"error": 18, "maclen": 0}, "tsig verify failure"),  # an empty MAC for BADTIME
        ({"maclen": 0}, "tsig verify failure"),
        ({"maclen": 8}, "FORMERR"),  # below 10 bytes, or half the digest
        ({"maclen": 16}, "tsig verify failure"),  # truncated: BADTRUNC
    ],
)
def test_a_reply_is_checked_in_binds_order(options: dict[str, Any], words: str | None) -> None:
    wire = signed(reply(), QMAC, **options)
    assert dnstsig.Verifier(KEY, QMAC, now=lambda: NOW).check(wire) == words


def test_an_unsigned_reply_and_another_request_mac() -> None:
    check = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW).check
    assert check(reply()) == "expected a TSIG or SIG(0)"
    other = dnstsig.Verifier(KEY, b"\x02" * 32, now=lambda: NOW)
    assert other.check(signed(reply(), QMAC)) == "tsig verify failure"


def test_a_transfer_chains_each_mac_to_the_one_before() -> None:
    """RFC 8945 5.3.1: the first message signed as a reply, the later ones over the prior
    MAC, the unsigned messages since and the times; (strict) up to 99 unsigned in a row,
    the last signed."""
    first = signed(reply(0), QMAC)
    mac1 = dnstsig._tsig_at(first)[1]["mac"]  # type: ignore[index]
    middle = [reply(1), reply(2)]
    last = signed(reply(3), mac1, first=False, pending=b"".join(middle))
    v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW)
    assert [v.check(w) for w in (first, *middle, last)] == [None] * 4 and v.finish() is None
    # a MAC that does not verify: the next one chains from it all the same, as dig
    bad = bytearray(signed(reply(1), mac1, first=False))
    bad[-38:-6] = bytes(32)  # its MAC (32 bytes, then original ID, error, other length)
    after = signed(reply(2), bytes(32), first=False)
    v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW)
    assert [v.check(w) for w in (first, bytes(bad), after)] == [None, "tsig verify failure", None]
    # the middle changed, or left out: the last MAC does not verify
    v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW)
    assert [v.check(w) for w in (first, middle[0], last)][-1] == "tsig verify failure"
    # ends unsigned; 100 unsigned in a row: dig 9.18 takes both, RFC 8945 (strict) neither
    for strict, words in ((False, None), (True, "expected a TSIG or SIG(0)")):
        v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW, strict=strict)
        assert v.check(first) is None and v.check(reply(1)) is None
        assert v.finish() == words
        v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW, strict=strict)
        results = [v.check(w) for w in (first, *[reply(1)] * 100)]
        assert results[:100] == [None] * 100 and results[100] == words
    # a first message unsigned
    v = dnstsig.Verifier(KEY, QMAC, now=lambda: NOW)
    assert v.check(reply(0)) == "expected a TSIG or SIG(0)"


@pytest.mark.parametrize(
    ("y", "warnings", "failed"),
    [
        (f"hmac-sha384:k.test:{SECRET}", [], None),
        (f"HMAC-SHA1:k.test:{SECRET}", [], None),
        ("hmac-sha256:k.test:!!notb64", [], ";; Couldn't create key k.test: bad base64 encoding"),
        (f"hmac-foo:k.test:{SECRET}", [";; Warning, ignoring invalid TSIG algorithm hmac-foo"],
         ";; Couldn't create key k.test: algorithm is unsupported"),
        ("a:b:c:d", [";; Warning, ignoring invalid TSIG algorithm a"],
         ";; Couldn't create key b: bad base64 encoding"),
        (f"hmac-md5:bad..name:{SECRET}", [], ";; Couldn't create key bad..name: empty label"),
        # dig reads the fields with strtok: empty ones are skipped
        ("hmac-sha256:k.test:", [], ";; Couldn't create key hmac-sha256: bad base64 encoding"),
        (f"::k.test::{SECRET}", [], None),
    ],
)  # fmt: skip
def test_y_keys_as_dig_makes_them(y: str, warnings: list[str], failed: str | None) -> None:
    made = dnstsig.key_from_y(y)
    assert (made.warnings, made.failed) == (warnings, failed)
    assert (made.key is None) == (failed is not None)


def test_y_words_dig_refuses_and_short_keys() -> None:
    for y in ("k.test", "k.test:", ":c2Vj"):
        with pytest.raises(dnstsig.KeyUsageError):
            dnstsig.key_from_y(y)
    made = dnstsig.key_from_y("hmac-sha256:k.test:c2VjcmV0")  # 6 bytes: BIND's log line
    assert made.key is not None and made.warnings[0].endswith(
        " the key 'k.test' is too short to be secure"
    )
    assert made.key.secret == b"secret" and made.key.algorithm_name == "hmac-sha256."


def test_key_files_as_dig_reads_them(tmp_path: Path) -> None:
    def read(text: str) -> dnstsig.KeyResult:
        (tmp_path / "k").write_text(text)
        return dnstsig.key_from_file(str(tmp_path / "k"))

    good = read(f'/* c */ key "k.test" {{\n algorithm hmac-sha512; # x\n secret "{SECRET}";\n}};')
    assert good.key == dnstsig.TsigKey("k.test", "hmac-sha512", b"secretsecret")
    where = str(tmp_path / "k")
    for text, why in ((f'key "k" {{ algorithm hmac-md5; secret "{SECRET}" }};', "failure"),
                      ("garbage", "unexpected token"), ("", "not found"),
                      (f'key a {{ algorithm hmac-md5; secret "{SECRET}"; }};\n'
                       f'key b {{ algorithm hmac-md5; secret "{SECRET}"; }};', "already exists"),
                      ('key "k" { algorithm hmac-md5; secret "x',
                       "unexpected end of input")):  # fmt: skip
        made = read(text)
        assert made.key is None and made.warnings == [f"Couldn't read key from {where}: {why}"]
    missing = dnstsig.key_from_file(str(tmp_path / "nope"))
    assert missing.warnings == [f"Couldn't read key from {tmp_path / 'nope'}: file not found"]
    for text in ('key "k" { secret "c2Vj"; };', 'key "k" { algorithm hmac-md5; };'):
        with pytest.raises(dnstsig.KeyUsageError, match="key must have algorithm and secret"):
            read(text)


def tsig_server(how: str = "good"):  # type: ignore[no-untyped-def]
    """A UDP server that checks the query's TSIG with the key and signs its reply
    (dnspython's TSIG, not ours), or not (`how`)."""
    keyring = {dns.name.from_text("tk.test."): dns.tsig.Key("tk.test.", SECRET, "hmac-sha256")}

    def serve(data: bytes) -> list[bytes]:
        q = dns.message.from_wire(data, keyring=keyring)  # raises on a bad query MAC
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
        if how == "unsigned":
            r.tsig = None
        elif how == "badmac":
            r.keyring = dns.tsig.Key("tk.test.", base64.b64encode(b"x" * 12), "hmac-sha256")
        return [bytes(r.to_wire())]

    return serve


@pytest.mark.parametrize(("how", "note"), [
    ("good", None),
    ("unsigned", "Couldn't verify signature: expected a TSIG or SIG(0)"),
    ("badmac", "Couldn't verify signature: tsig verify failure"),
])  # fmt: skip
def test_dns_query_signs_and_checks(how: str, note: str | None) -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = tsig_server(how)
    key = dnstsig.key_from_y(f"hmac-sha256:tk.test:{SECRET}").key
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", tsig=key))
    assert r.error is None and r.answer_set() == {("a.test.", "A", "192.0.2.7")}
    assert r.tsig_verified is (note is None)
    assert r.notes == ([note] if note else [])
    assert r.to_dict()["tsig_verified"] is (note is None)
    if how != "unsigned":
        assert r.tsig and r.tsig[0].name == "tk.test."
    plain = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53"))  # no key
    assert plain.tsig_verified is None and "tsig_verified" not in plain.to_dict()


def test_queries_set_ad_as_dig() -> None:
    q = _make_query(dns.name.from_text("a.test"), "A", 0, 1232, False, True)
    assert q.flags & dns.flags.AD and q.flags & dns.flags.RD


# `dig ... +nocookie -y Y a.test` (dig 9.18.49) to a UDP listener: truncated MACs (dig's
# hmac-sha256-128: 16 bytes; hmac-md5-80: 10)
DIG_TRUNCATED = {
    "hmac-sha256-128:tk.test:c2VjcmV0c2VjcmV0": bytes.fromhex(
        "ade10120000100000000000201610474657374000001000100002904d000000000000002746b0474"
        "6573740000fa00ff00000000002d0b686d61632d7368613235360000006b13d340012c0010210c82"
        "30c4774b300d21026572938e6aade100000000"
    ),
    "hmac-md5-80:tk.test:c2VjcmV0c2VjcmV0": bytes.fromhex(
        "8e0c0120000100000000000201610474657374000001000100002904d000000000000002746b0474"
        "6573740000fa00ff00000000003408686d61632d6d6435077369672d616c670372656703696e7400"
        "00006b13d341012c000ae7bdafc5d26039083a998e0c00000000"
    ),
}


@pytest.mark.parametrize("y", list(DIG_TRUNCATED))
def test_a_truncated_mac_is_digs_bytes(y: str, monkeypatch: Any) -> None:
    dig = DIG_TRUNCATED[y]
    sent = dns.message.from_wire(dig, keyring=False)
    assert sent.tsig is not None
    query = _make_query(dns.name.from_text("a.test"), "A", 0, 1232, False, True)
    query.id = sent.id
    key = dnstsig.key_from_y(y).key
    assert key is not None and key.mac_size == len(sent.tsig[0].mac)
    dnstsig.sign(query, key)
    monkeypatch.setattr(dns.renderer.time, "time", lambda: sent.tsig[0].time_signed)
    assert dnstsig.render(query) == dig
    assert dnstsig.query_mac(query) == sent.tsig[0].mac  # the request MAC as sent


@pytest.mark.parametrize(
    ("y", "bits", "error"),
    [
        ("hmac-sha256-128", 128, None),
        ("HMAC-SHA256-130", 136, None),  # rounded up to bytes, as BIND
        ("hmac-sha256-0", 0, None),  # the whole digest
        ("hmac-sha512-256", 256, None),
        ("hmac-sha256-300", 0, "invalid digest-bits [0..256] '300': out of range"),
        ("hmac-md5-129", 0, "invalid digest-bits [0..128] '129': out of range"),
        ("hmac-sha1-abc", 0, "invalid digest-bits [0..160] 'abc': not a valid number"),
        ("hmac-sha256-", 0, "invalid digest-bits [0..256] '': not a valid number"),
    ],
)
def test_truncated_algorithms_as_dig_reads_them(y: str, bits: int, error: str | None) -> None:
    if error is not None:
        with pytest.raises(dnstsig.KeyUsageError, match=error.replace("[", r"\[")):
            dnstsig.key_from_y(f"{y}:k.test:{SECRET}")
        return
    key = dnstsig.key_from_y(f"{y}:k.test:{SECRET}").key
    assert key is not None and key.bits == bits and "-" not in key.algorithm[5:]


def test_a_truncated_key_checks_replies_with_binds_badtrunc_rule() -> None:
    """With hmac-sha256-128 a 16-byte MAC verifies (without: BADTRUNC), a longer one
    too; one shorter than the key's bits does not; 8 bytes is FORMERR either way."""
    short = dnstsig.TsigKey("tk.test.", "hmac-sha256", b"secretsecret", bits=128)
    for maclen, words in ((16, None), (32, None), (20, None), (8, "FORMERR")):
        wire = signed(reply(), QMAC, maclen=maclen)
        assert dnstsig.Verifier(short, QMAC, now=lambda: NOW).check(wire) == words, maclen
    longer = dnstsig.TsigKey("tk.test.", "hmac-sha256", b"secretsecret", bits=160)
    wire = signed(reply(), QMAC, maclen=16)
    assert dnstsig.Verifier(longer, QMAC, now=lambda: NOW).check(wire) == "tsig verify failure"


def test_a_truncated_key_file_as_dig(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(
        f'key "k.test" {{ algorithm hmac-sha256-128; secret "{SECRET}"; }};'
    )
    made = dnstsig.key_from_file(str(tmp_path / "k"))
    assert made.key == dnstsig.TsigKey("k.test", "hmac-sha256", b"secretsecret", bits=128)
