"""What reading a TLS peer's presented chain out of pyOpenSSL costs, before the PPKS check.

`packetlab.tls.peer._presented_chain` takes the certificates of a finished handshake as
DER bytes. It used to ask pyOpenSSL for `cryptography` objects (`as_cryptography=True`:
each certificate is written out by OpenSSL, parsed again by `cryptography`'s Rust X.509
parser) and wrote them out again; it now writes OpenSSL's certificates out once
(`crypto.dump_certificate`). Both ways run here on the same connection, alternated, so
the ratio is measured side by side. The handshake is done once, in memory (pyOpenSSL
memory BIOs), with a client presenting an agent leaf plus a stranger's CA-type
certificate of `--kb` KB.

Run from the repository root: ``python -m benchmarks.bench_peer_chain [--kb 100]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from benchmarks.bench_cert_parse import NOW, _key, _raw_ca
from benchmarks.common import markdown_table, median
from packetlab.ppks import issue_certificate
from packetlab.tls.peer import _presented_chain


def _old_presented_chain(conn: SSL.Connection, is_client: bool) -> list[bytes]:
    """The conversion as it was (through `cryptography` objects and back to DER)."""
    leaf: Any = conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    rest: Any = conn.get_peer_cert_chain(as_cryptography=True) or []
    ders = [c.public_bytes(Encoding.DER) for c in rest]
    if is_client and ders:
        ders = ders[1:]
    return [leaf.public_bytes(Encoding.DER), *ders]


def _pump(client: SSL.Connection, server: SSL.Connection) -> None:
    """Run the handshake to its end (both sides), moving bytes between the memory BIOs."""
    for _ in range(50):
        done = 0
        for c in (client, server):
            try:
                c.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        for src, dst in ((client, server), (server, client)):
            try:
                dst.bio_write(src.bio_read(1 << 20))
            except SSL.WantReadError:
                pass
        if done == 2:
            return
    raise RuntimeError("the in-memory handshake did not finish")


def handshake(extra_kb: int) -> SSL.Connection:
    """A server-side connection whose client presented agent + a CA of ~`extra_kb` KB."""
    k = _key("a")
    agent = issue_certificate("agent", k, k, NOW - 86400, NOW + 86400).der
    aux = "".join(f"x{i}={'a' * 1500};" for i in range(max(1, extra_kb * 1000 // 1510)))
    big = _raw_ca(aux)
    sk = _key("server")
    server_cert = issue_certificate("agent", sk, sk, NOW - 86400, NOW + 86400).der

    def ctx(cert: bytes, key: Any, extra: list[bytes]) -> SSL.Context:
        c = SSL.Context(SSL.TLS_METHOD)
        c.set_min_proto_version(SSL.TLS1_3_VERSION)
        c.use_certificate(x509.load_der_x509_certificate(cert))
        c.use_privatekey(key)
        for e in extra:
            c.add_extra_chain_cert(x509.load_der_x509_certificate(e))
        c.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        return c

    server = SSL.Connection(ctx(server_cert, sk, []), None)
    server.set_accept_state()
    client = SSL.Connection(ctx(agent, k, [big]), None)
    client.set_connect_state()
    _pump(client, server)
    return server


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=int, default=100, help="size of the extra certificate")
    ap.add_argument("--runs", type=int, default=400)
    args = ap.parse_args(argv)
    conn = handshake(args.kb)
    new = _presented_chain(conn, False)
    assert new == _old_presented_chain(conn, False), "both ways must give the same bytes"
    size = sum(map(len, new))
    times: dict[str, list[float]] = {"before (as_cryptography)": [], "now (dump_certificate)": []}
    ways = list(zip(times.values(), (_old_presented_chain, _presented_chain), strict=True))
    for _ in range(args.runs):
        for out, way in ways:
            t = time.perf_counter()
            way(conn, False)
            out.append(time.perf_counter() - t)
    before, now = (median(v) for v in times.values())
    rows = [[k, f"{median(v) * 1e3:.3f} ms"] for k, v in times.items()]
    rows.append(["ratio now / before", f"{now / before:.2f}"])
    print(f"presented chain: {len(new)} certificates, {size:,} bytes DER")
    print(markdown_table(["way", f"median of {args.runs}"], rows))


if __name__ == "__main__":
    main()
