"""One address floods, another one comes after: a real `twistd pktproxy` and `twistd
pktbroker` under a descriptor limit (`prlimit --nofile=N`).

Proxy: registrations without a certificate from 127.0.0.2 (12 at once) until past the
limit's link budget, then a manager from 127.0.0.1 registers and an endpoint of its
snikey connects. Broker: subscriptions on a public channel from one self-made key on
127.0.0.2, then an endpoint key from 127.0.0.1 subscribes and a publisher publishes.
Printed: what the flood took, whether the manager/endpoint from 127.0.0.1 was served,
the daemon's refusal lines, descriptors and RSS. `--root` runs another tree's daemons
(e.g. a `git archive` of main) with this tree's helpers, to compare.

    .venv/bin/python stress/bp_share.py --nofile 1024
    .venv/bin/python stress/bp_share.py --nofile 1024 --root /tmp/base

Loopback only (127.0.0.2 is a loopback address on Linux); every process and socket is
closed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
FLOOD, GOOD = "127.0.0.2", "127.0.0.1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nofile", type=int, default=1024, help="the daemons' descriptor limit")
    ap.add_argument("--root", type=Path, default=HERE, help="the tree whose daemons run")
    a = ap.parse_args()
    sys.path[:0] = [str(HERE / "tests" / "integration"), str(HERE / "tests"), str(HERE)]
    with tempfile.TemporaryDirectory(prefix="bp_share.") as tmp:
        run(Path(tmp), a.nofile, str(a.root.resolve()))


def run(tmp: Path, nofile: int, root: str) -> None:
    import broker_world
    import pxworld
    from procstat import open_fds, rss_kib
    from tls_world import pktlab_init

    wrap = ["prlimit", f"--nofile={nofile}", "--"]
    px_twistd, b_twistd = pxworld.twistd, broker_world.twistd
    pxworld.twistd = lambda: [*wrap, *px_twistd()]
    broker_world.twistd = lambda: [*wrap, *b_twistd()]
    pxworld.ENV["PYTHONPATH"] = root
    broker_world.REPO = Path(root)

    def state(pid: int) -> str:
        return f"{rss_kib(pid)} KiB, {open_fds(pid)} fds"

    home = pktlab_init(tmp / "home")
    proxy = pxworld.ProxyProc(tmp, home.root)
    held: list[Any] = []
    try:
        pid = proxy.proc.pid
        attempts = nofile // 4 + 50  # past any budget the limit leaves (4 fds a splice)

        def one(i: int) -> Any:
            try:
                return pxworld.register(proxy.setup, f"flood{i // 60}", timeout=30, source=FLOOD)
            except (AssertionError, OSError):
                return None

        t0 = time.monotonic()
        with ThreadPoolExecutor(12) as pool:  # each ENORES is held 1 s
            held = [s for s in pool.map(one, range(attempts)) if s is not None]
        print(f"pktproxy, nofile {nofile}: {attempts} registrations from {FLOOD} in "
              f"{time.monotonic() - t0:.1f} s: {len(held)} backlogs; {state(pid)}")  # fmt: skip
        try:
            good = pxworld.register(proxy.setup, "good", timeout=30, source=GOOD)
            held.append(good)
            print(f"  a manager from {GOOD}: registered; its endpoint: {splice(proxy, good)}")
        except (AssertionError, OSError) as e:
            print(f"  a manager from {GOOD}: refused ({e})")
        time.sleep(0.5)  # a stats interval (0.2 s)
        print(f"  counters: enores={proxy.counters().get('enores')}")
        text = proxy.text()
        print(f"  refusal lines: {text.count('refusing xreg')} (`its share`: "
              f"{text.count('its share')}); EMFILE lines: {text.count('EMFILE')}")  # fmt: skip
    finally:
        for s in held:
            s.close()
        proxy.stop()
    broker = broker_world.BrokerProcess(home, tmp, error_delay=0)
    subs: list[Any] = []
    try:
        pid = broker.proc.pid  # type: ignore[union-attr]
        attempts = nofile // 2
        flood = broker_world.Identity(home, tmp, "flood")
        t0 = time.monotonic()
        refused = 0
        for _ in range(attempts):
            c = broker_world.RawClient(broker.sub_port, flood.cert_path, flood.key_path,
                                       source=FLOOD)  # fmt: skip
            c.send(wire().Xsub([b"public"], bytes(32), b""))
            if c.recv() == wire().Result(0):
                subs.append(c)
            else:
                refused += 1
                c.close()
        print(f"pktbroker, nofile {nofile}: {attempts} subscriptions from {FLOOD} in "
              f"{time.monotonic() - t0:.1f} s: {len(subs)} taken, {refused} refused; "
              f"{state(pid)}")  # fmt: skip
        who = broker_world.Identity(home, tmp, "good")
        try:
            good = who.subscribe(broker.sub_port)  # from 127.0.0.1
            subs.append(good)
            got = broker_world.publisher_heard(home, broker, good, "share")
            print(f"  an endpoint from {GOOD}: subscribed; a publisher: {got}")
        except (AssertionError, OSError, ConnectionError) as e:
            print(f"  an endpoint from {GOOD}: refused ({e!r})")
        print(f"  status page: {status(broker)}")
        text = broker.output()
        print(f"  refusal lines: {text.count('refuse xsub')} (`its share`: "
              f"{text.count('its share')}); EMFILE lines: {text.count('EMFILE')}")  # fmt: skip
    finally:
        for c in subs:
            c.close()
        broker.stop()


def status(broker: Any) -> str:
    import json
    from urllib.request import urlopen

    st = json.loads(urlopen(f"http://127.0.0.1:{broker.status_port}/", timeout=10).read())
    sub = st["counters"]["subscribe"]
    return (f"link_max {st.get('link_max')}, address_share {st.get('address_share')}, "
            f"subscribe refused {sub.get('refused')}, "
            f"refused_share {sub.get('refused_share')}")  # fmt: skip


def wire() -> Any:
    from packetlab import wire

    return wire


def splice(proxy: Any, backlog: Any) -> str:
    import socket

    from pxworld import client_hello, receive_hello

    try:
        with socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=5) as ep:
            hello = client_hello("good")
            ep.sendall(hello)
            receive_hello(backlog, hello)
        return "spliced"
    except (OSError, AssertionError) as e:
        return f"not spliced ({e})"


if __name__ == "__main__":
    main()
