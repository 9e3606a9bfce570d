"""The whole system over IPv6 loopback (session 32, dual32): `twistd pktbroker` on
`tcp6:...::1` ports, an endpoint subscribed with `--broker [::1]:PORT`, `pktlab xpmgr`
publishing to `BrokerAddr [::1]:PORT` in passive mode and through `twistd pktproxy` on
::1, and `pktlab run --listen [::1]:PORT`. What is checked: the published controller_addr
in the form the reference endpoint reads (`::1:PORT`: it splits on the last ':', no
brackets, PROTOCOL.md §1.4), and `[::1]:PORT` in the lines an operator reads."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from broker_world import BrokerProcess, Identity
from conftest import REPO, twistd
from pxworld import ENV, EndpointProc, Proc, XpmgrProc, compile_c_mlet, http_server
from testkit.net import has_ipv6_loopback
from tls_world import home_fixture

from packetlab.ppks import PktlabHome

home = home_fixture()

V6 = "\\:\\:1"  # ::1 in a Twisted endpoint string


pytestmark = pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 here")


def free_v6_ports(n: int) -> list[int]:
    held = [socket.socket(socket.AF_INET6) for _ in range(n)]
    try:
        for s in held:
            s.bind(("::1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@pytest.fixture
def broker6(home: PktlabHome, tmp_path: Path) -> Iterator[BrokerProcess]:
    pub, sub = free_v6_ports(2)
    b = BrokerProcess(home, tmp_path, "--publish", f"tcp6:{pub}:interface={V6}",
                      "--subscribe", f"tcp6:{sub}:interface={V6}",
                      pub_port=pub, sub_port=sub, error_delay=0)  # fmt: skip
    yield b
    b.stop()


class Proxy6(Proc):
    """`twistd pktproxy` with both ports on ::1."""

    def __init__(self, tmp: Path, home: Path) -> None:
        port = f"tcp6:0:interface={V6}"
        argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktproxy", "--home", str(home),
                "--setup", port, "--endpoints", port]  # fmt: skip
        super().__init__(argv, tmp / "pktproxy6.log", tmp)
        self.setup = int(self.wait_log(r"setup port listening on \[::1\]:(\d+)").group(1))
        self.endpoints = int(self.wait_log(r"endpoints port listening on \[::1\]:(\d+)").group(1))


def pub_conf(home: PktlabHome, out: Path, broker: BrokerProcess, *extra: str) -> Path:
    text = (home.root / "xpmgr.conf").read_text().replace("EnableExpPublication 0", "")
    out.write_text(
        text
        + "EnableExpPublication 1\n"
        + f"BrokerAddr [::1]:{broker.pub_port}\n"
        + f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\n"
        + "PubPeriod 60000000000\n"
        + "".join(line + "\n" for line in extra)
    )
    return out


def published(broker: BrokerProcess) -> str:
    """The xdescr of the broker's first publication, as its log line quotes it."""
    found = re.search(r"publish id=\d+ peer=(\S+) .* xdescr='([^']*)'",
                      broker.wait_log("publish id=", timeout=30))  # fmt: skip
    assert found is not None
    assert found.group(1) == "::1"  # the publisher's address: a host, no port
    return found.group(2)


def endpoint6(tmp: Path, home: PktlabHome, broker: BrokerProcess) -> EndpointProc:
    ident = Identity(home, tmp, "ep")
    return EndpointProc(tmp, home.root, None, "--broker", f"[::1]:{broker.sub_port}",
                        "--ipv4", "127.0.0.1/8", *ident.endpoint_args())  # fmt: skip


