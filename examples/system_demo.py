"""The whole PacketLab system on loopback, as real processes (README quick start).

1. `pktlab init` keys and certificates (once, in --home), plus a second endpoint identity
   signed by the same endpoint operator (a broker tells endpoints apart by agent key);
2. `twistd -n pktbroker` on two free loopback ports;
3. two `twistd -n pktendpoint` processes in broker mode (NoSubMode 0), subscribed to the
   broker on their operator's channel, with host ids `demo-ep1` and `demo-ep2`;
4. `pktlab xpmgr` publishes one experiment to the broker (xcert chain, xpub) and runs the
   Python mlet `examples/http_get.py` on every endpoint that arrives; each endpoint fetches
   a page from a local HTTP server;
5. the per-endpoint results are printed, and every process is stopped.

Usage: python examples/system_demo.py [--home DIR] [--keep-logs]
"""

from __future__ import annotations

import _startup  # first: a Ctrl-C while starting is one line, 130

# isort: split
import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROG = Path(__file__).name
DEFAULT_HOME = REPO / ".cache" / "pktlab-demo"
BIN = Path(sys.executable).parent
TIMEOUT = 60.0  # seconds for the whole experiment to finish on both endpoints


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def second_endpoint(home: Path, work: Path) -> list[str]:
    """A second endpoint identity of the demo EOp: key, self-signed agent cert, and the
    subcmd certificate (k_eop -> key) that lets it subscribe and serve controllers."""
    from packetlab.ppks import PktlabHome, generate_private_key, issue_certificate, write_key_pair

    eop = PktlabHome.at(home).private_key("k_eop")
    key = generate_private_key()
    key_path = work / "ep2.key"
    write_key_pair(key_path, key)
    agent = work / "ep2.agent.cert"
    agent.write_bytes(issue_certificate("agent", key, key, 0, 2**31 - 1).to_pem())
    subcmd = work / "ep2.subcmd.cert"
    subcmd.write_bytes(issue_certificate("subcmd", eop, key, 0, 2**31 - 1).to_pem())
    return ["--private-key", str(key_path), "--cert-chain", str(subcmd),
            "--set", f"EndpointAgentCertPath={agent}",
            "--set", f"SubPrivCertChainPath={subcmd}"]  # fmt: skip


