#!/usr/bin/env python3
"""Publish an experiment through a broker to your own endpoints (docs/tutorial-publish.md).

With no arguments everything runs on loopback with a fresh `pktlab init` home: a real
`twistd pktbroker`, ENDPOINTS real `twistd pktendpoint --broker` processes (each with its
own key, subscribed to your EOp channel), and a controller that listens over TLS,
publishes one experiment with `publish()`, runs it on every endpoint that connects, prints
what each endpoint reported, and ends the publication.

    python examples/publish_experiment.py --endpoints 2
    python examples/publish_experiment.py --broker 192.0.2.5:20556 --home ~/.pktlab \\
        --listen tcp:20600 --controller-addr 192.0.2.7:20600 --endpoints 0
"""

from __future__ import annotations

import _startup  # noqa: F401  (first: a Ctrl-C while starting is one line, 130)

# isort: split
import argparse
import contextlib
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import react, seconds
from twisted.internet import defer

from packetlab.cli.init import init_home
from packetlab.controller import (
    Controller,
    EndpointSession,
    PublishCredentials,
    make_xdescr,
    publish,
    read_system_info,
)
from packetlab.controller.local import tls_server, twistd_command
from packetlab.ppks import PktlabHome, generate_private_key, issue_certificate, write_key_pair


class StartError(ValueError):
    """A child process that did not start (one line, and the work directory kept)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Local:
    """The broker and the endpoints, as child processes (stopped on exit)."""

    def __init__(self, home: PktlabHome, work: Path) -> None:
        self.home, self.work = home, work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "PKTLAB_HOME": str(home.root)}

    def spawn(self, name: str, *args: str, ready: str) -> None:
        log = self.work / f"{name}.log"
        argv = [*twistd_command(), "-n", "--pidfile=", f"--logfile={log}", *args]
        self.procs.append(
            subprocess.Popen(argv, env=self.env, cwd=self.work, stdout=subprocess.DEVNULL)
        )
        deadline = time.monotonic() + 30
        while not (log.exists() and ready in log.read_text(errors="replace")):
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                last = lines[-1].split("] ", 1)[-1] if lines else "no output"
                raise StartError(f"{name} did not start: {last} (its log: {log})")
            time.sleep(0.05)

    def broker(self) -> str:
        pub, sub = free_port(), free_port()
        self.sub_port = sub
        conf = self.work / "broker.conf"
        conf.write_text("Store memory:\n")
        self.spawn(
            "broker", "pktbroker", "--config", str(conf),
            "--publish", f"tcp:{pub}:interface=127.0.0.1",
            "--subscribe", f"tcp:{sub}:interface=127.0.0.1",
            ready="subscribe port listening",
        )  # fmt: skip
        return f"127.0.0.1:{pub}"

    def endpoint(self, i: int) -> None:
        """An endpoint of the demo EOp with its own key (the broker tells endpoints apart
        by their agent key)."""
        h = self.home
        key = generate_private_key()
        write_key_pair(self.work / f"k_ep{i}", key)
        agent = self.work / f"agent_ep{i}.cert"
        agent.write_bytes(issue_certificate("agent", key, key, 0, 2**31 - 1).to_pem())
        sub = self.work / f"subcmd_ep{i}.cert"
        sub.write_bytes(
            issue_certificate("subcmd", h.private_key("k_eop"), key, 0, 2**31 - 1).to_pem()
        )
        self.spawn(
            f"endpoint{i}", "pktendpoint", "-c", str(h.root / "endpt.conf"),
            "--broker", f"127.0.0.1:{self.sub_port}", "--ipv4", "127.0.0.1/8",
            "--private-key", str(self.work / f"k_ep{i}"), "--cert-chain", str(sub),
            "--set", f"EndpointAgentCertPath={agent}", "--set", f"SubPrivCertChainPath={sub}",
            "--set", "EndpointAttr=endpoint_country=USA;",
            ready="Broker subscription finished",
        )  # fmt: skip

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:  # never leave a daemon behind
                p.kill()
                p.wait()


async def experiment(session: EndpointSession) -> str:
    info = await read_system_info(session)
    v4 = ", ".join(str(i) for i in info.ip4) or "none"
    return f"hostid {info.hostid!r}, IPv4 {v4}, transports {info.transsup.name or 'none'}"


async def run(reactor: Any, args: argparse.Namespace) -> int:
    if args.broker and args.endpoints:
        raise ValueError(
            "--broker: the local endpoints subscribe to the broker this example starts; "
            "give --endpoints 0 with --broker (your endpoints subscribe to it themselves)"
        )
    if not args.broker and not args.endpoints:
        raise ValueError(  # it waited --timeout for endpoints that could not exist
            "--endpoints 0: no endpoint can subscribe to the broker this example starts (a "
            "port and keys of its own); give --broker HOST:PORT, the broker your endpoints "
            "subscribe to"
        )
    if args.home and not (Path(args.home).expanduser() / "keys").is_dir():
        raise ValueError(f"--home {args.home}: not a pktlab home: run `pktlab init --home DIR`")
    work = Path(tempfile.mkdtemp(prefix="publish-example-"))
    if args.home:
        home = PktlabHome.at(Path(args.home).expanduser())
    else:
        home = PktlabHome.at(work / "home")
        with contextlib.redirect_stdout(io.StringIO()):
            init_home(home)
    local = Local(home, work)
    try:
        broker = args.broker or local.broker()
        for i in range(args.endpoints):
            local.endpoint(i)
        ctl: Controller[Any] = Controller(experiment, reactor=reactor)
        port = await ctl.listen(tls_server(reactor, args.listen, home, "publishexample"))
        addr = args.controller_addr or f"127.0.0.1:{port.getHost().port}"
        xdescr = make_xdescr(
            addr, sni_key="publishexample", pub_period=args.timeout, countries=["USA"]
        )
        pub = await publish(reactor, broker, xdescr, PublishCredentials.from_home(home))
        print(f"published to {broker}: {xdescr.decode()}", flush=True)
        for n in range(args.endpoints or 1):
            try:
                outcome = await ctl.next_outcome().addTimeout(args.timeout, reactor)
            except defer.TimeoutError:
                raise ValueError(
                    f"no endpoint ran the experiment within {args.timeout:g} s (endpoint "
                    f"{n + 1}): are endpoints subscribed to {broker} on this EOp's channel, "
                    f"and can they reach {addr}?"
                ) from None
            print(f"endpoint {n + 1} ({outcome.peer}): {outcome.unwrap()}", flush=True)
        await pub.close()
        print("publication closed", flush=True)
        await ctl.stop()
    except StartError:
        local.stop()
        raise  # the logs stay in `work`, named in the error
    except BaseException:
        local.stop()
        shutil.rmtree(work, ignore_errors=True)
        raise
    local.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def endpoints(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 100:
        raise argparse.ArgumentTypeError(f"must be 0..100, got {n}")
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", type=endpoints, default=2,
                   help="local endpoints to start, 0..100 (default: %(default)s)")  # fmt: skip
    p.add_argument("--broker", help="publish to this broker HOST:PORT (default: start one)")
    p.add_argument("--home", help="pktlab init home (default: a new temporary one)")
    p.add_argument("--listen", default="tcp:0:interface=127.0.0.1",
                   help="controller address (default: %(default)s)")  # fmt: skip
    p.add_argument("--controller-addr", help="controller_addr to publish (default: --listen)")
    p.add_argument("--timeout", type=seconds, default=60.0,
                   help="seconds per endpoint (default: %(default)s)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    react(run, p.parse_args())


if __name__ == "__main__":
    main()
