"""What a presented certificate chain costs to check (the PPKS part of a handshake).

Any stranger can make a CA-type certificate with a big cert_limit and present it next to
an agent leaf (or in a broker's xcerts): every presented certificate is parsed before the
chain search. Each case is `verify_chain` on DER bytes, as a handshake runs it; the
figure is the median of many runs (these machines stall for ms now and then).

Run from the repository root: ``python -m benchmarks.bench_cert_parse [--json PATH]``.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.common import environment, fmt, markdown_table, median, write_json
from packetlab.ppks import issue_certificate
from packetlab.ppks.verify import AuthMode, ChainError, verify_chain

NOW = 1_700_000_000


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def _raw_ca(limit: str) -> bytes:
    """A self-made exppriv with `limit` as cert_limit, built without our checks (so over
    the caps too), with the cryptography package as any stranger could."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    k = _key("stranger")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")])
    kid = hashlib.sha256(
        k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).digest()

    def octet(b: bytes) -> bytes:
        n = len(b)
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([n]) if n < 0x80 else bytes([0x80 | len(size)]) + size
        return b"\x04" + head + b

    def ext(oid: str, text: bytes) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), octet(text))

    b = (
        x509.CertificateBuilder()
        .serial_number(1)
        .issuer_name(name)
        .subject_name(name)
        .public_key(k.public_key())
        .not_valid_before(datetime.datetime.fromtimestamp(NOW - 86400, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(NOW + 86400, datetime.UTC))
        .add_extension(x509.AuthorityKeyIdentifier(kid, None, None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(kid), critical=False)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, False, False, False), True
        )
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .add_extension(ext("1.2.3.1", b"cert_type=exppriv;"), critical=True)
        .add_extension(ext("1.2.3.3", limit.encode()), critical=True)
    )
    return b.sign(k, None).public_bytes(serialization.Encoding.DER)


def _v6(i: int) -> str:
    return f"2001:db8:{i:x}:ffff:ffff:ffff:ffff:ffff/128"


def cases() -> dict[str, tuple[AuthMode, list[bytes]]]:
    agent = issue_certificate("agent", _key("a"), _key("a"), NOW - 86400, NOW + 86400).der
    pubcmd = issue_certificate("pubcmd", _key("exp"), _key("ctl"), NOW - 86400, NOW + 86400)
    exppriv = issue_certificate(
        "exppriv", _key("eop"), _key("exp"), NOW - 86400, NOW + 86400,
        limits="max_send_byte=1000000;valid_dest=192.0.2.0/24,2001:db8::/32;",
    )  # fmt: skip
    # the adversarial finding: 3,000 networks, 80 KB
    finding = ",".join(
        f"{_v6(i)}" if i % 2 else f"10.{i // 256}.{i % 256}.0/24" for i in range(3000)
    )
    # the most a certificate may hold now: 1,024 long IPv6 entries, 62 aux pairs of 500 B
    most = ",".join(_v6(i) for i in range(1024))
    aux = "".join(f"x{i}={'a' * 500};" for i in range(62))
    pairs = "".join(f"y{i}={'b' * 1500};" for i in range(64))
    return {
        "pubcmd + exppriv (ppksman-like)": (
            AuthMode.ENDPOINT_AUTH_CONTROLLER, [pubcmd.der, exppriv.der]
        ),
        "agent + stranger CA, 3,000 valid_dest (80 KB, refused)": (
            AuthMode.AGENT, [agent, _raw_ca(f"valid_dest={finding};")]
        ),
        "agent + stranger CA, 1,024 valid_dest + 62 aux (~75 KB, the most accepted)": (
            AuthMode.AGENT, [agent, _raw_ca(f"valid_dest={most};{aux}")]
        ),
        "agent + stranger CA, 64 pairs of 1.5 KB (~97 KB)": (
            AuthMode.AGENT, [agent, _raw_ca(pairs)]
        ),
        "agent + stranger CA, 65 pairs (refused)": (
            AuthMode.AGENT, [agent, _raw_ca("".join(f"z{i}=1;" for i in range(65)))]
        ),
    }  # fmt: skip


def measure(mode: AuthMode, chain: Sequence[bytes], runs: int, *, warm: bool) -> tuple[float, str]:
    """Median seconds of one check; `warm`: the same chain again (the parse and signature
    caches hold it), else as a chain never seen (caches emptied first)."""
    from packetlab.ppks import cert

    times = []
    outcome = "accepted"
    for _ in range(runs):
        if not warm:
            cert._PARSED.clear()
            cert._SIGNED.clear()
        t = time.perf_counter()
        try:
            verify_chain(mode, chain, (), NOW)
        except ChainError as e:
            outcome = e.reason.value
        times.append(time.perf_counter() - t)
    return median(times), outcome


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    rows = []
    data: dict[str, Any] = {"environment": environment(), "cases": {}}
    for label, (mode, chain) in cases().items():
        p50, outcome = measure(mode, chain, args.runs, warm=False)
        warm, _ = measure(mode, chain, args.runs, warm=True)
        size = sum(map(len, chain))
        rows.append(
            [label, f"{size:,}", outcome, fmt(p50 * 1e3, digits=3), fmt(warm * 1e3, digits=3)]
        )
        data["cases"][label] = {
            "bytes": size,
            "outcome": outcome,
            "median_s": p50,
            "median_warm_s": warm,
        }
    print(markdown_table(["chain", "bytes", "outcome", "median ms", "again (cached) ms"], rows))
    if args.json:
        write_json(args.json, data)


if __name__ == "__main__":
    main()
