"""The cheapest way to drive OpenSSL from Python, per PacketLab message: seal small frames
as one TLS 1.3 record each into a memory BIO and read the BIO once (what a link's write
does), and open such records one by one (what its read does), with pyOpenSSL
(`SSL.Connection` on memory BIOs, what Twisted's TLS uses) and with the standard
library (`ssl.SSLObject` + `ssl.MemoryBIO`). Same OpenSSL underneath, same cipher.

Run from the repository root: ``python -m benchmarks.bench_tls_records``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from benchmarks.common import environment, markdown_table, median, write_json

FRAME = bytes(87)  # an nsend with a 64-byte UDP payload


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A throwaway self-signed Ed25519 certificate and key in `workdir` (PEM paths)."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )
    cpath, kpath = workdir / "cert.pem", workdir / "key.pem"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cpath, kpath


class Stdlib:
    name = "stdlib ssl.SSLObject + MemoryBIO"

    def __init__(self, cert: Path, key: Path) -> None:
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.minimum_version = ssl.TLSVersion.TLSv1_3
        sctx.load_cert_chain(str(cert), str(key))
        sctx.num_tickets = 0
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        self.sin, self.sout, self.cin, self.cout = (ssl.MemoryBIO() for _ in range(4))
        self.server = sctx.wrap_bio(self.sin, self.sout, server_side=True)
        self.client = cctx.wrap_bio(self.cin, self.cout, server_side=False)
        for _ in range(10):
            for side in (self.client, self.server):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            self.sin.write(self.cout.read())
            self.cin.write(self.sout.read())
        self.buf = memoryview(bytearray(1 << 16))

    def seal(self, frames: list[bytes]) -> bytes:
        write = self.server.write
        for f in frames:
            write(f)
        return self.sout.read()

    def open(self, records: bytes, n: int) -> int:
        self.cin.write(records)
        read, buf, got = self.client.read, self.buf, 0
        for _ in range(n):
            got += cast(int, read(len(buf), buf))  # with a buffer, read returns a count
        return got


class PyOpenSSL:
    name = "pyOpenSSL Connection + memory BIO"

    def __init__(self, cert: Path, key: Path, keylog: Any = None) -> None:
        sctx = SSL.Context(SSL.TLS_METHOD)
        sctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        sctx.use_certificate_file(str(cert))
        sctx.use_privatekey_file(str(key))
        sctx.set_options(SSL.OP_NO_TICKET)
        cctx = SSL.Context(SSL.TLS_METHOD)
        cctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        if keylog is not None:
            keylog(cctx)
        self.server = SSL.Connection(sctx, None)
        self.server.set_accept_state()
        self.client = SSL.Connection(cctx, None)
        self.client.set_connect_state()
        for _ in range(10):
            for side in (self.client, self.server):
                try:
                    side.do_handshake()
                except SSL.WantReadError:
                    pass
            self._move(self.client, self.server)
            self._move(self.server, self.client)

    @staticmethod
    def _move(src: SSL.Connection, dst: SSL.Connection) -> None:
        try:
            dst.bio_write(src.bio_read(1 << 17))
        except SSL.WantReadError:
            pass

    def seal(self, frames: list[bytes]) -> bytes:
        send = self.server.send
        for f in frames:
            send(f)
        return self.server.bio_read(1 << 17)

    def open(self, records: bytes, n: int) -> int:
        self.client.bio_write(records)
        recv, got = self.client.recv, 0
        for _ in range(n):
            got += len(recv(1 << 15))
        return got


class PythonRecords(PyOpenSSL):
    """What a PacketLab link does after the handshake: OpenSSL (pyOpenSSL) shakes hands,
    then `packetlab.tls.records` seals and opens with `cryptography`'s AEAD."""

    name = "packetlab.tls.records (Python, cryptography AEAD)"

    def __init__(self, cert: Path, key: Path) -> None:
        from packetlab.tls.records import RecordLayer
        from packetlab.tls.takeover import take_over, watch_secrets

        super().__init__(cert, key, keylog=watch_secrets)
        client = take_over(self.client, True, b"")
        assert client is not None, "no secrets from the keylog callback"
        self.cipher = self.client.get_cipher_name()
        self.reader = client
        self.writer = RecordLayer(client.read.suite, client.write.secret, client.read.secret)

    def seal(self, frames: list[bytes]) -> bytes:
        return self.writer.seal_many(frames)

    def open(self, records: bytes, n: int) -> int:
        got = self.reader.receive(records)
        assert got.records == n
        return sum(map(len, got.chunks))


