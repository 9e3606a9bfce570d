"""The pcap files `pktlab run ... --pcap` writes, as tcpdump 4.99 reads them and beside
tcpdump's own capture of the same packets on loopback (session 24, pcap24): the same
datagrams in the same order, the endpoint's kernel stamps within microseconds of the
capture's, IPv4 and IPv6; a run killed half way leaves a file tcpdump reads.

Root: the in-process endpoint's raw sockets and the capture. Serial: it compares stamps.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child

from packetlab.measure.pcap import pcap_records

pytestmark = [pytest.mark.root, pytest.mark.serial]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# A datagram's send stamp (SO_TIMESTAMPING, at the driver) and the capture's (at the tap
# before it) were 0.8 us apart at the median, 31 us at most in 820 (load ~2); receive
# stamps are the same skb stamp. The bounds leave a loaded machine room and still catch
# a wrong clock, unit or packet.
SENT_US, RECEIVED_US = 500, 10


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the in-process endpoint's raw sockets and tcpdump -i lo")
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (scripts/setup.sh installs it)")


def pktlab(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "packetlab", "run", *argv],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


@contextlib.contextmanager
def captured(path: Path, expr: str) -> Iterator[None]:
    """tcpdump -w `path` on lo (nanosecond stamps) while the block runs. A small snap
    length and a large buffer: with its defaults (262144, 2 MiB: 8 slots of lo's 64 KiB
    frames) it dropped up to 44 of 50 datagrams in the kernel with both cores busy."""
    cap = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-nn", "-U", "--immediate-mode", "--time-stamp-precision=nano",
         "-s", "2048", "-B", "16384", "-w", str(path), expr],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert cap.stderr is not None
        said, deadline = b"", time.monotonic() + 30
        while b"listening on" not in said:  # its filter set and the capture open
            left = deadline - time.monotonic()
            assert left > 0, f"tcpdump not listening: {said!r}"
            if select.select([cap.stderr], [], [], left)[0]:
                byte = os.read(cap.stderr.fileno(), 1)
                assert byte, f"tcpdump ended: {said!r}"
                said += byte
        yield
    finally:
        cap.send_signal(signal.SIGINT)  # it writes what it holds and ends
        cap.communicate(timeout=30)


def ip_records(path: Path) -> list[tuple[int, bytes]]:
    """(ns, IP packet) of a pcap: ours (raw IP) or tcpdump's on lo (Ethernet)."""
    link, records = pcap_records(path.read_bytes())
    head = {1: 14, 101: 0}[link]
    return [(ns, pkt[head:]) for ns, pkt in records]


