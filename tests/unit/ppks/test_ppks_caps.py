"""Caps on what one certificate may list (docs/ppks.md "Size caps"): any stranger can make
a CA-type certificate and present it, and every presented one is parsed on each
handshake. Each cap: the most allowed is accepted, one more is refused with its reason,
counted before any entry is parsed. Timings are in benchmarks/bench_cert_parse.py."""

from __future__ import annotations

import ipaddress

import pytest
from ppks_factory import NOW, build, good, std_exts

from packetlab.ppks import CertificateError, CertType, Reason, parse_certificate
from packetlab.ppks.cert import MAX_NV_PAIRS
from packetlab.ppks.chainlimits import combine_limits
from packetlab.ppks.limits import MAX_BURST_RATES, MAX_VALID_DEST, DestList, parse_valid_dest
from packetlab.ppks.verify import AuthMode, ChainError, verify_chain

EXP = CertType.EXPPRIV


def _ca(limit: bytes | None = None, info: bytes | None = None) -> bytes:
    return build("eop", "exper", std_exts(EXP, "eop", "exper", limit=limit, info=info))


def _dests(n: int) -> bytes:
    return ",".join(f"10.{i // 256}.{i % 256}.0/24" for i in range(n)).encode()


def test_valid_dest_cap() -> None:
    c = parse_certificate(_ca(b"valid_dest=" + _dests(MAX_VALID_DEST) + b";"))
    assert c.limits is not None and len(c.limits.valid_dest or ()) == MAX_VALID_DEST
    with pytest.raises(CertificateError) as e:
        parse_certificate(_ca(b"valid_dest=" + _dests(MAX_VALID_DEST + 1) + b";"))
    assert e.value.reason is Reason.TOO_MANY_VALID_DEST
    assert e.value.field == "valid_dest"
    assert f"{MAX_VALID_DEST + 1} networks (at most {MAX_VALID_DEST}" in str(e.value)


def test_the_adversarial_certificate_is_refused_by_the_chain_check() -> None:
    """The eyes18 finding: a self-made CA with 3,000 valid_dest networks (80 KB) next to
    an agent leaf was parsed in full (29-52 ms) and then ignored; now refused, named."""
    nets = ",".join(
        f"2001:db8:{i:x}:ffff:ffff:ffff:ffff:ffff/128" if i % 2 else f"10.{i // 256}.0.0/16"
        for i in range(3000)
    )
    big = build("evil", "evil", std_exts(EXP, "evil", "evil", limit=f"valid_dest={nets};".encode()))
    assert len(big) > 80_000
    with pytest.raises(ChainError) as e:
        verify_chain(AuthMode.AGENT, [good(CertType.AGENT, "a", "a"), big], (), NOW)
    assert e.value.reason is Reason.TOO_MANY_VALID_DEST and e.value.index == 1
    assert len(str(e.value)) < 200  # the refusal line does not quote 80 KB


@pytest.mark.parametrize("field", ["max_burst_rate_byte", "max_burst_rate_pkt"])
def test_burst_rate_cap(field: str) -> None:
    ok = ",".join(f"{i + 1}/1000" for i in range(MAX_BURST_RATES))
    c = parse_certificate(_ca(f"{field}={ok};".encode()))
    assert c.limits is not None and len(getattr(c.limits, field)) == MAX_BURST_RATES
    with pytest.raises(CertificateError) as e:
        parse_certificate(_ca(f"{field}={ok},1/1;".encode()))
    assert e.value.reason is Reason.TOO_MANY_BURST_RATES and e.value.field == field


@pytest.mark.parametrize("ext", ["cert_limit", "cert_info"])
def test_pair_cap(ext: str) -> None:
    def pairs(n: int) -> bytes:
        return "".join(f"x{i}=1;" for i in range(n)).encode()

    def make(n: int) -> bytes:
        if ext == "cert_limit":
            return _ca(limit=pairs(n))
        return _ca(info=b"cert_type=exppriv;" + pairs(n - 1))

    parse_certificate(make(MAX_NV_PAIRS))
    with pytest.raises(CertificateError) as e:
        parse_certificate(make(MAX_NV_PAIRS + 1))
    assert e.value.reason is Reason.TOO_MANY_NV_PAIRS
    assert f"{ext} of {MAX_NV_PAIRS + 1} pairs" in str(e.value)


