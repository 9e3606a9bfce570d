"""IP options and TCP probe flavors side by side with the native tools (root): ping -T
(iputils' `TS:` lines, through routers that stamp too), ping HOST... TARGET and
traceroute -g (loose source routes through gateways) and traceroute -T -O's flags and
options, compared line by line and, with tcpdump on the endpoint's link, byte by byte
(what legitimately differs masked: times, sequence numbers, ports, checksums, IP IDs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import masked, native, preload_shim, tcpdump_listening

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets, network namespaces")
    for tool in ("ping", "traceroute", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (iputils-ping, traceroute, tcpdump)")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plo{os.getpid() % 100000}-")
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "pktlab-home"))


def ts_masked(text: str) -> list[str]:
    """`masked`, and the timestamps of `TS:` lines (ms since midnight, and the
    differences, which depend on when each host stamped)."""
    out = []
    for line in masked(text):
        line = re.sub(r"\t\d+ absolute", "\tT absolute", line)
        line = re.sub(r"^(\t[^\t]+)?\t-?\d+$", r"\1\tD", line)
        out.append(line)
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "2", "-i", "0.2", "-T", "tsonly", "127.0.0.1"],
        ["-c", "2", "-i", "0.2", "-T", "tsandaddr", "127.0.0.1"],
        ["-c", "1", "-T", "tsandaddr", "localhost"],  # names in the TS: lines
        ["-c", "1", "-T", "tsprespec", "127.0.0.1", "127.0.0.2", "127.0.0.1"],
        ["-c", "1", "-T", "tsprespec", "10.1.2.3", "127.0.0.1"],  # not stamped: no TS:
        ["-c", "1", "-T", "tsprespec", "localhost"],
        ["-c", "1", "-T", "tsonly", "::1"],  # (ignored over IPv6, as ping)
    ],
)
def test_ping_timestamps_on_loopback_as_iputils(args: list[str]) -> None:
    ours = pktlab_run("ping", *args)
    theirs = native("ping", *args)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ts_masked(ours.stdout) == ts_masked(theirs.stdout)
    if "-T" in args and "::1" not in args and "10.1.2.3" not in args and "localhost" != args[-1]:
        assert "TS: " in ours.stdout


def test_ping_timestamp_errors_as_iputils() -> None:
    """The same exit status, nothing on stdout, and iputils' words where it has some (an
    option's bad value after argparse's usage, as every option error of `pktlab run`)."""
    for args, words in (
        (["-c", "1", "-T", "tsall", "127.0.0.1"], "invalid timestamp type: tsall"),
        (["-c", "1", "-R", "-T", "tsonly", "127.0.0.1"], "only one of -T or -R may be used"),
        (["-c", "1", "-T", "tsprespec", *["127.0.0.1"] * 5, "127.0.0.1"], "at most 4 hosts"),
        (["-c", "1", "-R", "127.0.0.2", "127.0.0.1"], "is not with -R"),
        (["-c", "1", "-T", "tsonly", "127.0.0.2", "127.0.0.1"], "-T tsonly takes one TARGET"),
        (["-c", "1", *["127.0.0.2"] * 10, "127.0.0.1"], "at most 9 hosts before TARGET"),
        (["-c", "1", "127.0.0.2", "::1"], "HOST... TARGET is IPv4 only"),
    ):
        ours, theirs = pktlab_run("ping", *args), native("ping", *args)
        assert ours.returncode == theirs.returncode == 2, args
        assert ours.stdout == theirs.stdout == "" and "Traceback" not in ours.stderr
        assert words in ours.stderr.splitlines()[-1], ours.stderr
        if words.startswith(("invalid", "only")):  # (else ping prints its usage text)
            assert words in theirs.stderr


def _hex_packets(out: str) -> list[bytes]:
    """The packets of `tcpdump -x` output, as bytes."""
    packets: list[bytearray] = []
    for line in out.splitlines():
        m = re.match(r"\s+0x([0-9a-f]{4}):\s+(.*)", line)
        if m is None:
            continue
        if m.group(1) == "0000":
            packets.append(bytearray())
        packets[-1] += bytes.fromhex(m.group(2).replace(" ", ""))
    return [bytes(p) for p in packets]


@contextmanager
def captured(ns: str, dev: str, expr: str, count: int) -> Iterator[list[bytes]]:
    """The first `count` packets matching `expr` on `dev` in `ns` while the block runs."""
    got: list[bytes] = []
    cap = subprocess.Popen(
        ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-x", "-c", str(count), "-i", dev,
         expr],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        tcpdump_listening(cap)
        yield got
        out, _ = cap.communicate(timeout=20)
        got.extend(_hex_packets(out))
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()


def _accept_source_routes(tb: Testbed, nodes: tuple[str, ...]) -> None:
    for node in nodes:
        subprocess.run(
            ["ip", "netns", "exec", tb.netns_name(node), "sh", "-c",
             "for f in /proc/sys/net/ipv4/conf/*/accept_source_route; do echo 1 > $f; done"],
            check=True,
        )  # fmt: skip


def test_ping_timestamps_through_routers_as_iputils(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """Through two routers every hop stamps (and tsandaddr's 4 slots fill: `Unrecorded
    hops: 4`, as ping prints it); the requests' options are ping's byte for byte but the
    times."""
    tb: Testbed = testbed_factory(hops=2)
    ns, tg, r2 = tb.netns_name("ep"), str(tb.addr("tg")), str(tb.addr("r2"))
    for args in (
        ["-c", "2", "-i", "0.2", "-T", "tsonly", tg],
        ["-c", "2", "-i", "0.2", "-T", "tsandaddr", tg],  # Unrecorded hops: 3
        ["-c", "1", "-T", "tsprespec", r2, tg, tg],
    ):
        ours = pktlab_run("ping", *args, netns=ns)
        theirs = native("ping", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (args, ours.stderr)
        assert ts_masked(ours.stdout) == ts_masked(theirs.stdout), args
    assert "Unrecorded hops: 3" in pktlab_run("ping", "-c", "1", "-T", "tsandaddr", tg,
                                              netns=ns).stdout  # fmt: skip
    requests = []
    for tool in (pktlab_run, native):
        with captured(ns, "to-r1", "icmp[icmptype] == icmp-echo", 1) as got:
            tool("ping", "-c", "1", "-T", "tsandaddr", tg, netns=ns)
        requests += got
    mine, its = (p[: (p[0] & 0x0F) * 4] for p in requests)
    assert len(mine) == len(its) == 56
    assert mine[20:28] == its[20:28]  # option, pointer, flags, the sender's address
    assert mine[32:] == its[32:]  # the empty slots (the sender's time: bytes 28..31)


def test_traceroute_tcp_options_as_traceroute(testbed_factory: Callable[..., Testbed]) -> None:
    """Each -O combination: the same lines as traceroute (the header's packet size, the
    target's flags with info), and SYNs with the same flags, window and options (TCP
    timestamps' values, sequence numbers, ports and checksums differ; our ACK probes
    carry their sequence number as acknowledgment number, traceroute's 0)."""
    tb: Testbed = testbed_factory(hops=1)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg"))
    combos = [
        [], ["-O", "syn"], ["-O", "ecn"], ["-O", "mss=1000,sack"], ["-O", "timestamps"],
        ["-O", "window_scaling"], ["-O", "fin,psh,info"], ["-O", "flags=0x29"],
        ["-O", "syn,ack"], ["-O", "sysctl,ack"], ["-O", "ack,timestamps"], ["-O", "urg,info"],
        ["-O", "time,window"], ["-O", "rst"],
    ]  # fmt: skip
    for combo in combos:
        # (an RST probe gets no answer from the target: each tool waited the default 5 s
        # for it; 2 s is 100 times the routers' answers here)
        wait = ["-w", "2"] if combo == ["-O", "rst"] else []
        args = ["-n", "-q", "1", "-m", "3", *wait, "-T", *combo, tg]
        with captured(ns, "to-r1", f"ip[8] == 1 and tcp and dst host {tg}", 2) as probes:
            ours = pktlab_run("traceroute", *args, netns=ns)  # (one TTL 1 probe each)
            theirs = native("traceroute", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (combo, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), combo
        ours_p, theirs_p = probes
        assert len(ours_p) == len(theirs_p), combo
        assert _tcp_shape(ours_p) == _tcp_shape(theirs_p), combo


def _tcp_shape(packet: bytes) -> tuple[int, int, int, bytes]:
    """A TCP probe's flags, window, data offset and options, the timestamp values
    zeroed."""
    tcp = packet[(packet[0] & 0x0F) * 4 :]
    options = bytearray(tcp[20 : (tcp[12] >> 4) * 4])
    at = 0
    while at < len(options):
        if options[at] in (0, 1):
            at += 1
            continue
        if options[at] == 8:
            options[at + 2 : at + 10] = bytes(8)
        at += max(2, options[at + 1])
    return tcp[13], int.from_bytes(tcp[14:16], "big"), tcp[12] >> 4, bytes(options)


def test_traceroute_through_a_gateway(testbed_factory: Callable[..., Testbed]) -> None:
    """-g r2's address (every host accepting source routes): the probes go to the gateway
    with traceroute's option, byte for byte but the IP ID, ports and checksums; the same
    header line; the hops are the path's. (traceroute's own sockets get no routers' errors
    quoting a probe to the gateway, so it shows `*` for them: ours shows the hops.)"""
    tb: Testbed = testbed_factory(hops=3)
    ns, tg, gw = tb.netns_name("ep"), str(tb.addr("tg")), str(tb.addr("r2"))
    _accept_source_routes(tb, ("ep", "r1", "r2", "r3", "tg"))
    plain = pktlab_run("traceroute", "-n", "-q", "1", tg, netns=ns)
    for extra in ([], ["-T"], ["-I"]):
        args = ["-n", "-q", "1", "-m", "6", *extra, "-g", gw, tg]
        ours = pktlab_run("traceroute", *args, netns=ns)
        theirs = native("traceroute", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (extra, ours.stderr)
        assert ours.stdout.splitlines()[0] == theirs.stdout.splitlines()[0]  # 72 byte packets
        assert [x.split()[:2] for x in ours.stdout.splitlines()[1:]] == [
            x.split()[:2] for x in plain.stdout.splitlines()[1:]
        ], extra
        if extra == ["-T"]:  # traceroute's raw TCP socket does see the target's answer
            assert masked(ours.stdout)[-1] == masked(theirs.stdout)[-1]
    probes = []
    for tool in (pktlab_run, native):
        with captured(ns, "to-r1", f"udp and dst host {gw}", 1) as got:
            tool("traceroute", "-n", "-q", "1", "-m", "1", "-g", gw, tg, netns=ns)
        probes += got
    ours_p, theirs_p = probes
    assert len(ours_p) == len(theirs_p) == 72
    assert ours_p[:4] == theirs_p[:4] and ours_p[8:10] == theirs_p[8:10]  # IHL, length, TTL
    assert ours_p[12:32] == theirs_p[12:32]  # addresses and the LSRR option
    assert ours_p[36:38] == theirs_p[36:38] and ours_p[40:] == theirs_p[40:]  # UDP length,
    # payload (the ports, and so the checksum, differ)
    for args in (["-g", ",".join([gw] * 9), tg], ["-g", "nosuch.invalid", tg]):
        ours, theirs = pktlab_run("traceroute", *args, netns=ns), native("traceroute", *args)
        assert ours.returncode == theirs.returncode == 2, args
        assert len(ours.stderr.splitlines()) == 1 and "Traceback" not in ours.stderr
    assert "No more than 8" in pktlab_run("traceroute", "-g", ",".join([gw] * 9), tg).stderr


# iputils 20221126 sets its source route (IP_OPTIONS) with its capabilities dropped, and
# Linux refuses that without CAP_NET_RAW ("ping: record route: Operation not permitted",
# exit 2, even as root): this shim raises CAP_NET_RAW (which ping keeps permitted) around
# that one setsockopt, so that native ping sends what it means to.
CAP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
    int (*real)(int, int, int, const void *, socklen_t) =
        (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (level != IPPROTO_IP || name != IP_OPTIONS || syscall(SYS_capget, &h, d))
        return real(fd, level, name, val, len);
    __u32 was = d[0].effective;
    d[0].effective |= d[0].permitted & (1u << CAP_NET_RAW);
    syscall(SYS_capset, &h, d);
    int rc = real(fd, level, name, val, len);
    d[0].effective = was;
    syscall(SYS_capset, &h, d);
    return rc;
}
"""


@pytest.fixture
def cap_shim(tmp_path: Path) -> str:
    return preload_shim(
        tmp_path, CAP_SHIM, "capshim", "native ping's source route shim (see CAP_SHIM)"
    )


def native_routed(
    *args: str, shim: str, netns: str | None = None
) -> subprocess.CompletedProcess[str]:
    return native("env", f"LD_PRELOAD={shim}", "ping", *args, netns=netns)


def test_ping_through_hosts_as_iputils(
    testbed_factory: Callable[..., Testbed], cap_shim: str
) -> None:
    """ping HOST... TARGET through three routers (every host accepting source routes):
    the same lines as iputils (`56(124) bytes`, the replies' `LSRR:` lines as its
    pr_options prints them), and requests with its header: to the first host, NOP +
    LSRR with the other hosts and the target (the IP ID and checksum differ, and the
    payload: iputils' starts with its send time)."""
    tb: Testbed = testbed_factory(hops=3)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg"))
    r1, r2, r3 = (str(tb.addr(r)) for r in ("r1", "r2", "r3"))
    _accept_source_routes(tb, ("ep", "r1", "r2", "r3", "tg"))
    for args in (
        ["-c", "2", "-i", "0.2", r2, tg],
        ["-c", "1", r2, r3, tg],
        ["-c", "1", r1, r2, r3, tg],
        ["-c", "1", *[r2] * 9, tg],  # iputils' most: a 40 byte option
        ["-c", "1", "-n", "-s", "100", r3, tg],
        ["-c", "1", "-W", "1", "-t", "1", r2, tg],  # (no error line, no reply: ping's too)
    ):
        ours = pktlab_run("ping", *args, netns=ns)
        theirs = native_routed(*args, shim=cap_shim, netns=ns)
        want = 1 if "-t" in args else 0
        assert ours.returncode == theirs.returncode == want, (args, ours.stderr, theirs.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args
        assert ("LSRR: " in ours.stdout) == (want == 0)
    requests = []
    for run in (pktlab_run, lambda *a, netns: native_routed(*a[1:], shim=cap_shim, netns=netns)):
        with captured(ns, "to-r1", "icmp[icmptype] == icmp-echo", 1) as got:
            run("ping", "-c", "1", r2, r3, tg, netns=ns)
        requests += got
    mine, its = requests
    assert len(mine) == len(its) == 96
    assert mine[:4] == its[:4] and mine[6:10] == its[6:10]  # IHL, length, DF, TTL, proto
    assert mine[12:32] == its[12:32]  # addresses (the first host's) and the option
    assert mine[12:20] == bytes(int(x) for a in (tb.addr("ep"), r2) for x in str(a).split("."))


def test_ping_through_hosts_on_loopback_as_iputils(cap_shim: str) -> None:
    """On loopback Linux drops a source-routed packet (it is not PACKET_HOST): no reply
    to ping's either; the same lines and exit status."""
    args = ["-c", "1", "-W", "1", "127.0.0.1", "127.0.0.1"]
    ours, theirs = pktlab_run("ping", *args), native_routed(*args, shim=cap_shim)
    assert ours.returncode == theirs.returncode == 1, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    assert "56(124) bytes of data." in ours.stdout
    # (session 13: and one line on why, where ping says nothing of it)
    assert ours.stderr.strip().endswith("Linux drops a source-routed packet for a local address"), (
        ours.stderr
    )
