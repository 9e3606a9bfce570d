"""The broker under fan-out: N subscribed TLS connections, one publication, time until all
are notified; and the broker's memory per subscriber.

* A real ``twistd pktbroker`` process (or two sharing a real ``redis-server`` with
  ``--brokers 2``: subscribers split between them, the publisher on the second) with the
  credentials of a fresh ``pktlab init`` home.
* N lightweight subscribers in this process: each a TLS 1.3 connection with its own agent
  key (the broker sends an xdescr once per agent key), subscribed to the public channel
  ``bench``. Goal: all N notified < 1 s after the xpub leaves the publisher, N = 10,000.
  Two figures: when the xnotify record reached every subscriber socket (epoll on the N
  sockets while Twisted does not read them: the broker's own speed), and when every
  client here had decoded it (adds this process decrypting N records).
* Memory: the broker's RSS (``/proc/PID/status`` VmRSS) idle, then with all N subscribed;
  the difference / N. Goal < 20 KB per subscriber (kernel socket buffers not included).

Run from the repository root: ``python -m benchmarks.bench_broker --help``.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import environment, median, write_json

REPO = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerLog:
    """A broker's log, written to a file this process holds open (`twistd --logfile=-`).

    twistd's own log file rotates at 1 MB (10,000 subscribe lines are ~2 MB), which renamed
    it under the reader (FileNotFoundError in the two-broker run) and hid the fan-out lines
    in the rotated part; an open descriptor survives rotation and a removed directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("w+b")

    def text(self) -> str:
        return os.pread(self.file.fileno(), os.fstat(self.file.fileno()).st_size, 0).decode(
            errors="replace"
        )


def wait_for(log: BrokerLog, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{text!r} not seen in {log.path}:\n{log.text()[-3000:]}")


def start_broker(
    home: Path, work: Path, name: str, store: str, batch: int
) -> tuple[Any, int, int, BrokerLog]:
    pub, sub = free_port(), free_port()
    conf = work / f"{name}.conf"
    # every subscriber here comes from 127.0.0.1: no per-address share (session 31), or
    # a quarter of the links the descriptor limit allows (2,970 under 20,000) would do
    conf.write_text(f"Store {store}\nFanOutBatch {batch}\nPerAddressShare 1\n")
    log = BrokerLog(work / f"{name}.log")
    twistd = Path(sys.executable).with_name("twistd")
    proc = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", "--logfile=-", "pktbroker", "--config", str(conf),
         "--publish", f"tcp:{pub}:interface=127.0.0.1",
         "--subscribe", f"tcp:{sub}:interface=127.0.0.1:backlog=4096"],
        env={**os.environ, "PKTLAB_HOME": str(home), "PYTHONPATH": str(REPO)},
        stdout=log.file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(log, "subscribe port listening", proc)
    return proc, pub, sub, log


