"""`pktlab run ping|traceroute` side by side with iputils ping and Butskoy traceroute (root):
the same command lines on loopback and in a testbed namespace must print the same lines
once the numbers that legitimately differ (RTTs, the statistics' time) are masked, and
exit with the same status. `| head` ends a run quietly, as SIGPIPE ends a native tool.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from test_pktlab_run import RUN, env, pktlab_run

from packetlab.testbed import Testbed

T = TypeVar("T")

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def beside_native(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str, *, home: bool = True
) -> None:
    """Skip without root or the native ping and traceroute; else the testbed's state and
    namespace names (`prefix` + pid) this test's own, and (`home`) a fresh pktlab home.
    Every side-by-side file's autouse fixture calls it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: raw sockets, network namespaces")
    for tool in ("ping", "traceroute"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (iputils-ping, traceroute)")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", prefix)
    if home:
        monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "pktlab-home"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"pln{os.getpid() % 100000}-")


# The testbed's namespaces cannot reach the host's nameserver: a reverse lookup (no -n)
# waited the resolver's 5 s in each tool; both are given 1 s (glibc's RES_OPTIONS).
QUICK_DNS = ("env", "RES_OPTIONS=timeout:1 attempts:1")


def native(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def preload_shim(tmp_path: Path, source: str, stem: str, why: str) -> str:
    """`source` (C) built into an LD_PRELOAD library in `tmp_path` (skip without a C
    compiler, `why` saying what the library is for)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip(f"needs a C compiler for {why}")
    src, lib = tmp_path / f"{stem}.c", tmp_path / f"{stem}.so"
    src.write_text(source)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return str(lib)


def tcpdump_listening(cap: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Returns once `cap` (tcpdump) says "listening on" on stderr: its filter is set and
    the capture open (a fixed 1 s wait lost the first packets when a loaded machine
    started tcpdump late). Read a byte at a time: the rest stays for `communicate()`."""
    assert cap.stderr is not None
    fd, said = cap.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while b"listening on" not in said:
        left = deadline - time.monotonic()
        assert left > 0, f"tcpdump not listening within {timeout:g} s: {said!r}"
        if select.select([fd], [], [], left)[0]:
            byte = os.read(fd, 1)
            assert byte, f"tcpdump exited before listening: {said.decode(errors='replace')}"
            said += byte


def tcpdump_while(
    ns: str, dev: str, expr: str, run: Callable[[], T], lines: int
) -> tuple[T, list[str]]:
    """`run()`'s result and the lines tcpdump printed for `expr` on `ns`'s `dev` while it
    ran (started once tcpdump listens). Once `run()` is done, tcpdump is given until it
    has printed `lines` lines (at most 20 s), then 0.2 s for any beyond, then SIGINT: a
    packet it has not printed by then is lost (it stops at once), and under load a fixed
    0.2 s was not always enough for the last ones (shown by stopping it meanwhile)."""
    cap = subprocess.Popen(
        ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-i", dev, expr],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        tcpdump_listening(cap)
        done = run()
        assert cap.stdout is not None
        fd, head = cap.stdout.fileno(), b""
        deadline = time.monotonic() + 20
        while head.count(b"\n") < lines and (left := deadline - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                if not (chunk := os.read(fd, 65536)):
                    break  # (it ended)
                head += chunk
        time.sleep(0.2)  # (any lines beyond `lines`: -l writes each as it comes)
        cap.send_signal(signal.SIGINT)
        rest, _ = cap.communicate(timeout=20)
        out = head.decode() + rest
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    return done, out.splitlines()


def masked(text: str) -> list[str]:
    """The lines with what may differ between two runs masked: RTTs (`time=`, `ms`
    figures), the statistics' time and ping's `pipe` (scheduling)."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"ipg/ewma [\d./]+ ms", "ipg/ewma I ms", line)
        line = re.sub(r"time=\d+(\.\d+)? ms", "time=T ms", line)
        line = re.sub(r"time \d+ms", "time Tms", line)
        line = re.sub(r"= [\d./]+ ms", "= R ms", line)
        line = re.sub(r"\d+\.\d{3} ms", "R ms", line)
        line = re.sub(r"(, )?pipe \d+", "", line)
        line = re.sub(r"ident=\d+", "ident=I", line)  # ping -v: each its own identifier
        line = re.sub(r"^\[\d+\.\d{6}\] ", "[T] ", line)  # ping -D
        out.append(line)
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "3", "-i", "0.2", "127.0.0.1"],
        ["-c", "2", "-i", "0.2", "localhost"],  # NAME (ADDR) replies, title as given
        ["-c", "2", "-i", "0.2", "-n", "localhost"],
        ["-c", "1", "-s", "100", "::1"],
        ["-c", "2", "-i", "0.2", "-s", "8", "127.0.0.1"],  # no timing below 16 bytes
        ["-c", "2", "-i", "0.2", "-p", "ab12", "127.0.0.1"],  # PATTERN: line
        ["-c", "2", "-i", "0.2", "-s", "20", "-p", "0102030405060708090a0b0c0d0e0f1011", "::1"],
        ["-c", "2", "-i", "0.2", "-q", "-p", "abcd", "127.0.0.1"],  # (no PATTERN: line)
        ["-c", "2", "-i", "0.2", "-D", "127.0.0.1"],  # [UNIXTIME.MICROS] first
        ["-c", "2", "-i", "0.2", "-I", "lo", "127.0.0.1"],  # from 127.0.0.1 lo:
        ["-c", "2", "-i", "0.2", "-I", "127.0.0.1", "127.0.0.1"],  # from 127.0.0.1 :
        ["-c", "2", "-i", "0.2", "-I", "lo", "::1"],
        ["-c", "2", "-i", "0.2", "-Q", "0x28", "127.0.0.1"],  # -Q: on the wire only
        ["-c", "2", "-i", "0.2", "-Q", "184", "::1"],
        ["-c", "4", "-i", "0.2", "-l", "3", "127.0.0.1"],
        ["-c", "1", "-M", "do", "-s", "2000", "127.0.0.1"],
        ["-c", "1", "-M", "dont", "-s", "2000", "127.0.0.1"],
        ["-c", "2", "-i", "0.2", "-M", "do", "::1"],
        ["-c", "2", "-i", "0.2", "-v", "127.0.0.1"],  # ai->... line, ident= in replies
        ["-c", "3", "-i", "0.2", "-R", "127.0.0.1"],  # RR: lines, then (same route)
        ["-c", "1", "-R", "-s", "100", "localhost"],  # names in the RR: lines
        ["-c", "1", "-R", "::1"],  # (ignored over IPv6, as ping)
        ["-c", "2", "-i", "0.2", "-a", "-R", "127.0.0.1"],  # BEL after the line, before RR
    ],
)
def test_ping_on_loopback_prints_what_iputils_prints(args: list[str]) -> None:
    ours = pktlab_run("ping", *args)
    theirs = native("ping", *args)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)


def test_ping_errors_unreachable_and_deadline_as_iputils(
    testbed_factory: Callable[..., Testbed],
) -> None:
    tb: Testbed = testbed_factory(hops=2)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg"))
    nowhere = str(tb.addr("tg")).rsplit(".", 1)[0] + ".9"  # on tg's link: no such host
    for args in (
        ["-c", "3", "-i", "0.2", "-t", "1", tg],  # From r1 ... Time to live exceeded
        ["-c", "2", "-i", "0.2", "-t", "1", str(tb.addr("tg", 6))],  # Time exceeded: Hop limit
        ["-c", "2", "-i", "0.2", nowhere],  # From r2 ... Destination Host Unreachable
        ["-c", "3", "-i", "0.2", "-w", "5", tg],  # -w with -c: until 3 answers, 3 sent
        ["-c", "3", "-i", "0.2", "-w", "5", "-t", "1", tg],  # -w: the first error ends it
        ["-c", "10", "-i", "0.2", "-w", "1", tg],  # -w with -c: fewer than asked: 1
    ):
        ours = pktlab_run("ping", *args, netns=ns)
        theirs = native("ping", *args, netns=ns)
        assert ours.returncode == theirs.returncode, (args, ours.stdout, ours.stderr)
        if "-w" in args and args[args.index("-w") + 1] == "1":
            continue  # (how many go before the deadline is a matter of scheduling)
        assert masked(ours.stdout) == masked(theirs.stdout), args


def rendered(text: str) -> str:
    """What a terminal shows of ping -f's line: backspaces applied."""
    out: list[str] = []
    at = 0
    for c in text:
        if c == "\b":
            at = max(0, at - 1)
        elif c == "\n":
            out.append("\n")
            at = len(out)
        else:
            out[at : at + 1] = [c]
            at += 1
    return "".join(out)


def test_ping_timestamps_are_the_endpoints_unix_time() -> None:
    before = time.time()
    ours = pktlab_run("ping", "-c", "2", "-i", "0.2", "-D", "127.0.0.1")
    stamps = [float(x) for x in re.findall(r"^\[(\d+\.\d{6})\]", ours.stdout, re.M)]
    assert len(stamps) == 2 and before < stamps[0] < stamps[1] < time.time()


def test_ping_flood_shows_what_iputils_shows() -> None:
    """-f on loopback: the same screen (every dot erased by its reply); the bytes differ
    only in order (the endpoint may send several requests before the first reply)."""
    args = ["-c", "20", "-f", "127.0.0.1"]
    ours, theirs = pktlab_run("ping", *args), native("ping", *args)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout.count(".") - theirs.stdout.count(".") == 0
    assert ours.stdout.count("\b \b") == theirs.stdout.count("\b \b") == 20
    screen = [x.rstrip() for x in masked(rendered(ours.stdout))]
    assert screen == [x.rstrip() for x in masked(rendered(theirs.stdout))]


def test_ping_outstanding_timestamps_flood_errors_and_bad_input_as_iputils(
    testbed_factory: Callable[..., Testbed],
) -> None:
    tb: Testbed = testbed_factory(hops=2)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg"))
    for args in (
        ["-c", "3", "-i", "0.2", "-O", "-t", "1", tg],  # no answer yet for icmp_seq=N
        ["-c", "3", "-i", "0.2", "-O", "-D", "-t", "1", tg],
        ["-c", "3", "-i", "0.2", "-f", "-t", "1", tg],  # .\bE per request
        ["-c", "3", "-i", "0.2", "-q", "-O", "-t", "1", tg],  # -O's lines despite -q
        ["-c", "2", "-i", "0.2", "-D", "-f", tg],  # no stamps for dots; ipg/ewma with -f
        ["-c", "2", "-i", "0.2", "-I", "to-r1", tg],  # from 10.77.1.1 to-r1:
        ["-c", "3", "-i", "0.2", "-R", tg],  # RR: lines (the routers'), (same route)
    ):
        ours = pktlab_run("ping", *args, netns=ns)
        theirs = native("ping", *args, netns=ns)
        assert ours.returncode == theirs.returncode, (args, ours.stdout, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args
    for args in (["-c", "1", "-p", "12xyz", tg], ["-c", "1", "-I", "nosuch0", tg]):
        ours = pktlab_run("ping", *args, netns=ns)
        theirs = native("ping", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 2, args
        assert ours.stdout == theirs.stdout == "" and len(ours.stderr.splitlines()) == 1
        assert "Traceback" not in ours.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "0", "127.0.0.1"],
        ["-c", "abc", "127.0.0.1"],
        ["-s", "65500", "-c", "1", "127.0.0.1"],  # 65528 bytes: sent, answered
        ["-s", "65507", "-c", "1", "127.0.0.1"],
        ["-s", "65508", "-c", "2", "-i", "0.2", "127.0.0.1"],  # local error, mtu=65535
        ["-s", "65500", "-c", "1", "::1"],
    ],
)
def test_ping_count_and_size_limits_as_iputils(args: list[str]) -> None:
    """Session 12 left ping -c 0 / -s 65500 as argparse's usage and 2: now iputils'
    words and status (`invalid argument: '0': out of range: ...`, 1; the bound ours,
    10,000), and a size up to what a packet holds sent as ping sends it."""
    ours, theirs = pktlab_run("ping", *args), native("ping", *args)
    assert ours.returncode == theirs.returncode, (args, ours.stderr, theirs.stderr)
    assert masked(ours.stdout) == masked(theirs.stdout), args
    strip = [re.sub(r"(?m)^(pktlab run )?ping: ", "", x) for x in (ours.stderr, theirs.stderr)]
    if args[1] == "0":  # (iputils' bound: LLONG_MAX)
        strip = [re.sub(r"<= \d+$", "<= N", x.strip()) for x in strip]
    assert strip[0].strip() == strip[1].strip(), (ours.stderr, theirs.stderr)


def test_ping_long_requests_over_a_narrow_link_as_iputils(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """-s over the MTU: requests in fragments (ping's kernel's), DF otherwise, so a 1400
    MTU link answers "Frag needed" once and the next requests go in fragments."""
    tb: Testbed = testbed_factory(hops=2)
    ns, tg, tg6 = tb.netns_name("ep"), str(tb.addr("tg")), str(tb.addr("tg", 6))
    _narrow(tb)
    for args in (
        ["-c", "2", "-i", "0.2", "-s", "2000", tg],
        ["-c", "3", "-i", "0.2", "-s", "1400", tg],  # Frag needed and DF set (mtu = 1400)
        # Packet too big: mtu=1400 (the lost request's reply is waited for 1 s, not 10)
        ["-c", "3", "-i", "0.2", "-W", "1", "-s", "3000", tg6],
        ["-c", "1", "-M", "do", "-s", "1400", tg],  # Frag needed: no fragments after
        ["-c", "3", "-i", "0.3", "-M", "do", "-s", "1400", tg],  # then local errors (+3)
        ["-c", "2", "-i", "0.2", "-M", "dont", "-s", "1400", tg],  # r1 fragments: no DF
    ):
        _flush_path_mtus(ns)
        ours = pktlab_run("ping", *args, netns=ns)
        _flush_path_mtus(ns)
        theirs = native("ping", *args, netns=ns)
        assert ours.returncode == theirs.returncode, (args, ours.stdout, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args


def _narrow(tb: Testbed) -> None:
    """The r1-r2 link's MTU down to 1400."""
    for node, dev in (("r1", "to-r2"), ("r2", "to-r1")):
        subprocess.run(
            ["ip", "netns", "exec", tb.netns_name(node), "ip", "link", "set", dev, "mtu", "1400"],
            check=True,
        )


# -w 5,0,0 in the side-by-side traceroute loops: no shortened waits. Both tools wait for a
# probe only 3 x the RTT of an answer from its hop (10 x one from a later hop), and the
# testbed's RTTs are ~50 µs: a tool descheduled for a moment prints `*` for an answer that
# came. CI (session 26, pass 1, two workers) saw native traceroute do it twice (`R ms * *`
# at hops where ours had all three; `-T -O info`, `-I` IPv6 2000), as
# test_traceroute_more_like_native's DCCP tests had. -w's own semantics are compared in
# test_traceroute_sweep25_like_native.py.
_NO_SHORT_WAITS = ("-w", "5,0,0")


def test_traceroute_in_a_testbed_prints_what_traceroute_prints(
    testbed_factory: Callable[..., Testbed],
) -> None:
    tb: Testbed = testbed_factory(hops=2)
    ns, tg, tg6 = tb.netns_name("ep"), str(tb.addr("tg")), str(tb.addr("tg", 6))
    for args in (
        ["-n", tg], [tg], ["-n", "-q", "1", "-I", tg], ["-n", "-f", "2", "-m", "2", tg],
        ["-n", "-q", "1", "-T", tg],  # 60 byte packets, as traceroute's SYN with options
        ["-n", "-q", "1", "-i", "to-r1", tg], ["-n", "-q", "1", "-l", "0x12345", tg6],
        ["-n", "-q", "1", "-I", "-l", "7", tg6], ["-n", "-q", "1", "-T", "-l", "7", tg6],
        ["-n", "-T", "-O", "info", tg],  # <rst,ack> after the target (port 80 closed)
        ["-n", "-q", "1", "-T", "-O", "ack", tg], ["-n", "-q", "1", "-T", "-O", "ack,info", tg6],
    ):  # fmt: skip
        args = [*_NO_SHORT_WAITS, *args]
        ours = pktlab_run("traceroute", *args, netns=ns, wrap=QUICK_DNS)
        theirs = native(*QUICK_DNS, "traceroute", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, ours.stderr
        assert masked(ours.stdout) == masked(theirs.stdout), args
    info = pktlab_run("traceroute", "-n", "-q", "1", "-T", "-O", "info", tg, netns=ns).stdout
    assert f" 3  {tg} <rst,ack>  " in info, info


def _flush_path_mtus(ns: str) -> None:
    """Forget the path MTUs the last run's "too big" taught the kernels of ep and of the
    target (its long replies meet the narrow link too), so each tool starts afresh."""
    for node in (ns, ns[: -len("ep")] + "tg"):
        for family in ("-4", "-6"):
            subprocess.run(["ip", "netns", "exec", node, "ip", family, "route", "flush", "cache"],
                           check=True, capture_output=True)  # fmt: skip


def test_traceroute_packetlen_udp_port_tos_df_and_mtu_as_traceroute(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """packetlen, -U, -t, -F, --mtu side by side with traceroute, over a path whose middle
    link (r1-r2) has an MTU of 1400."""
    tb: Testbed = testbed_factory(hops=2)
    ns, tg, tg6 = tb.netns_name("ep"), str(tb.addr("tg")), str(tb.addr("tg", 6))
    _narrow(tb)
    for args in (
        ["-n", "-q", "1", tg, "100"], ["-n", "-q", "1", tg, "10"],  # 100, 28 byte packets
        ["-n", "-q", "1", "-I", tg, "120"], ["-n", "-q", "1", "-T", tg, "100"],  # 60 bytes
        ["-n", "-q", "1", tg6, "10"],  # 48 bytes
        ["-n", "-q", "1", tg, "1450"],  # fragmented by r1 (no DF)
        ["-n", "-q", "1", tg, "3000"], ["-n", "-q", "1", "-I", tg, "3000"],  # fragments
        ["-n", "-q", "1", tg6, "2000"], ["-n", "-q", "1", "-I", tg6, "2000"],  # (!F-1400)
        ["-n", "-I", tg6, "2000"],  # !F-1400, then fragments of 1400 to r2
        ["-n", "-q", "1", "-U", tg], ["-n", "-q", "1", "-U", "-p", "5353", tg],
        ["-n", "-q", "1", "-t", "0x10", "-F", tg],
        ["-n", "-q", "1", "-F", tg, "1450"],  # !F-1400 from r1
        ["-n", "-q", "1", "-F", tg6, "1450"],
        ["-n", "--mtu", tg],  # F=1500 at hop 1, F=1400 at hop 2
        ["-n", "-q", "1", "--mtu", tg6], ["-n", "-q", "1", "--mtu", tg, "1000"],
        ["-n", "-q", "1", "--mtu", "-I", tg], ["-n", "-q", "1", "--mtu", "-T", tg],
    ):  # fmt: skip
        args = [*_NO_SHORT_WAITS, *args]
        _flush_path_mtus(ns)
        ours = pktlab_run("traceroute", *args, netns=ns)
        _flush_path_mtus(ns)
        theirs = native("traceroute", *args, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (args, ours.stderr)
        assert masked(ours.stdout) == masked(theirs.stdout), args
    for args in (["-n", tg, "70000"], ["-n", "-t", "256", tg], ["-n", tg, "abc"]):
        ours = pktlab_run("traceroute", *args, netns=ns)
        assert ours.returncode == 2 and ours.stdout == "", args
        assert len(ours.stderr.splitlines()) == 1 and "Traceback" not in ours.stderr, args
    theirs = native("traceroute", "-n", tg, "70000", netns=ns)
    assert "too big packetlen 70000 specified" in theirs.stderr
    assert "too big packetlen 70000 specified" in pktlab_run("traceroute", tg, "70000").stderr


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_traceroute_tos_and_df_are_in_the_probes_ip_header(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """-t 0x28 -F: a capture on the endpoint's link shows the TOS byte and DF (and -U's
    port 53) in every probe."""
    tb: Testbed = testbed_factory(hops=1)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg"))
    cap = subprocess.Popen(
        ["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-v", "-c", "2", "-i", "to-r1",
         "udp and dst host " + tg],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        tcpdump_listening(cap)
        ours = pktlab_run("traceroute", "-n", "-q", "1", "-U", "-t", "0x28", "-F", tg, netns=ns)
        assert ours.returncode == 0, ours.stderr
        out, _ = cap.communicate(timeout=20)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    headers = [x for x in out.splitlines() if "proto UDP" in x]
    assert len(headers) == 2, out
    assert all("tos 0x28" in x and "flags [DF]" in x for x in headers), out
    assert out.count(f"> {tg}.53:") == 2, out


def test_traceroute_names_loopback_from_this_hosts_resolver() -> None:
    """localhost is named from /etc/hosts, as traceroute names it (the endpoint runs here)."""
    ours = pktlab_run("traceroute", "-q", "1", "localhost")
    theirs = native("traceroute", "-q", "1", "localhost")
    assert ours.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)


def test_a_closed_stdout_ends_the_run_quietly() -> None:
    """`pktlab run ping ... | head -2`: no `Broken pipe` error line, SIGPIPE's 141."""
    proc = subprocess.Popen(
        [*RUN, "ping", "-c", "5", "-i", "0.2", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as head does after its lines
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert first.startswith("PING 127.0.0.1") and err == ""
