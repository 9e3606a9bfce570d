"""CPU a real `twistd -n pktbroker` spends per TLS handshake, by the chain presented: an
agent leaf alone, and with a stranger's CA-type certificate of a big cert_limit next to
it (docs/performance.md "Session 18: certificate cost").

The broker's user + system CPU (from /proc/PID/stat) over `--n` handshakes on its publish
port, each by the stdlib `ssl` client, divided by n. Run from the repository root:
``python -m benchmarks.bench_cert_handshake [--n 100]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests")]

from broker_world import BrokerProcess  # noqa: E402
from tls_world import pktlab_init  # noqa: E402

from benchmarks.bench_cert_parse import _key, _raw_ca, _v6  # noqa: E402
from benchmarks.common import markdown_table  # noqa: E402
from packetlab.ppks import certificate_pem, issue_certificate, write_key_pair  # noqa: E402


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="handshakes per chain")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cert-"))
    home = pktlab_init(tmp / "home")
    broker = BrokerProcess(home, tmp)
    assert broker.proc is not None
    k = _key("a")
    write_key_pair(tmp / "a.key", k)
    agent = issue_certificate("agent", k, k, 0, 2**31 - 1).to_pem()
    finding = ",".join(_v6(i) if i % 2 else f"10.{i // 256}.{i % 256}.0/24" for i in range(3000))
    most = ",".join(_v6(i) for i in range(1024))
    aux = "".join(f"x{i}={'a' * 500};" for i in range(62))
    chains = {
        "agent only": b"",
        "agent + 3,000 valid_dest CA": certificate_pem(_raw_ca(f"valid_dest={finding};")),
        "agent + 1,024 valid_dest CA (~100 KB)": certificate_pem(
            _raw_ca(f"valid_dest={most};{aux}")
        ),
    }
    rows = []
    try:
        for label, extra in chains.items():
            (tmp / "chain.pem").write_bytes(agent + extra)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the broker's certificate is PPKS
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(str(tmp / "chain.pem"), str(tmp / "a.key"))
            time.sleep(1)
            before = _cpu(broker.proc.pid)
            for _ in range(args.n):
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", broker.pub_port)))
                s.settimeout(0.02)  # the broker reads the client's certificates and Finished
                try:
                    s.recv(100)
                except OSError:
                    pass
                s.close()
            time.sleep(1.5)  # the last handshakes' checks
            per = (_cpu(broker.proc.pid) - before) / args.n
            rows.append([label, f"{len(extra):,}", f"{per * 1e3:.2f}"])
    finally:
        broker.stop()
    print(markdown_table(["chain presented", "extra PEM bytes", "broker CPU ms"], rows))


if __name__ == "__main__":
    main()
