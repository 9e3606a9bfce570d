"""Helpers for the broker tests: a real `twistd pktbroker` process, and a blocking TLS
client (stdlib ssl) that speaks raw frames to it as the reference clients do (agent cert,
no SNI, each message split into records). The module fixtures `home`, `broker` and
`proxy` (a `pktlab init` home, tls_world.home_fixture(); a broker with ErrorDelay 0 and
a proxy with its identity; one each per test module) are for the modules that bind them
at their top:
`home, broker, proxy = broker_world.home, broker_world.broker, broker_world.proxy`
(`from broker_world import home` makes ruff take each test's argument for a
redefinition, F811; `pytest_plugins` warns that this module, imported already, cannot
be assertion-rewritten)."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, stop_process, twistd
from pxworld import ProxyProc
from tls_world import home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a broker that must restart on it)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` different ports free right now on 127.0.0.1: all held at once, so none is
    chosen twice (two free_port() calls in a row gave the same port 4 times in 100,000
    here: a broker then could not listen on its second one)."""
    held = [socket.socket() for _ in range(n)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def pythonpath_env(home: PktlabHome | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if home is not None:
        env["PKTLAB_HOME"] = str(home.root)
    return env


def _sockaddr(host: str, port: int) -> tuple[Any, ...]:
    """`(host, port)` as a socket takes it: a link-local address's zone (``%eth0``) in its
    scope id, which a 2-tuple drops (bind/connect then fail with EINVAL)."""
    return tuple(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][4])


class BrokerProcess:
    """`twistd -n pktbroker` on 127.0.0.1 with the credentials of a `pktlab init` home."""

    def __init__(
        self,
        home: PktlabHome,
        workdir: Path,
        *args: str,
        pub_port: int | None = None,
        sub_port: int | None = None,
        error_delay: float = 0.5,
        prefix: Sequence[str] = (),
    ) -> None:
        """`prefix`: a command that runs twistd, e.g. `prlimit --nofile=N --`."""
        self.home = home
        self.prefix = list(prefix)
        self.error_delay = error_delay
        self.workdir = workdir
        ports = free_ports(2)
        self.pub_port = pub_port or ports[0]
        self.sub_port = sub_port or ports[1]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = workdir / "pktbroker.log"
        # ports chosen here were free a moment ago, not when the broker binds them:
        # another process may have taken one since (then new ones, up to 3 tries)
        for tries_left in (2, 1, 0):
            try:
                self.start()
                return
            except AssertionError:
                taken = "Address already in use" in self.output()[self.mark :]
                if not (taken and tries_left and pub_port is None and sub_port is None):
                    raise
            self.pub_port, self.sub_port = free_ports(2)

    def start(self) -> None:
        # Our own broker.conf: the home's one listens for status on a fixed port.
        conf = self.workdir / "broker.conf"
        conf.write_text(f"StatusListen tcp:0:interface=127.0.0.1\nErrorDelay {self.error_delay}\n")
        argv = [
            *self.prefix,
            *twistd(),
            "-n",
            "--pidfile=",
            f"--logfile={self.logfile}",
            "pktbroker",
            "--config",
            str(conf),
            "--publish",
            f"tcp:{self.pub_port}:interface=127.0.0.1",
            "--subscribe",
            f"tcp:{self.sub_port}:interface=127.0.0.1",
            *self.args,
        ]
        self.mark = len(self.output())
        self.proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=pythonpath_env(self.home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            # 30 s: a loaded 2-CPU machine has taken over 15 s to import and listen.
            out = self.wait_log("pktbroker status page on http", timeout=30.0, since=self.mark)
            found = re.search(r"status page on http://[^\s]*:(\d+)/", out[self.mark :])
            assert found is not None, out[self.mark :]
            self.status_port = int(found.group(1))
        except BaseException:
            # a broker that never said it listens (or not as expected) must not outlive
            # the test: a line that did not parse leaked eight brokers once
            self.stop()
            raise

    def output(self) -> str:
        """The whole log: twistd rotates its log file at 1 MB (to .1, .2, ...; the
        highest number is the oldest), so offsets into this text stay valid."""
        old = self.logfile.parent.glob(self.logfile.name + ".*")
        rotated = sorted(
            (p for p in old if p.suffix[1:].isdigit()),
            key=lambda p: int(p.suffix[1:]),
            reverse=True,
        )
        parts = [p.read_text(errors="replace") for p in rotated]
        if self.logfile.exists():
            parts.append(self.logfile.read_text(errors="replace"))
        return "".join(parts)

    def wait_log(self, text: str, timeout: float = 15.0, since: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out[since:]:
                return out
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the broker log:\n{self.output()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class RawClient:
    """One TLS connection to a broker port, presenting `cert` with `key` (an agent cert)."""

    def __init__(
        self,
        port: int,
        cert: Path,
        key: Path,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
        source: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`source`: the local address to connect from (127.0.0.2 is another address);
        `host`: the broker's (an IPv6 one, ``fe80::1%eth0`` with its zone, too)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the broker's agent cert is PPKS, checked elsewhere
        ctx.load_cert_chain(str(cert), str(key))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        if source is not None:
            raw.bind(_sockaddr(source, 0))
        raw.connect(_sockaddr(host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw)
        self.framer = wire.Framer()
        self.alert = ""  # the TLS alert the peer closed with (closed_by_peer)
        self.ready: list[wire.Item] = []

    def send(self, *msgs: wire.Message | bytes, split: bool = True) -> None:
        """Each message as header and body in separate TLS records (as the reference)."""
        for m in msgs:
            data = m if isinstance(m, bytes) else wire.encode(m)
            if split and len(data) > 4:
                self.sock.sendall(data[:4])
                self.sock.sendall(data[4:])
            else:
                self.sock.sendall(data)

    def recv(self, timeout: float = 10.0) -> wire.Item:
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the broker")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("broker closed the connection")
            self.ready.extend(self.framer.feed(data))
        return self.ready.pop(0)

    def quiet(self, seconds: float) -> list[wire.Item]:
        """Everything that arrives within `seconds` (expected: nothing)."""
        got: list[wire.Item] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.recv(max(0.01, deadline - time.monotonic())))
            except (TimeoutError, ssl.SSLError):
                break
            except ConnectionError:
                break
        return got

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True when the peer closes within `timeout`, by a close or a TLS alert (a refused
        certificate gets the alert of the rule: `self.alert` keeps its text)."""
        try:
            while True:
                self.recv(timeout)
        except ConnectionError:
            return True
        except ssl.SSLError as e:
            if "ALERT" not in str(e):
                return False
            self.alert = str(e)
            return True
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Identity:
    """An endpoint (or controller) agent of the demo EOp: its key, self-signed agent cert,
    and subcmd (k_eop -> key) for subscribing on the EOp's private channel."""

    def __init__(self, home: PktlabHome, workdir: Path, name: str) -> None:
        from packetlab.ppks import (
            generate_private_key,
            issue_certificate,
            key_id,
            raw_public_key,
            write_key_pair,
        )

        key = generate_private_key()
        eop = home.private_key("k_eop")
        self.key_path = workdir / f"{name}.key"
        write_key_pair(self.key_path, key)
        agent = issue_certificate("agent", key, key, 0, 2**31 - 1)
        self.cert_path = workdir / f"{name}.agent.cert"
        self.cert_path.write_bytes(agent.to_pem())
        self.subcmd = issue_certificate("subcmd", eop, key, 0, 2**31 - 1)
        self.subcmd_path = workdir / f"{name}.subcmd.cert"
        self.subcmd_path.write_bytes(self.subcmd.to_pem())
        self.eopkey = raw_public_key(eop)
        self.channel = key_id(eop)

    def endpoint_args(self) -> list[str]:
        """pktendpoint options making this identity the endpoint's (both links)."""
        return [
            "--private-key",
            str(self.key_path),
            "--cert-chain",
            str(self.subcmd_path),
            "--set",
            f"EndpointAgentCertPath={self.cert_path}",
            "--set",
            f"SubPrivCertChainPath={self.subcmd_path}",
        ]

    def subscribe(self, port: int, dattr: bytes = b"") -> RawClient:
        """Connect, send xcert + xsub pipelined, and expect two SUCCESS results."""
        c = RawClient(port, self.cert_path, self.key_path)
        c.send(wire.Xcert(self.subcmd.der), wire.Xsub([self.channel], self.eopkey, dattr))
        assert c.recv() == wire.Result(0)
        assert c.recv() == wire.Result(0)
        return c


def publish_raw(home: PktlabHome, broker: BrokerProcess, xdescr: bytes) -> RawClient:
    """Publish `xdescr` on the demo EOp's private channel with pktxpmgr's sequence: the
    xcerts leaf first, then the xpub, each answered `result 0` in lockstep. The returned
    client holds the publication (it lives as long as the connection)."""
    from packetlab.ppks import key_id, raw_public_key

    p = RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
    for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):
        p.send(wire.Xcert(home.certificate(name).der))
        assert p.recv() == wire.Result(0)
    eop = home.public_key("k_eop")
    p.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xdescr))
    assert p.recv() == wire.Result(0)
    return p


def publisher_heard(home: PktlabHome, broker: BrokerProcess, good: RawClient, snikey: str) -> str:
    """What the stress scripts print of a real publisher after a flood: `good` (a
    subscriber) is notified of a `publish_raw`, or the words of its refusal."""
    try:
        xd = f"controller_addr=127.0.0.1:9;sni_key={snikey};".encode()
        pub = publish_raw(home, broker, xd)
        note = good.recv()
        pub.close()
        return "its subscriber notified" if getattr(note, "xdescr", None) == xd else f"got {note}"
    except (OSError, ConnectionError, AssertionError) as e:
        return f"refused ({e!r})"


home = home_fixture()


@pytest.fixture(scope="module")
def broker(home: PktlabHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker of `home` with ErrorDelay 0 (a refusal costs no wait), one per module."""
    b = BrokerProcess(home, tmp_path_factory.mktemp("broker"), error_delay=0)
    yield b
    b.stop()


@pytest.fixture(name="broker")
def broker_per_test(home: PktlabHome, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of `home` with the default ErrorDelay, one per test in its `tmp_path`
    (bound at a module's top as `broker = broker_world.broker_per_test`)."""
    b = BrokerProcess(home, tmp_path)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def proxy(home: PktlabHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProc]:
    """A proxy with the identity of `home`, one per module."""
    p = ProxyProc(tmp_path_factory.mktemp("proxy"), home.root)
    yield p
    p.stop()