class BaselineRecords:
    """`packetlab.tls.records` of another checkout (its file loaded as a separate module),
    keyed with the secrets of `ours`' handshake: the record layer before and after a
    change, interleaved in one process."""

    def __init__(self, checkout: Path, ours: PythonRecords) -> None:
        path = checkout / "packetlab" / "tls" / "records.py"
        spec = importlib.util.spec_from_file_location("baseline_records", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"no record layer at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        self.name = f"packetlab.tls.records of {checkout}"
        suite = module.SUITES[ours.reader.read.suite.name]
        read, write = ours.reader.read.secret, ours.reader.write.secret
        self.writer = module.RecordLayer(suite, write, read)
        self.reader = module.RecordLayer(suite, read, write)

    def seal(self, frames: list[bytes]) -> bytes:
        return bytes(self.writer.seal_many(frames))

    def open(self, records: bytes, n: int) -> int:
        got = self.reader.receive(records)
        assert got.records == n
        return sum(map(len, got.chunks))


def _run(impl: Any, frames: list[bytes], loops: int) -> tuple[float, float]:
    """Seconds spent sealing and opening `loops` batches (each batch opened after it is
    sealed: the records must be read in order)."""
    clock, sealing, opening = time.perf_counter, 0.0, 0.0
    size = len(frames) * (len(FRAME) + 22)  # 5-byte header, 1 type byte, 16-byte tag
    for _ in range(loops):
        t0 = clock()
        records = impl.seal(frames)
        t1 = clock()
        got = impl.open(records, len(frames))
        t2 = clock()
        sealing += t1 - t0
        opening += t2 - t1
        assert len(records) == size and got == len(frames) * len(FRAME), (len(records), got)
    return sealing, opening


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64, help="frames per batch (64)")
    ap.add_argument("--loops", type=int, default=500, help="batches per timed run (500)")
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        type=Path,
        help="also time the Python record layer of another checkout (e.g. a `git worktree` "
        "of the commit before a change), interleaved with ours",
    )
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    frames = [FRAME] * args.batch
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed_cert(Path(tmp))
        ours = PythonRecords(cert, key)
        impls: list[Any] = [PyOpenSSL(cert, key), Stdlib(cert, key), ours]
        if args.baseline:
            impls.append(BaselineRecords(args.baseline, ours))
        times: dict[str, tuple[list[float], list[float]]] = {i.name: ([], []) for i in impls}
        for _ in range(7):  # interleaved: a load change hits every row alike
            for impl in impls:
                s, o = _run(impl, frames, args.loops)
                times[impl.name][0].append(s)
                times[impl.name][1].append(o)
        for impl in impls:
            seal, opened = times[impl.name]
            per = args.loops * args.batch
            s_us, o_us = median(seal) / per * 1e6, median(opened) / per * 1e6
            results[impl.name] = {"seal_us": s_us, "open_us": o_us}
            rows.append([impl.name, f"{s_us:.2f}", f"{o_us:.2f}", f"{1 / (s_us + o_us):.2f}"])
    print(
        f"{args.batch} frames of {len(FRAME)} B per batch, one record each; medians of 7 "
        "interleaved runs"
    )
    print(markdown_table(
        ["library", "seal µs/record", "open µs/record", "M records/s (both)"], rows
    ))  # fmt: skip
    env = environment()
    print(f"\nPython {env['python']}, {ssl.OPENSSL_VERSION}, commit {env['commit']}")
    if args.json:
        write_json(args.json, {"environment": env, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