@pytest.mark.parametrize(
    "text",
    ["1.2.3.4", "1.2.3.4/0", "10.0.0.1/8", "::", "::1", "2001:DB8::1/33", "::ffff:1.2.3.4",
     "1:2:3:4:5:6:7::", "fe80::/10", "255.255.255.255/32"],
)  # fmt: skip
def test_valid_dest_parses_as_ipaddress_does(text: str) -> None:
    (net,) = parse_valid_dest("valid_dest", text)
    assert net == ipaddress.ip_network(text, strict=False)


@pytest.mark.parametrize(
    "text",
    ["01.2.3.4", "1.2.3", "1.2.3.256", "1.2.3.4/33", "::1/129", "1:2:3:4:5:6:7:8::",
     "1:2:3:4:5:6::7:8", "12345::", "::01.2.3.4", "", "/8", "1.2.3.4/", "1.2.3.4/0x8",
     "1.2.3.4/0008"],
)  # fmt: skip
def test_valid_dest_refuses_what_ipaddress_refuses(text: str) -> None:
    with pytest.raises(CertificateError) as e:
        parse_valid_dest("valid_dest", text)
    assert e.value.reason is Reason.BAD_VALID_DEST


def test_dest_matching_without_ipaddress_objects() -> None:
    dests = parse_valid_dest("valid_dest", "10.0.0.0/8,2001:db8::/32,192.0.2.7")
    assert isinstance(dests, DestList)
    limits = combine_limits(
        [parse_certificate(_ca(b"valid_dest=10.0.0.0/8,2001:db8::/32,192.0.2.7;"))]
    )
    for addr, want in [
        ("10.255.0.1", True), ("11.0.0.1", False), ("192.0.2.7", True), ("192.0.2.8", False),
        ("2001:db8:ffff::1", True), ("2001:db9::1", False), ("::ffff:10.0.0.1", False),
    ]:  # fmt: skip
        assert limits.dest_allowed(addr) is want, addr
    assert dests._nets is None  # matching made no ipaddress network
    assert [str(n) for n in dests] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]


def test_a_chain_seen_again_is_neither_parsed_nor_signature_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from packetlab.ppks import cert as cert_mod

    pubcmd, exppriv = good(CertType.PUBCMD, "exper", "xc"), good(EXP, "eop", "exper")
    calls = {"parse": 0, "verify": 0}
    real_parse = cert_mod._parse

    def counting_parse(data: bytes) -> cert_mod.Certificate:
        calls["parse"] += 1
        return real_parse(data)

    monkeypatch.setattr(cert_mod, "_parse", counting_parse)
    monkeypatch.setattr(cert_mod, "_PARSED", cert_mod.LRU(256))
    monkeypatch.setattr(cert_mod, "_SIGNED", cert_mod.LRU(512))
    for _ in range(3):
        chain = verify_chain(AuthMode.ENDPOINT_AUTH_CONTROLLER, [pubcmd, exppriv], (), NOW)
        assert chain.leaf.cert_type is CertType.PUBCMD
    assert calls["parse"] == 2  # once per certificate, not once per check
    assert len(cert_mod._SIGNED) == 1
    # a wrong signer is a cached False, never a True
    leaf = parse_certificate(pubcmd)
    assert not leaf.signed_by(bytes(32)) and not leaf.signed_by(bytes(32))
    # big certificates are not kept (the caches stay small); refusals are not cached
    big = _ca(b"valid_dest=" + _dests(MAX_VALID_DEST) + b";")
    assert len(big) > cert_mod.MAX_CACHED_DER
    parse_certificate(big)
    parse_certificate(big)
    assert calls["parse"] == 4 and len(cert_mod._PARSED) == 2


def test_the_lru_keeps_the_most_recently_used() -> None:
    from packetlab.ppks.certcache import LRU

    c: LRU[int, str] = LRU(2)
    c.put(1, "a")
    c.put(2, "b")
    assert c.get(1) == "a"
    c.put(3, "c")  # 2 was the least recently used
    assert (c.get(1), c.get(2), c.get(3)) == ("a", None, "c")