@contextmanager
def web_server() -> Iterator[str]:
    """A local page for the experiment to fetch (never an outside address)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the PacketLab system demo\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


class Processes:
    """Every child process of the demo, stopped (SIGTERM, then SIGKILL) on the way out."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the child)
        p = subprocess.Popen(argv, cwd=self.logs, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
        self.children.append((name, p))
        return p

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        proc = dict(self.children)[name]
        while text not in self.log(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not get ready:\n{self.log(name)[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        for _, p in reversed(self.children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        try:
            for _, p in self.children:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        except KeyboardInterrupt:  # a second Ctrl-C while they stop: no waiting, none left
            for _, p in self.children:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=str(DEFAULT_HOME),
                    help="pktlab init home (made if missing) [%(default)s]")  # fmt: skip
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = ap.parse_args()
    home = Path(args.home).absolute()  # the daemons run in their own directory
    if not (home / "broker.conf").is_file():
        # Never remove what is there (--home ~ once cleared a home directory) but our own
        # default home, which an interrupted pktlab init may have left half made.
        if home == DEFAULT_HOME:
            shutil.rmtree(home, ignore_errors=True)
        if home.exists() and (not home.is_dir() or any(home.iterdir())):
            print(f"{PROG}: --home {home} is not a pktlab init home with a broker.conf, and "
                  "not empty: give a new or empty directory (made with pktlab init), or "
                  "the home of a previous run", file=sys.stderr)  # fmt: skip
            return 2
        init = subprocess.run([str(BIN / "pktlab"), "init", "--home", str(home)], text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        if init.returncode != 0:
            why = (init.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{PROG}: pktlab init --home {home} failed: {why}", file=sys.stderr)
            return 2
        print(f"keys and certificates: pktlab init --home {home}")
    work = Path(tempfile.mkdtemp(prefix="pktlab-system-"))
    procs = Processes(work)
    try:
        pub, sub = free_port(), free_port()
        print(
            f"broker:    twistd -n pktbroker (publish 127.0.0.1:{pub}, subscribe 127.0.0.1:{sub})"
        )
        conf = work / "broker.conf"  # the demo broker's, with its status page on a free port
        conf.write_text((home / "broker.conf").read_text()
                        + f"StatusListen tcp:{free_port()}:interface=127.0.0.1\n")  # fmt: skip
        procs.start("broker", [str(BIN / "twistd"), "-n", "--pidfile=", "pktbroker",
                               "--config", str(conf),
                               "--publish", f"tcp:{pub}:interface=127.0.0.1",
                               "--subscribe", f"tcp:{sub}:interface=127.0.0.1"])  # fmt: skip
        procs.wait_for("broker", str(sub))
        ep2 = second_endpoint(home, work)
        for name, extra in (("demo-ep1", []), ("demo-ep2", ep2)):
            procs.start(name, [str(BIN / "twistd"), "-n", "--pidfile=", "pktendpoint",
                               "-c", str(home / "endpt.conf"), "--broker", f"127.0.0.1:{sub}",
                               "--host-id", name, "--ipv4", "127.0.0.1/8",
                               "--rlim-db", str(work / f"{name}.rlim.sqlite3"),
                               *extra])  # fmt: skip
        deadline = time.monotonic() + 20
        while procs.log("broker").count("] subscribe peer=") < 2:
            if time.monotonic() > deadline:
                break  # the experiment's own timeout reports what is missing
            time.sleep(0.1)
        print("endpoints: demo-ep1, demo-ep2 (twistd -n pktendpoint, broker mode), subscribed")
        conf = work / "xpmgr.conf"
        conf.write_text(
            (home / "xpmgr.conf").read_text().replace("EnableExpPublication 0\n", "")
            + "EnableExpPublication 1\n"
            + f"BrokerAddr 127.0.0.1:{pub}\n"
            + f"PubAgentCertPath {home / 'certs' / 'agent_xc_xc.cert'}\n"
        )
        results = work / "results.jsonl"
        with web_server() as url:
            print(f"experiment: pktlab xpmgr -n 2 examples/http_get.py {url}")
            print("            (published to the broker; each endpoint connects and runs it)")
            xp = procs.start("xpmgr", [str(BIN / "pktlab"), "xpmgr", "-c", str(conf),
                                       "-a", "127.0.0.1:0", "-n", "2", "-i", "demo-ep*",
                                       "--results", str(results),
                                       str(REPO / "examples" / "http_get.py"), url])  # fmt: skip
            try:
                code = xp.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                xp.send_signal(signal.SIGINT)
                code = xp.wait(15)
        lines = (
            [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
        )
        print()
        for r in sorted(lines, key=lambda r: str(r.get("hostid"))):
            print(f"== endpoint {r.get('hostid')} ({r.get('address')}): {r.get('status')}")
            for line in str(r.get("output", "")).rstrip().splitlines():
                print("   " + line)
        done = sum(1 for r in lines if r.get("status") == "done")
        print(f"\n{done} of 2 endpoints ran the experiment (xpmgr exit {code})")
        if done != 2:
            for name in ("broker", "demo-ep1", "demo-ep2", "xpmgr"):
                print(f"--- {name} log (last lines) ---\n{procs.log(name)[-1500:]}",
                      file=sys.stderr)  # fmt: skip
            return 1
        return 0
    finally:
        procs.stop()
        if args.keep_logs:
            print(f"logs in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _startup.restore()  # Ctrl-C from here: KeyboardInterrupt, the children stopped
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the children were stopped on the way out (Processes.stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C now: still 130
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