def test_passive_publication_over_ipv6_brings_the_endpoint_back(
    home: PktlabHome, tmp_path: Path, broker6: BrokerProcess
) -> None:
    """`-a [::1]:0` was published as `controller_addr=[::1]:PORT`: a reference endpoint
    looks up the host `[::1]` (ours read it)."""
    conf = pub_conf(home, tmp_path / "pub.conf", broker6)
    c_mlet = compile_c_mlet(tmp_path)
    ep = endpoint6(tmp_path, home, broker6)
    with http_server() as web:
        xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                       addr="[::1]:0")  # fmt: skip
        try:
            port = int(xp.wait_log(r"listening on \[::1\]:(\d+)").group(1))
            assert f";controller_addr=::1:{port};sni_key=" in published(broker6)
            assert xp.wait_exit(60) == 0, xp.text()
            [r] = xp.result_lines()
            assert r["status"] == "done" and "HTTP/1.0 200 OK" in r["output"], r
            assert r["address"] == "::1"
            assert f"published to [::1]:{broker6.pub_port}: " in xp.text()
        finally:
            xp.stop()
            ep.stop()
    assert f"Broker subscription finished: [::1]:{broker6.sub_port}" in ep.text()


def test_proxy_mode_over_ipv6(home: PktlabHome, tmp_path: Path, broker6: BrokerProcess) -> None:
    """The proxy said `setup port listening on ::1:PORT`, the manager `backlog to
    ::1:PORT ready`, and `-p [::1]:PORT` was published with its brackets."""
    proxy = Proxy6(tmp_path, home.root)
    conf = pub_conf(home, tmp_path / "pub.conf", broker6, "EnableProxyMode 1")
    c_mlet = compile_c_mlet(tmp_path)
    ep = endpoint6(tmp_path, home, broker6)
    with http_server() as web:
        xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                       "-p", f"[::1]:{proxy.endpoints}", addr=f"[::1]:{proxy.setup}")  # fmt: skip
        try:
            assert f";controller_addr=::1:{proxy.endpoints};sni_key=" in published(broker6)
            assert xp.wait_exit(60) == 0, xp.text()
            [r] = xp.result_lines()
            assert r["status"] == "done" and "HTTP/1.0 200 OK" in r["output"], r
            assert f"backlog to [::1]:{proxy.setup} ready for snikey" in xp.text()
        finally:
            xp.stop()
            ep.stop()
            proxy.stop()


def test_run_listen_ipv6_says_bracketed_addresses() -> None:
    """`pktlab run ping --listen [::1]:PORT` said `waiting for an endpoint on ::1:PORT`,
    and with the port taken `cannot listen on ::1:PORT`."""
    argv = [sys.executable, "-m", "packetlab", "run", "ping", "--insecure-plaintext",
            "--listen"]  # fmt: skip
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run([*argv, f"[::1]:{port}", "::1"], capture_output=True, text=True,
                             timeout=60, env=ENV, cwd=REPO, check=False)  # fmt: skip
    assert (got.returncode, got.stderr) == (
        2,
        f"pktlab run ping: cannot listen on [::1]:{port}: [Errno 98] Address already in use\n",
    ), got
    [port] = free_v6_ports(1)
    waiting = subprocess.Popen([*argv, f"[::1]:{port}", "--timeout", "1", "::1"],
                               stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)  # fmt: skip
    try:
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert line.startswith(f"waiting for an endpoint on [::1]:{port} (plain TCP"), line
    finally:
        waiting.kill()
        waiting.wait(10)


