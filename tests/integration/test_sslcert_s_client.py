"""`pktlab run sslcert` side by side with `openssl s_client -showcerts` against a local
TLS server (Python's ssl, a chain made here: leaf and intermediate, the leaf expired)
over the in-process endpoint: the same chain (fingerprints of the PEMs each printed),
the same s:/i:/v: lines, version and cipher; a server's alert, a non-TLS server and a
refused port as one-line errors with exit status 1."""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
RUN = [sys.executable, "-m", "packetlab", "run", "sslcert"]
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", re.S)


Key = ec.EllipticCurvePrivateKey


def _make(cn: str, key: Key, issuer: x509.Name, signer: Key, days: tuple[int, int],
          ca: bool) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sslcert33"),
                                  x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    return b.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[bytes]]:
    """leaf.test (expired yesterday) signed by an intermediate that a root signed: the
    chain file as served (leaf, intermediate), its key; root.pem beside them."""
    where = tmp_path_factory.mktemp("sslcert33")
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    own = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sslcert33"),
                     x509.NameAttribute(NameOID.COMMON_NAME, "sslcert33 root")])  # fmt: skip
    root = _make("sslcert33 root", root_key, own, root_key, (-10, 10), True)
    inter = _make("sslcert33 intermediate", inter_key, root.subject, root_key, (-10, 10), True)
    leaf = _make("leaf.test", leaf_key, inter.subject, inter_key, (-10, -1), False)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, inter)]
    cert, key = where / "chain.pem", where / "key.pem"
    cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, inter)))
    key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    (where / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    ok = _make("ok.test", leaf_key, inter.subject, inter_key, (-1, 10), False)  # (valid)
    (where / "ok.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                            for c in (ok, inter)))  # fmt: skip
    return cert, key, ders


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """A loopback server running `answer` for each connection (a thread; closed after)."""
    socks: list[socket.socket] = []

    def start(answer: Callable[[socket.socket], None]) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(60)
        socks.append(s)

        def loop() -> None:
            while True:
                try:
                    c, _ = s.accept()
                except OSError:
                    return
                with c:
                    try:
                        answer(c)
                    except (OSError, ssl.SSLError):
                        pass

        threading.Thread(target=loop, daemon=True).start()
        return int(s.getsockname()[1])

    yield start
    for s in socks:
        s.close()


def tls_server(
    cert: Path, key: Path, alert: int | None = None, tls12: bool = False
) -> Callable[[socket.socket], None]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alert is not None:
        ctx.sni_callback = lambda *a: alert

    def answer(c: socket.socket) -> None:
        with ctx.wrap_socket(c, server_side=True) as t:
            t.settimeout(10)
            t.recv(1)  # until the client closes

    return answer


def ours(*words: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*RUN, *words], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def s_client(port: int, name: str, *more: str) -> subprocess.CompletedProcess[str]:
    words = ["-connect", f"127.0.0.1:{port}", "-servername", name, "-showcerts", *more]
    return subprocess.run(["openssl", "s_client", *words], input="", capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if re.match(r"^( \d s:|   [iv]:|New, )", ln)]


def test_the_chain_as_s_client_shows_it(
    chain: tuple[Path, Path, list[bytes]], serve: Callable[..., int]
) -> None:
    cert, key, ders = chain
    port = serve(tls_server(cert, key))
    a, b = (
        ours(f"127.0.0.1:{port}", "--sni", "leaf.test", "--showcerts"),
        s_client(port, "leaf.test"),
    )
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert _lines(a.stdout) == _lines(b.stdout) and len(_lines(a.stdout)) == 7, (a.stdout, b.stdout)
    fps = [hashlib.sha256(ssl.PEM_cert_to_DER_cert(p)).hexdigest() for p in PEM.findall(a.stdout)]
    assert fps == [
        hashlib.sha256(ssl.PEM_cert_to_DER_cert(p)).hexdigest() for p in PEM.findall(b.stdout)
    ]
    assert fps == [hashlib.sha256(d).hexdigest() for d in ders]
    shown = re.findall(r"sha256 Fingerprint=(\S+)", a.stdout)
    assert [f.replace(":", "").lower() for f in shown] == fps


def test_tls_1_2_as_s_client_shows_it(
    chain: tuple[Path, Path, list[bytes]], serve: Callable[..., int]
) -> None:
    cert, key, _ = chain
    port = serve(tls_server(cert, key, tls12=True))
    a, b = ours(f"127.0.0.1:{port}", "--sni", "leaf.test"), s_client(port, "leaf.test")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert _lines(a.stdout) == _lines(b.stdout), (a.stdout, b.stdout)
    assert "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384" in _lines(a.stdout)


def test_verify_against_a_cafile_as_s_client_says_it(
    chain: tuple[Path, Path, list[bytes]], serve: Callable[..., int]
) -> None:
    """s_client's verdict is OpenSSL's last error over the chain (the expired leaf's, past
    the unknown root's): ours is the same, taken the same way during the handshake."""
    cert, key, _ = chain
    root = str(cert.parent / "root.pem")
    expired, valid = serve(tls_server(cert, key)), serve(tls_server(cert.parent / "ok.pem", key))
    for port, name, words, said in (
        (expired, "leaf.test", ["-CAfile", root], "Verification error: certificate has expired"),
        (expired, "leaf.test", [], "Verification error: certificate has expired"),
        (valid, "ok.test", ["-CAfile", root], "Verification: OK"),
        (valid, "ok.test", [], "Verification error: unable to get local issuer certificate"),
    ):
        a = ours(
            f"127.0.0.1:{port}", "--sni", name, *(["--cafile", root] if words else ["--verify"])
        )
        b = s_client(port, name, *words)
        assert said in a.stdout.splitlines() and said in b.stdout.splitlines(), (a.stdout, b.stdout)
        assert a.returncode == 0  # (the chain was got: the measurement did not fail)


def test_the_json_record(chain: tuple[Path, Path, list[bytes]], serve: Callable[..., int]) -> None:
    import json

    cert, key, ders = chain
    port = serve(tls_server(cert, key))
    a = ours(f"127.0.0.1:{port}", "--sni", "leaf.test", "--json", "--verify")
    assert a.returncode == 0, a.stderr
    rec, summary = (json.loads(ln) for ln in a.stdout.splitlines())
    assert (rec["method"], rec["ver"], rec["dst_addr"], rec["dst_port"]) == (
        "TLS",
        "1.3",
        "127.0.0.1",
        port,
    )
    assert [ssl.PEM_cert_to_DER_cert(p) for p in rec["cert"]] == ders
    assert 0 < rec["ttc"] <= rec["rt"] and rec["sni"] == "leaf.test"
    assert rec["src_addr"] == "127.0.0.1" and 0 < rec["hello_rt"] < rec["rt"]
    assert rec["verified"] is False and "error" not in rec  # (not in the system store: reported)
    assert summary["type"] == "summary" and summary["handshakes"] == 1


def test_errors_in_one_line(
    chain: tuple[Path, Path, list[bytes]], serve: Callable[..., int]
) -> None:
    cert, key, _ = chain
    alerting = serve(tls_server(cert, key, alert=ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE))
    b = s_client(alerting, "leaf.test")
    assert "SSL alert number 40" in b.stderr + b.stdout
    a = ours(f"127.0.0.1:{alerting}", "--sni", "leaf.test")
    assert (
        a.stdout.splitlines()[-1]
        == "error: the server sent the TLS alert handshake_failure (40, fatal)"
    )
    assert a.returncode == 1

    def http(c: socket.socket) -> None:
        c.recv(4096)
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    plain = serve(http)
    a = ours(f"127.0.0.1:{plain}")
    assert a.stdout.splitlines()[-1] == (
        "error: not a TLS server: its first bytes are not a TLS record: 'HTTP/1.1 400 Bad Request'"
    )
    assert a.returncode == 1
    with socket.socket() as s:  # a port nothing listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        a = ours(f"127.0.0.1:{closed}")
    assert a.stdout.splitlines()[-1].startswith(
        f"error: connect to 127.0.0.1:{closed}: connection refused"
    )
    assert a.returncode == 1 and "Traceback" not in a.stderr


def test_a_silent_server_is_a_timeout_in_one_line(serve: Callable[..., int]) -> None:
    quiet = threading.Event()
    port = serve(lambda c: quiet.wait(30))  # accepts, reads nothing, says nothing
    try:
        a = ours(f"127.0.0.1:{port}", "--timeout", "3")
    finally:
        quiet.set()
    assert a.stdout.splitlines()[-1] == "error: timeout: no answer to the ClientHello within 2.5 s"
    assert a.returncode == 1, a.stderr


def _has_v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_v6(), reason="no ::1")
def test_ipv6(chain: tuple[Path, Path, list[bytes]]) -> None:
    import json

    cert, key, ders = chain
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    s.listen(1)
    s.settimeout(60)
    answer = tls_server(cert, key)

    def one() -> None:
        try:
            c, _ = s.accept()
            with c:
                answer(c)
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=one, daemon=True).start()
    try:
        a = ours(f"[::1]:{s.getsockname()[1]}", "-6", "--sni", "leaf.test", "--json")
    finally:
        s.close()
    rec = json.loads(a.stdout.splitlines()[0])
    assert (rec["af"], rec["dst_addr"], rec["ver"]) == (6, "::1", "1.3"), a.stderr
    assert rec["src_addr"] == "::1"
    assert [ssl.PEM_cert_to_DER_cert(p) for p in rec["cert"]] == ders
