"""`ip broadcast` beside tcpdump 4.99.3 (session 33, odds33): the program libpcap compiles
with the netmask tcpdump gives it, and which packets each takes."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from packetlab.controller.filters import compile_classic, compile_ebpf, netmask_value
from packetlab.pcap import libpcap

pytestmark = [
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed"),
]

DSTS = ["10.33.7.255", "10.33.7.0", "255.255.255.255", "0.0.0.0", "10.33.7.9", "10.33.8.255"]


def _ipv4_udp(dst: str) -> bytes:
    udp = struct.pack("!HHHH", 1000, 9, 9, 0) + b"x"
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                       ipaddress.IPv4Address("10.33.7.1").packed,
                       ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return head + udp


def _raw_pcap(path: Path, packets: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)]  # LINKTYPE_RAW
    for i, p in enumerate(packets):
        out.append(struct.pack("<IIII", 1000 + i, 0, len(p), len(p)) + p)
    path.write_bytes(b"".join(out))


def _tcpdump(*args: str) -> str:
    done = subprocess.run(["tcpdump", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ip_broadcast_with_netmask_0_is_tcpdumps_program_and_verdicts(tmp_path: Path) -> None:
    """tcpdump -r FILE gives pcap_compile the netmask 0: `compile_classic("ip broadcast",
    netmask=0)` is its program instruction for instruction (`-dd`), and of six
    destinations both take 255.255.255.255 and 0.0.0.0 only (our eBPF, libpcap's run)."""
    f = tmp_path / "raw.pcap"
    packets = [_ipv4_udp(d) for d in DSTS]
    _raw_pcap(f, packets)
    theirs = [tuple(int(v, 0) for v in m) for m in re.findall(
        r"\{ (0x[0-9a-f]+), (\d+), (\d+), (0x[0-9a-f]+) \}", _tcpdump("-r", str(f), "-dd",
                                                                      "ip broadcast"))]  # fmt: skip
    ours = compile_classic("ip broadcast", snaplen=262144, netmask=0)
    assert [(i.code, i.jt, i.jf, i.k) for i in ours] == theirs
    taken = [line.split()[4].rsplit(".", 1)[0]
             for line in _tcpdump("-r", str(f), "-n", "ip broadcast").splitlines()]  # fmt: skip
    assert taken == ["255.255.255.255", "0.0.0.0"]
    pcap = libpcap.OfflineFilter("ip broadcast", netmask=netmask_value(0))
    assert [d for d, p in zip(DSTS, packets, strict=True) if pcap.matches(p)] == taken
    assert compile_ebpf("ip broadcast", netmask="0.0.0.0") == compile_ebpf(
        "ip broadcast", netmask=0
    )


@pytest.mark.root
def test_tcpdump_live_on_a_slash_24_takes_ip_broadcast_as_netmask_0(tmp_path: Path) -> None:
    """Capturing live on a veth holding 10.33.7.1/24, tcpdump 4.99.3 (Debian) still
    compiles with the netmask 0 (it calls no pcap_lookupnet): of the datagrams sent to
    10.33.7.255, 255.255.255.255, 10.33.7.9 and 10.33.8.255 it takes 255.255.255.255
    alone, as `netmask=0` does here; `netmask="24"` takes the two subnet broadcasts too."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a network namespace")
    ns = f"odds33bc{os.getpid()}"
    run = ["ip", "netns", "exec", ns]
    setup = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", ns, "link", "add", "o33a", "type", "veth", "peer", "name", "o33b"],
        ["ip", "-n", ns, "addr", "add", "10.33.7.1/24", "dev", "o33a"],
        ["ip", "-n", ns, "link", "set", "o33a", "up"],
        ["ip", "-n", ns, "link", "set", "o33b", "up"],
        ["ip", "-n", ns, "neigh", "add", "10.33.7.9", "lladdr", "02:00:00:00:00:09",
         "dev", "o33a"],
        ["ip", "-n", ns, "route", "add", "10.33.8.0/24", "dev", "o33a"],
        ["ip", "-n", ns, "neigh", "add", "10.33.8.255", "lladdr", "02:00:00:00:00:0a",
         "dev", "o33a"],
    ]  # fmt: skip
    out, err = tmp_path / "live.pcap", tmp_path / "tcpdump.err"
    dump = None
    try:
        for cmd in setup:
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        with err.open("w") as e:
            dump = subprocess.Popen([*run, "tcpdump", "-i", "o33a", "-n", "-U", "-w", str(out),
                                     "ip broadcast"], stderr=e)  # fmt: skip
        deadline = time.monotonic() + 30
        while "listening" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = ["10.33.7.255", "10.33.7.9", "10.33.8.255", "255.255.255.255"]
        code = (
            "import socket,sys\n"
            "for d in sys.argv[1:]:\n"
            " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            " s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n"
            " s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'o33a')\n"
            " s.sendto(b'x',(d,9))\n"
        )
        subprocess.run([*run, "python3", "-c", code, *sent], check=True, timeout=30)
        # the last one sent is taken by every netmask: once it is written, all were seen
        while out.stat().st_size <= 24 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if dump is not None:
            dump.terminate()
            dump.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    taken = [line.split()[4].rsplit(".", 1)[0]
             for line in _tcpdump("-r", str(out), "-n").splitlines()]  # fmt: skip
    assert taken == ["255.255.255.255"]
    packets = {d: _ipv4_udp(d) for d in sent}
    for mask, want in ((0, ["255.255.255.255"]),
                       ("24", ["10.33.7.255", "10.33.8.255", "255.255.255.255"])):  # fmt: skip
        pcap = libpcap.OfflineFilter("ip broadcast", netmask=netmask_value(mask))
        assert [d for d in sent if pcap.matches(packets[d])] == want