@contextmanager
def veth_pair() -> Iterator[tuple[str, str, str, str, str]]:
    """Namespaces `dual32a<pid>`, `dual32b<pid>` joined by a veth pair (fd32::1/64,
    fd32::2/64 and their link-local addresses), removed after. Yields the two namespaces,
    A's link-local address (no zone) and the veth ends' names in A and in B."""
    tag = os.getpid() % 100000
    a, b, va, vb = f"dual32a{tag}", f"dual32b{tag}", f"d32a{tag}", f"d32b{tag}"
    ip = ["ip"]
    made: list[str] = []
    try:
        for ns in (a, b):
            subprocess.run([*ip, "netns", "add", ns], check=True)
            made.append(ns)
        subprocess.run([*ip, "link", "add", va, "netns", a, "type", "veth", "peer", "name",
                        vb, "netns", b], check=True)  # fmt: skip
        for ns, dev, addr in ((a, va, "fd32::1/64"), (b, vb, "fd32::2/64")):
            subprocess.run([*ip, "-n", ns, "addr", "add", addr, "dev", dev, "nodad"], check=True)
            subprocess.run([*ip, "-n", ns, "link", "set", dev, "up"], check=True)
            subprocess.run([*ip, "-n", ns, "link", "set", "lo", "up"], check=True)
        deadline = time.monotonic() + 20
        while True:  # the link-local address is usable once its DAD is over
            out = subprocess.run([*ip, "-n", a, "-6", "addr", "show", "dev", va, "scope", "link"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            found = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
            if found and "tentative" not in out:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.1)
        yield a, b, found.group(1), va, vb
    finally:
        for ns in made:
            subprocess.run([*ip, "netns", "del", ns], check=False)


@pytest.mark.root
def test_over_a_veth_pair_with_a_zoned_link_local_broker(home: PktlabHome, tmp_path: Path) -> None:
    """Broker and manager in one namespace, the endpoint in the other, subscribed to the
    broker's link-local address with its zone, `BrokerAddr [fe80::...%dev]:PORT` for the
    manager (it failed: `Invalid argument`, Twisted's HostnameEndpoint drops the zone);
    an IPv4 endpoint on the broker's dual-stack port is logged as its IPv4 address."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip(8) for network namespaces")
    with veth_pair() as (a, b, link_local, va, vb):
        pub, sub = free_v6_ports(2)  # (fresh namespaces: any port is free there)
        broker = BrokerProcess(home, tmp_path, "--publish", f"tcp6:{pub}",
                               "--subscribe", f"tcp6:{sub}", pub_port=pub, sub_port=sub,
                               error_delay=0, prefix=["ip", "netns", "exec", a])  # fmt: skip
        procs: list[Proc] = []
        try:
            ident = Identity(home, tmp_path, "ep")
            procs.append(Proc(["ip", "netns", "exec", b, *twistd(), "-n", "--pidfile=",
                               "--logfile=-", "pktendpoint", "-c", str(home.root / "endpt.conf"),
                               "--reconnect-delay", "0.1", "--broker", f"[{link_local}%{vb}]:{sub}",
                               "--ipv6", "fd32::2", *ident.endpoint_args()],
                              tmp_path / "ep.log", tmp_path))  # fmt: skip
            procs[-1].wait_log("Broker subscription finished")
            conf = pub_conf(home, tmp_path / "pub.conf", broker)
            zoned = f"BrokerAddr [{link_local}%{va}]:{pub}"
            conf.write_text(conf.read_text().replace(f"BrokerAddr [::1]:{pub}", zoned))
            c_mlet = compile_c_mlet(tmp_path)
            results = tmp_path / "results.jsonl"
            procs.append(Proc(["ip", "netns", "exec", a, sys.executable, "-m", "packetlab",
                               "xpmgr", "-c", str(conf), "-a", "[fd32::1]:0", "-n", "1",
                               "--results", str(results), str(c_mlet), "192.0.2.1", "9"],
                              tmp_path / "xpmgr.log", tmp_path))  # fmt: skip
            xp = procs[-1]
            xp.proc.wait(60)
            text = xp.text()
            port = re.search(r"listening on \[fd32::1\]:(\d+)", text)
            assert port is not None, text
            assert f";controller_addr=fd32::1:{port.group(1)};" in text, text
            # the endpoint connected back over the veth pair (the mlet's own target,
            # 192.0.2.1 from namespace B, is unreachable: its result does not matter)
            procs[0].wait_log(rf"controller session started with \[fd32::1\]:{port.group(1)}")
            # an IPv4 client of the dual-stack port: `peer=::ffff:127.0.0.1` before
            procs.append(Proc(["ip", "netns", "exec", a, *twistd(), "-n", "--pidfile=",
                               "--logfile=-", "pktendpoint", "-c", str(home.root / "endpt.conf"),
                               "--broker", f"127.0.0.1:{sub}", *ident.endpoint_args()],
                              tmp_path / "ep4.log", tmp_path))  # fmt: skip
            broker.wait_log("subscribe peer=127.0.0.1 ")
        finally:
            for p in procs:
                p.stop()
            broker.stop()