def start_redis(work: Path) -> tuple[Any, str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    from packetlab.cli.init import init_home
    from packetlab.ppks import PktlabHome, generate_private_key, issue_certificate
    from packetlab.tls import AuthMode, Credentials, PPKSClientCreator, PPKSClientEndpoint
    from packetlab.wire import Framer, Xnotify, Xpub, Xsub, encode

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.subscribers + 200:
        raise SystemExit(f"need {args.subscribers + 200} file descriptors, the limit is {hard}")
    work = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    home = PktlabHome.at(work / "home")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        init_home(home)
    procs: list[Any] = []
    store = "memory:"
    if args.brokers == 2:
        if shutil.which("redis-server") is None:
            raise SystemExit("--brokers 2 needs redis-server (apt install redis-server)")
        rproc, store = start_redis(work)
        procs.append(rproc)
    brokers = [
        start_broker(home.root, work, f"b{i}", store, args.batch) for i in range(args.brokers)
    ]
    procs += [b[0] for b in brokers]
    pids = [b[0].pid for b in brokers]
    roots = [home.public_key("k_bop")]
    n = args.subscribers
    print(f"making {n} agent identities ...", file=sys.stderr)
    creators = []
    for _ in range(n):
        k = generate_private_key()
        creds = Credentials([issue_certificate("agent", k, k, 0, 2**31 - 1)], k)
        creators.append(PPKSClientCreator(creds, AuthMode.AGENT, roots))
    xsub = encode(Xsub([b"bench"], bytes(32), b""))
    got: dict[bytes, int] = {}
    waiters: dict[bytes, defer.Deferred[float]] = {}
    subscribed = [0]

    class Sub(Protocol):
        def __init__(self) -> None:
            self.framer = Framer()
            self.results = 0

        def connectionMade(self) -> None:
            self.transport.write(xsub)  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            for item in self.framer.feed(data):
                if isinstance(item, Xnotify):
                    c = got[item.xdescr] = got.get(item.xdescr, 0) + 1
                    if c == n:
                        waiters[item.xdescr].callback(time.perf_counter())
                else:
                    self.results += 1
                    subscribed[0] += 1

    async def connect_all() -> list[Any]:
        sem = defer.DeferredSemaphore(args.parallel)
        protos: list[Any] = []

        async def one(i: int) -> None:
            port = brokers[i % len(brokers)][2]
            ep = PPKSClientEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", port), creators[i])
            f = Factory.forProtocol(Sub)
            f.noisy = False
            protos.append(await ep.connect(f))

        await defer.gatherResults(
            [sem.run(lambda i=i: defer.ensureDeferred(one(i))) for i in range(n)]
        )
        while subscribed[0] < n:
            await task.deferLater(reactor, 0.05, lambda: None)
        return protos

    class Pub(Protocol):
        def __init__(self) -> None:
            self.framer = Framer()
            self.acks: list[defer.Deferred[None]] = []

        def dataReceived(self, data: bytes) -> None:
            for _ in self.framer.feed(data):
                self.acks.pop(0).callback(None)

    async def main() -> dict[str, Any]:
        await task.deferLater(reactor, 1.0, lambda: None)  # let the brokers settle
        idle = [rss_kib(p) for p in pids]
        t = time.perf_counter()
        protos = await connect_all()
        connect_s = time.perf_counter() - t
        await task.deferLater(reactor, 2.0, lambda: None)
        loaded = [rss_kib(p) for p in pids]
        print(f"{n} subscribed in {connect_s:.1f} s", file=sys.stderr)
        agent = home.certificate("agent_xc_xc")
        pcreds = Credentials([agent], home.private_key("k_xc"))
        pep = PPKSClientEndpoint(
            TCP4ClientEndpoint(reactor, "127.0.0.1", brokers[-1][1]),
            PPKSClientCreator(pcreds, AuthMode.AGENT, roots),
        )
        pub: Any = await pep.connect(Factory.forProtocol(Pub))
        # The publisher's socket, to send the xpub at once (no reactor turn in between).
        pub_tcp = pub.transport.transport
        tcps = [p.transport.transport for p in protos]
        times, arrivals = [], []
        for r in range(args.runs):
            xd = f"controller_addr=127.0.0.1:9;sni_key=run{r};".encode()
            waiters[xd] = defer.Deferred()
            ack: defer.Deferred[None] = defer.Deferred()
            pub.acks.append(ack)
            # 1. when the xnotify record reached each subscriber's socket: epoll here,
            #    while Twisted does not read them (the broker is in its own process)
            for t in tcps:
                t.stopReading()
            ep = select.epoll(len(tcps))
            for t in tcps:
                ep.register(t.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
            t0 = time.perf_counter()
            pub.transport.write(encode(Xpub([b"bench"], bytes(32), xd)))
            # Our TLS protocol holds records until the end of the reactor turn (corked),
            # and this loop blocks the reactor: seal and hand them to TCP now.
            getattr(pub.transport, "flush", lambda: None)()
            pub_tcp.doWrite()
            seen = 0
            while seen < len(tcps):
                events = ep.poll(60)
                if not events:
                    raise RuntimeError(f"only {seen} of {len(tcps)} sockets got data in 60 s")
                seen += len(events)
            arrivals.append(time.perf_counter() - t0)
            ep.close()
            # 2. when these lightweight Twisted clients had each decoded it
            for t in tcps:
                t.startReading()
            t_end = await waiters[xd].addTimeout(120, reactor)
            await ack
            times.append(t_end - t0)
            print(
                f"run {r}: xnotify at all {n} sockets in {arrivals[-1] * 1000:.0f} ms, "
                f"decoded by all in {times[-1] * 1000:.0f} ms",
                file=sys.stderr,
            )
            await task.deferLater(reactor, 0.5, lambda: None)
        pub.transport.loseConnection()
        for p in protos:
            p.transport.abortConnection()
        fanout = []  # the broker's own time to match, encrypt and hand over every xnotify
        for b in brokers:
            for line in b[3].text().splitlines():
                if "fan-out n=" in line:
                    fanout.append(float(line.split(" ms=")[1].split()[0]))
        per_sub = (sum(loaded) - sum(idle)) * 1024 / n
        return {
            "subscribers": n,
            "brokers": args.brokers,
            "store": "redis" if args.brokers == 2 else "memory",
            "fanout_batch": args.batch,
            "connect_s": connect_s,
            "arrive_all_s": arrivals,
            "arrive_all_median_s": median(arrivals),
            "notify_all_s": times,
            "notify_all_median_s": median(times),
            "broker_rss_idle_kib": idle,
            "broker_rss_loaded_kib": loaded,
            "bytes_per_subscriber": per_sub,
            "broker_fanout_ms": fanout,
        }

    result: dict[str, Any] = {}

    def go() -> defer.Deferred[None]:
        d = defer.ensureDeferred(main())

        def done(r: Any) -> None:
            if isinstance(r, dict):
                result.update(r)
            else:
                r.printTraceback()
            reactor.stop()

        return d.addBoth(done)

    reactor.callWhenRunning(go)
    try:
        reactor.run()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--subscribers", type=int, default=10000)
    ap.add_argument("--brokers", type=int, choices=(1, 2), default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=200, help="handshakes in flight")
    ap.add_argument("--batch", type=int, default=65536, help="broker FanOutBatch")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    r = run(args)
    if not r:
        raise SystemExit(1)
    r["environment"] = environment()
    print(
        f"{r['subscribers']} subscribers on {r['brokers']} broker(s) ({r['store']}): the "
        f"xnotify at every subscriber socket in median {r['arrive_all_median_s'] * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in r['arrive_all_s'])} ms; goal < 1000), "
        f"decoded by every client in median {r['notify_all_median_s'] * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in r['notify_all_s'])} ms); "
        f"broker memory {r['bytes_per_subscriber'] / 1024:.1f} KiB per subscriber (goal < 20 KB); "
        f"broker fan-out (match + encrypt + hand to TCP, all batches) median "
        f"{median(r['broker_fanout_ms']) if r['broker_fanout_ms'] else 0:.0f} ms"
    )
    if args.json:
        write_json(args.json, r)


if __name__ == "__main__":
    main()