def udp_key(pkt: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(source, destination, ports, payload) of a UDP packet, IPv4 or IPv6."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 0x0F) * 4
        assert pkt[9] == 17
        return pkt[12:16], pkt[16:20], pkt[ihl : ihl + 4], pkt[ihl + 8 :]
    assert pkt[6] == 17
    return pkt[8:24], pkt[24:40], pkt[40:44], pkt[48:]


def tcpdump_read(path: Path) -> tuple[str, str]:
    done = subprocess.run(["tcpdump", "-r", str(path), "-tt", "-nn", "-v",
                           "--time-stamp-precision=nano"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1"])
def test_a_dns_query_beside_tcpdump(addr: str, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "tcpdump.pcap"
    server = serve_child(str(HERE / "dns_zone_server.py"), addr)
    with server as port, captured(theirs, f"udp port {port}"):
        done = pktlab(tmp_path, "dns", f"@{addr}", "-p", str(port), "a.test", "--pcap",
                      str(ours))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote 2 packets to {ours}" in done.stderr
    mine, seen = ip_records(ours), ip_records(theirs)
    assert [udp_key(p) for _, p in mine] == [udp_key(p) for _, p in seen]
    (q, q_seen), (a, a_seen) = ((m[0], s[0]) for m, s in zip(mine, seen, strict=True))
    assert abs(q - q_seen) <= SENT_US * 1000, (q, q_seen)  # ntag: the kernel's send time
    assert abs(a - a_seen) <= RECEIVED_US * 1000, (a, a_seen)  # ndata: its receive time
    out, err = tcpdump_read(ours)
    snaplen = "snapshot length 262144"
    assert err == f"reading from file {ours}, link-type RAW (Raw IP), {snaplen}\n"
    lines = out.splitlines()
    family = "IP6" if ":" in addr else "IP"
    assert lines[0].startswith(f"{q // 10**9}.{q % 10**9:09d} {family} ")
    assert [line for line in lines if " > " in line] and all("bad" not in line for line in lines), (
        out
    )
    assert f"{addr}.{port}:" in out and "UDP, length" in out


def test_dns_over_tcp_reads_in_tcpdump_with_its_checksums(tmp_path: Path) -> None:
    ours = tmp_path / "tcp.pcap"
    with serve_child(str(HERE / "dns_zone_server.py"), "::1") as port:
        done = pktlab(tmp_path, "dns", "@::1", "-p", str(port), "a.test", "+tcp", "--pcap",
                      str(ours))  # fmt: skip
    assert done.returncode == 0, done.stderr
    out, _ = tcpdump_read(ours)
    flags = [line.split("Flags [")[1].split("]")[0] for line in out.splitlines() if "Flags" in line]
    assert flags[:3] == ["S", "S.", "."] and flags[-2:] == ["F.", "F."], out
    assert out.count("(correct)") == len(flags), out


def test_sendgap_beside_tcpdump(tmp_path: Path) -> None:
    """The datagrams of a train as the endpoint sent them (ntag) and as tcpdump saw them."""
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "tcpdump.pcap"
    with captured(theirs, "udp dst port 9"):
        done = pktlab(tmp_path, "sendgap", "--trains", "1", "--count", "50", "--gap-us", "500",
                      "--pcap", str(ours))  # fmt: skip
    assert done.returncode == 0, done.stderr
    mine = ip_records(ours)
    assert len(mine) == 50
    # ours only (from our source port): another run on this host may send to port 9 too
    sport = udp_key(mine[0][1])[2][:2]
    seen = [(t, p) for t, p in ip_records(theirs) if udp_key(p)[2][:2] == sport]
    assert [udp_key(p) for _, p in mine] == [udp_key(p) for _, p in seen]
    gaps = [abs(m - s) for (m, _), (s, _) in zip(mine, seen, strict=True)]
    assert max(gaps) <= SENT_US * 1000 and statistics.median(gaps) <= 50_000, gaps


def test_a_run_killed_half_way_leaves_a_pcap_tcpdump_reads(tmp_path: Path) -> None:
    """--pcap's file was made empty at the start and written at the end: a run killed (or
    Ctrl-C'd twice) in between left 0 bytes, `tcpdump: truncated dump file; tried to
    read 4 file header bytes, only got 0`. Now the header is there from the start."""
    ours = tmp_path / "killed.pcap"
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "run", "sendgap", "--trains", "1000", "--pcap",
         str(ours)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (ours.exists() and ours.stat().st_size > 0):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait(30)
    data = ours.read_bytes()
    assert len(data) == 24 and struct.unpack("<I", data[:4])[0] == 0xA1B23C4D
    out, err = tcpdump_read(ours)
    assert out == "" and "link-type RAW (Raw IP)" in err


def _pktlab_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "packetlab", "run", *argv]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PKTLAB_HOME=str(tmp_path / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("where", ["-", "/dev/stdout"])
def test_pcap_dash_pipes_into_tcpdump_r_dash(tmp_path: Path, where: str) -> None:
    """`--pcap -` was refused in one line, where `tcpdump -w - | tcpdump -r -` works, and
    `--pcap /dev/stdout` put the pcap among the command's text (`tcpdump: unknown file
    format`). Now the pcap is standard output, read by `tcpdump -r -` at the other end of
    a pipe, and what the command prints goes to standard error."""
    ours = subprocess.Popen(
        _pktlab_argv("sendgap", "--trains", "1", "--count", "20", "--pcap", where),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert ours.stdout is not None
    reader = subprocess.Popen(
        ["tcpdump", "-r", "-", "-nn", "-tt", "--time-stamp-precision=nano"],
        stdin=ours.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ours.stdout.close()  # (the reader's now)
    try:
        out, err = reader.communicate(timeout=120)
        said = ours.communicate(timeout=120)[1].decode()
    finally:
        for p in (ours, reader):
            if p.poll() is None:
                p.kill()
                p.wait(30)
    assert (ours.returncode, reader.returncode) == (0, 0), (said, err)
    assert err == "reading from file -, link-type RAW (Raw IP), snapshot length 262144\n"
    assert len(out.splitlines()) == 20 and out.count("UDP, length") == 20, out
    assert f"wrote 20 packets to {'standard output' if where == '-' else where}" in said, said
    assert "# 1 train, 20 of 20 sent" in said, said  # the command's output: stderr
    assert list(tmp_path.glob("-*")) == []


def test_pcap_dash_on_a_terminal_is_refused_in_one_line(tmp_path: Path) -> None:
    """Binary pcap on a terminal would be garbage on the screen (gzip refuses likewise)."""
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            _pktlab_argv("sendgap", "--trains", "1", "--count", "2", "--pcap", "-"),
            stdout=follower, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
            cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert done.stderr == (
        "pktlab run sendgap: --pcap -: standard output is a terminal; pipe it "
        "(| tcpdump -r -) or give a file name\n"
    )


def test_pcap_dash_into_a_pipe_closed_ends_quietly_141(tmp_path: Path) -> None:
    """The reader gone (`| true`): 141 and no word, as the commands' other outputs."""
    ours = subprocess.Popen(
        _pktlab_argv("sendgap", "--trains", "1", "--count", "2", "--pcap", "-"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert ours.stdout is not None
    ours.stdout.close()  # no reader at all
    try:
        err = ours.communicate(timeout=120)[1].decode()
    finally:
        if ours.poll() is None:
            ours.kill()
            ours.wait(30)
    assert (ours.returncode, err) == (141, "")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_run_waiting_for_a_fifos_reader_ends_on_sigterm_and_ctrl_c(
    tmp_path: Path, signum: int
) -> None:
    """`--pcap FIFO` with no reader waits in the open (as `tcpdump -w FIFO`), in the
    reactor's thread, where our handlers only ask the reactor to stop: SIGTERM and SIGINT
    did not end it (killed with -9). Now the default actions end it while it waits."""
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        _pktlab_argv("sendgap", "--trains", "1", "--count", "2", "--pcap", str(fifo)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _waits_in_open(proc.pid):  # in the FIFO's open, not still starting
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signum)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signum


def _waits_in_open(pid: int) -> bool:
    """The process's main thread is asleep in the kernel's FIFO open."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() in ("fifo_open", "wait_for_partner")
    except OSError:
        return False
