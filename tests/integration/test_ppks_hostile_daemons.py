"""Session 30 (ppks30): forged, odd and oversized agent certificates at a real
`twistd pktbroker` (AGENT mode, PROTOCOL.md §4.4, §4.6): each refused in one clear log
line, the broker serving a good subscriber after each, its memory bounded."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity
from ppks_factory import build, ext_raw, key, resign, std_exts, tlv
from pxworld import ProxyProc, register

from packetlab.ppks import CertType, PktlabHome, write_key_pair
from packetlab.ppks.cert import certificate_pem

home, broker, proxy = broker_world.home, broker_world.broker, broker_world.proxy  # fixtures

NOW_NB, NOW_NA = 0, 2**31 - 1  # the demo world's validity (§4.1)
OID_INFO = b"\x2a\x03\x01"


def _agent(name: str, **kw: object) -> bytes:
    """A self-signed agent certificate of `name`'s key, valid like the demo world's."""
    nb = int(kw.pop("nb", NOW_NB))  # type: ignore[call-overload]
    return build(name, name, std_exts(CertType.AGENT, name, name, **kw), nb=nb, na=NOW_NA)  # type: ignore[arg-type]


def _extra_ext(
    oid: bytes, value: bytes, critical: bool = False
) -> Callable[[list[bytes]], list[bytes]]:
    return lambda exts: [*exts, ext_raw(oid, value, critical)]


def _long_issuer(fields: list[bytes]) -> list[bytes]:
    rdn = tlv(0x31, tlv(0x30, tlv(0x06, b"\x55\x04\x03") + tlv(0x0C, b" ")))
    return [*fields[:3], tlv(0x30, rdn * 8000), *fields[4:]]


def _info(text: bytes) -> bytes:
    return tlv(0x04, text)


HOSTILE: dict[str, tuple[Callable[[str], list[bytes]], str]] = {
    "an extension OID of one 90 KB arc": (
        lambda n: [
            resign(
                _agent(n),
                n,
                mutate_exts=_extra_ext(b"\x2a" + b"\xff" * 90_000 + b"\x7f", b"\x04\x01x"),
            )
        ],
        "malformed_der: cert #0: OBJECT IDENTIFIER of over 64 bytes",
    ),
    "a leaf not yet valid": (
        lambda n: [_agent(n, nb=NOW_NA - 10)],
        "not_yet_valid: cert #0: valid from 2038-01-19T03:13:57Z",
    ),
    "a non-ASCII cert_desc": (
        lambda n: [_agent(n, info=b"cert_type=agent;cert_desc=caf\xc3\xa9;")],
        "bad_cert_info_syntax: cert #0: not_ascii at offset 29: byte is not ASCII",
    ),
    "cert_info twice, agent and pubcmd": (
        lambda n: [
            resign(
                _agent(n), n, mutate_exts=_extra_ext(OID_INFO, _info(b"cert_type=pubcmd;"), True)
            )
        ],
        "duplicate_extension: cert #0: extension 1.2.3.1 appears twice",
    ),
    "an issuer name of 8,000 attributes": (
        lambda n: [resign(_agent(n), n, mutate_fields=_long_issuer)],
        "too_many_name_parts: cert #0: issuer name of over 64 attributes",
    ),
    "a chain of 1,000 certificates": (
        lambda n: [_agent(n)] + [_agent(f"{n}-{i}") for i in range(999)],
        "excessive message size (the peer's certificate list is over",
    ),
    "a chain of 250 certificates (under OpenSSL's 100 KB)": (
        lambda n: [_agent(n)] + [_agent(f"{n}-{i}") for i in range(249)],
        "too_many_certs: 250 certificates (max 32)",
    ),
    "a certificate of 15 MiB": (
        lambda n: [
            resign(
                _agent(n), n, mutate_exts=_extra_ext(b"\x2a\x03\x09", tlv(0x04, bytes(15 << 20)))
            )
        ],
        "excessive message size (the peer's certificate list is over",
    ),
}


# The broker's resident memory after every case: it never holds what a peer presents
# past its 100 KB (a 15 MiB certificate is cut off by OpenSSL as it arrives).
RSS_BOUND_MB = 300


def _rss_mb(broker: BrokerProcess) -> float:
    assert broker.proc is not None
    status = Path(f"/proc/{broker.proc.pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024


def _present(port: int, certs: list[bytes], key_path: Path) -> str:
    """Connect with `certs` (leaf first) and read until the daemon closes; the alert."""
    chain = key_path.with_suffix(".chain")
    chain.write_bytes(b"".join(certificate_pem(c) for c in certs))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(chain), str(key_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        tls = ctx.wrap_socket(raw)
        data = tls.recv(1)  # TLS 1.3: a refused client certificate shows at the first read
        return f"read {data!r}" if data else "closed"
    except (ssl.SSLError, OSError) as e:
        return str(e)
    finally:
        raw.close()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_agent_certificate_is_one_line_and_the_broker_serves_on(
    case: str, home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    make, line = HOSTILE[case]
    name = f"ppks30-{case}"
    key_path = tmp_path / "k.key"
    write_key_pair(key_path, key(name))
    since = len(broker.output())
    # an alert, or a broken pipe when the broker stops reading a list too large
    assert not _present(broker.sub_port, make(name), key_path).startswith("read")
    out = broker.wait_log(line, since=since)
    refusals = [x for x in out[since:].splitlines() if "refused TLS peer" in x]
    assert len(refusals) == 1 and line in refusals[0] and len(refusals[0]) < 400, refusals
    assert _rss_mb(broker) < RSS_BOUND_MB
    ident = Identity(home, broker.workdir, "ppks30-good")
    ident.subscribe(broker.sub_port).close()
    assert broker.running


@pytest.mark.parametrize(
    "case", ["an extension OID of one 90 KB arc", "a chain of 1,000 certificates"]
)
def test_a_hostile_manager_certificate_at_the_proxy_setup_port(
    case: str, proxy: ProxyProc, tmp_path: Path
) -> None:
    """The proxy's setup port checks a manager's certificate in its own hand-off (not
    the gate): the same one line, and a manager registers after it."""
    make, line = HOSTILE[case]
    name = f"ppks30-px-{case}"
    key_path = tmp_path / "k.key"
    write_key_pair(key_path, key(name))
    before = proxy.text().count(line)
    assert not _present(proxy.setup, make(name), key_path).startswith("read")
    deadline = time.monotonic() + 15
    while proxy.text().count(line) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [x for x in proxy.text().splitlines() if line in x]
    assert len(lines) == before + 1 and len(lines[-1]) < 400, proxy.text()[-2000:]
    assert proxy.rss_kib() < RSS_BOUND_MB * 1024
    register(proxy.setup, "ppks30good").close()
