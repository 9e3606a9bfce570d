"""`pktlab run`: argument parsing, target/source/listen handling, output, early errors.

The measurements themselves run end to end in tests/integration/test_pktlab_run.py.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

from packetlab.cli import run as cli_run
from packetlab.cli import run_host, run_ping, run_ping_echo, run_traceroute
from packetlab.cli.link import LinkError
from packetlab.cli.run import RunError, build_parser, resolve_target
from packetlab.cli.run_traceroute_checks import default_port, traceroute_shape
from packetlab.measure.records_ping import PingReply, PingResult


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_defaults() -> None:
    a = parse("traceroute", "10.0.0.1")
    assert (a.measurement, a.target, a.family, a.first_ttl, a.max_ttl, a.wait) == (
        "traceroute", "10.0.0.1", None, 1, 30, 5.0,
    )  # fmt: skip
    assert (a.sport, a.port, a.json, a.listen, a.src) == (None, None, False, None, None)
    assert a.protocol == "udp" and parse("traceroute", "-T", "x").protocol == "tcp"
    assert parse("traceroute", "-I", "x").protocol == "icmp"
    assert parse("traceroute", "--protocol", "tcp", "x").protocol == "tcp"
    assert a.pace is None and parse("traceroute", "--pace", "0.001", "x").pace == 0.001
    assert (a.queries, a.sequential, a.squeries) == (3, False, None)  # native's -q 3
    t = parse("traceroute", "-q", "1", "-w", "0.5", "--sequential", "x")
    assert (t.queries, t.wait, t.sequential) == (1, 0.5, True)
    assert parse("traceroute", "-N", "16", "x").squeries == 16
    assert parse("traceroute", "-P", "TCP-ACK", "x").protocol == "tcp-ack"
    m = parse("traceroute", "--mda", "--confidence", "99", "x")
    assert (a.mda, a.confidence, m.mda, m.confidence) == (False, 95.0, True, 99.0)
    # scamper's tracelb limits: -Q maxprobec, -g gaplimit, -q attempts, -W wait-probe
    lb = parse("traceroute", "--mda-lite", "-Q", "500", "--gaplimit", "5", "--attempts", "2",
               "-W", "15", "x")  # fmt: skip
    assert (lb.mda_lite, lb.max_probes, lb.gaplimit, lb.attempts, lb.wait_probe) == (
        True, 500, 5, 2, 15,
    )  # fmt: skip
    assert (a.mda_lite, a.max_probes, a.gaplimit, a.attempts, a.wait_probe) == (
        False, None, None, None, None,
    )  # fmt: skip
    for bad in (["-Q", "49"], ["--gaplimit", "6"], ["--attempts", "0"], ["-W", "201"]):
        with pytest.raises(SystemExit):
            parse("traceroute", "--mda", *bad, "x")
    p = parse("ping", "-6", "-c", "3", "-i", "0.2", "--json", "::1")
    assert (p.family, p.count, p.interval, p.size, p.ttl, p.json) == (6, 3, 0.2, 56, 64, True)
    assert (p.wait, p.deadline) == (10.0, None)  # iputils' -W default (MAXWAIT)
    w = parse("ping", "-W", "0.5", "-w", "10", "x")  # iputils: -W reply wait, -w deadline
    assert (w.wait, w.deadline) == (0.5, 10.0)


@pytest.mark.parametrize("what", ["traceroute", "ping"])
def test_help(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(what, "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "TARGET" in out and "--listen" in out and "examples:" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # (traceroute's own words since session 25, as traceroute 2.1.2 says them)
        (["traceroute", "--max-ttl", "0", "x"], "traceroute: first hop out of range\n"),
        (["traceroute", "--max-ttl", "256", "x"], "max hops cannot be more than 255"),
        (
            ["traceroute", "--first-ttl", "abc", "x"],
            "Cannot handle `--first-ttl' option with arg `abc' (argc 2)",
        ),
        (["traceroute", "--wait", "61", "x"], "--wait: must be 0..60 s"),  # (0: traceroute's too)
        (["traceroute", "--sport", "70000", "x"], "--sport: must be 1..65535"),
        (["traceroute", "-4", "-6", "x"], "not allowed with argument"),
        (["traceroute", "--pace", "11", "x"], "--pace: must be 0..10"),
        (["traceroute", "-N", "0", "x"], "--sim-queries: must be 1..1000"),
        (["traceroute", "--confidence", "100", "x"], "--confidence: must be 50..99.9"),
        (["traceroute", "-P", "sctp", "x"], "invalid choice"),
        (["ping", "-i=-1", "x"], "--interval: must be"),
        (["ping"], "TARGET"),
        (["trace", "x"], "invalid choice"),
        (["traceroute", "--fwmark", "3", "x"], "SO_MARK is not a PacketLab socket option"),
        (["traceroute", "-r", "x"], "SO_DONTROUTE is not a PacketLab socket option"),
        (["ping", "-T", "tsall", "x"], "invalid timestamp type: tsall"),
        (["traceroute", "-l", "abc", "x"], "expected a number"),
        (["ping", "-m", "3", "x"], "SO_MARK is not a PacketLab socket option"),
        (["ping", "-S", "1000", "x"], "SO_SNDBUF is not a PacketLab socket option"),
        (["ping", "-Q", "300", "x"], "the decimal value of TOS bits must be in range 0-255: 300"),
        (["ping", "-Q", "abc", "x"], "bad TOS value: abc"),
        (["ping", "-M", "probe", "x"], "invalid choice"),
        (["ping", "-l", "0", "x"], "-l: must be 1..65536"),
        (["traceroute", "--mbt-rounds", "11", "x"], "--mbt-rounds: must be 1..10"),
    ],
)
def test_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["-c", "0"], "invalid argument: '0': out of range: 1 <= value <= 10000"),
        (["-c", "abc"], "invalid argument: 'abc'"),
        (["-s", "70000"], "invalid argument: '70000': out of range: 0 <= value <= 65527"),
        (["-s", "x1"], "invalid argument: 'x1'"),
        (["-c", "-1"], "invalid argument: '-1': out of range: 1 <= value <= 10000"),
        (["-s", "-5"], "invalid argument: '-5': out of range: 0 <= value <= 65527"),
    ],
)
def test_ping_bad_numbers_as_iputils(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ping -c 0, -c abc: iputils' one line and status 1 (session 12: argparse's usage
    and 2); -s as large as a packet holds is taken (65500 was refused)."""
    with pytest.raises(SystemExit) as e:
        parse("ping", *argv, "x")
    assert e.value.code == 1
    assert capsys.readouterr().err == f"pktlab run ping: {line}\n"
    assert parse("ping", "-s", "65500", "x").size == 65500
    assert parse("ping", "-s", "65527", "x").size == 65527


@pytest.mark.parametrize("tool", ["ping", "traceroute"])
def test_version(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(tool, "-V")
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"pktlab run {tool} (packetlab ")


def test_new_native_options() -> None:
    tr = parse("traceroute", "-e", "--back", "-l", "0x112345", "-i", "lo", "x")
    assert (tr.extensions, tr.back, tr.flow_label, tr.interface) == (True, True, 0x12345, "lo")
    pg = parse("ping", "-Q", "0x28", "-M", "do", "-l", "3", "-R", "x")
    assert (pg.tos, pg.pmtudisc, pg.preload, pg.record_route) == (0x28, "do", 3, True)
    assert parse("ping", "x").pmtudisc == "want"


def test_tcp_module_options() -> None:
    from packetlab.cli.run_traceroute_checks import module_options

    args = parse("traceroute", "-T", "-O", "ack", "-O", "info,reuse", "x")
    module_options(args)
    assert (args.protocol, args.tcp_info) == ("tcp-ack", True)
    args = parse("traceroute", "-T", "-O", "syn,sysctl", "x")
    module_options(args)
    assert (args.protocol, args.tcp_info) == ("tcp", False)
    assert args.tcp_spec == (0x02, False, frozenset({"sysctl"}), None)
    args = parse("traceroute", "-T", "-O", "fin,psh,mss=1000", "-O", "time,window,fl=0x29", "x")
    module_options(args)  # (CLIF's abbreviations: time, window, fl)
    assert args.tcp_spec == (0x29, True, frozenset({"timestamps", "window_scaling"}), 1000)
    args = parse("traceroute", "-P", "tcp-ack", "-O", "info", "x")
    module_options(args)  # scamper's bare ACKs stay themselves
    assert (args.protocol, args.tcp_spec, args.tcp_info) == ("tcp-ack", None, True)


@pytest.mark.parametrize(
    ("words", "sysctls", "flags", "options"),
    [
        # no flag, no option: the sysctls (Linux's defaults: no ECN) -> traceroute -T's SYN
        ([], {"sack", "timestamps", "window_scaling"}, 0x02, "mss,sack+ts,ws"),
        ([], {"ecn"}, 0xC2, "mss"),  # tcp_ecn=1: SYN, ECE, CWR
        (["syn"], {"sack", "timestamps", "window_scaling"}, 0x02, "mss"),  # a flag: no sysctl
        (["ecn"], set(), 0xC2, "mss"),
        (["sack"], {"timestamps"}, 0x02, "mss,sack"),
        (["timestamps"], set(), 0x02, "mss,ts"),
        (["window_scaling"], set(), 0x02, "mss,ws"),
        (["sysctl", "ack"], {"sack", "timestamps", "window_scaling"}, 0x10, "sack+ts,ws"),
        (["fin", "psh"], {"sack"}, 0x09, ""),
        (["flags=0"], {"sack"}, 0x00, ""),  # flags=0: exactly no flag (not SYN)
        (["syn", "ack"], set(), 0x12, "mss"),
        (["info"], {"sack", "timestamps", "window_scaling"}, 0x02, "mss,sack+ts,ws"),
    ],
)
def test_tcp_flavor_as_traceroutes_tcp_init(
    words: list[str], sysctls: set[str], flags: int, options: str
) -> None:
    """The flags and options Butskoy's mod-tcp.c tcp_init builds for each -O combination
    (checked on the wire against traceroute 2.1.2, test_run_like_native.py)."""
    from packetlab.cli.run_traceroute_checks import module_options, tcp_flavor

    args = parse("traceroute", "-T", *(["-O", ",".join(words)] if words else []), "x")
    module_options(args)
    flavor = tcp_flavor(args.tcp_spec, lambda name: name in sysctls, 1500)
    assert flavor.flags == flags
    got = [
        name
        for name, on in (
            ("mss", bool(flags & 0x02)),
            ("sack+ts" if flavor.sack and flavor.timestamps else "sack", flavor.sack),
            ("ts", flavor.timestamps and not flavor.sack),
            ("ws", flavor.window_scaling),
        )
        if on
    ]
    assert ",".join(got) == options
    assert (flavor.mss, flavor.window) == (1460, 5840)  # 4 x the MSS, as traceroute's
    assert len(flavor.options()) == flavor.length - 20


def test_tcp_flavor_mss_from_the_path_mtu() -> None:
    from packetlab.cli.run_traceroute_checks import tcp_flavor

    loop = tcp_flavor(None, lambda name: False, 65535)  # lo: traceroute's mss 65495
    assert (loop.mss, loop.window) == (65495, 65372)
    assert tcp_flavor(None, lambda name: False, None).mss == 536  # unknown: 576
    assert tcp_flavor(None, lambda name: False, 1500, 6).mss == 1440
    assert tcp_flavor((0x02, False, frozenset(), 1000), lambda n: False, 1500).mss == 1000


def test_ping_timestamp_hosts() -> None:
    """ping -T tsprespec HOST... TARGET: the hosts before the target (iputils' order)."""
    from packetlab.cli.run_ping_echo import ping_hosts

    args = parse("ping", "-T", "tsprespec", "10.0.0.2", "10.0.0.3", "10.0.0.1")
    assert (ping_hosts(args), args.target) == (["10.0.0.2", "10.0.0.3"], "10.0.0.1")
    args = parse("ping", "-T", "tsandaddr", "10.0.0.1")
    assert (ping_hosts(args), args.target, args.ip_timestamps) == ([], "10.0.0.1", "tsandaddr")
    args = parse("ping", "10.0.0.2", "10.0.0.3", "10.0.0.1")  # a source route
    assert (ping_hosts(args), args.target) == (["10.0.0.2", "10.0.0.3"], "10.0.0.1")
    args = parse("ping", *["10.0.0.2"] * 9, "10.0.0.1")
    assert len(ping_hosts(args)) == 9  # (iputils' most)


def test_traceroute_gateways() -> None:
    from packetlab.cli.run_traceroute_checks import gateways

    dst = ipaddress.IPv4Address("10.0.0.1")
    assert gateways(["10.0.0.2,localhost", "10.0.0.3"], dst) == [
        "10.0.0.2", "127.0.0.1", "10.0.0.3",
    ]  # fmt: skip
    assert gateways([], dst) == []


def test_resolve_target() -> None:
    assert resolve_target("10.1.2.3", None) == ipaddress.IPv4Address("10.1.2.3")
    assert resolve_target("fd00::1", 6) == ipaddress.IPv6Address("fd00::1")
    assert resolve_target("localhost", 4) == ipaddress.IPv4Address("127.0.0.1")
    with pytest.raises(RunError, match="is an IPv4 address, but -6 was given"):
        resolve_target("10.1.2.3", 6)
    with pytest.raises(RunError, match=r"cannot resolve 'a\.\.b'"):
        resolve_target("a..b", None)


def _fails(args: argparse.Namespace) -> BaseException:
    measure = run_ping.measure if args.measurement == "ping" else run_traceroute.measure
    d = Deferred.fromCoroutine(measure(None, args))
    box: list[BaseException] = []
    d.addErrback(lambda f: box.append(f.value))  # type: ignore[call-overload]
    assert box, "measure() should have failed before using the reactor"
    return box[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traceroute", "-f", "9", "-m", "5", "10.0.0.1"], "first hop out of range"),  # (its words)
        (["traceroute", "--src", "nope", "10.0.0.1"], "--src 'nope' is not an IP address"),
        (["traceroute", "-N", "2", "--sequential", "10.0.0.1"], "not with --sequential"),
        (["traceroute", "--mda", "-P", "tcp-ack", "10.0.0.1"], "not tcp-ack"),
        (["traceroute", "--mda", "-N", "4", "10.0.0.1"], "not with --sequential or -N"),
        (["traceroute", "--mda-lite", "-z", "0.1", "10.0.0.1"], "not with --pace or -z"),
        (["traceroute", "--paris", "-U", "10.0.0.1"], "--paris: -U probes come each"),
        (["traceroute", "--paris", "-UL", "10.0.0.1"], "--paris: -UL probes"),
        (["traceroute", "--paris", "-D", "10.0.0.1"], "--paris: -D probes"),
        (["traceroute", "--mda", "--pace", "0.01", "10.0.0.1"], "with -W/--wait-probe CS"),
        (["ping", "--src", "::1", "10.0.0.1"], "--src ::1 is IPv6, the target 10.0.0.1 IPv4"),
        (["ping", "-6", "10.0.0.1"], "10.0.0.1: Address family for hostname not supported"),
        (["ping", "--listen", "bogus", "10.0.0.1"], "--listen bogus"),
        (
            ["traceroute", "-i", "eth0", "--listen", "127.0.0.1:1", "10.0.0.1"],
            "-i eth0: an endpoint reached with --listen",
        ),
        (["traceroute", "-O", "info", "10.0.0.1"], "the udp method takes no options (-T does)"),
        (["traceroute", "-T", "-O", "mss=1e3", "10.0.0.1"], "-O mss=1e3: expected 0..65535"),
        (["traceroute", "-T", "-O", "mss", "10.0.0.1"], "requires an argument: `mss=NUM'"),
        (["traceroute", "-T", "-O", "flags=x", "10.0.0.1"], "-O flags=x: expected a number"),
        (["traceroute", "-T", "-O", "sack=1", "10.0.0.1"], "`sack' takes no value"),
        (["traceroute", "-T", "-O", "bogus", "10.0.0.1"], "no such option of traceroute's tcp"),
        (["traceroute", "--mda", "-T", "-O", "fin", "10.0.0.1"], "not with -g or -O's flags"),
        (["traceroute", "-g", "10.0.0.2", "::1"], "-g: source routing over IPv6"),
        (
            [
                "traceroute",
                "-g",
                "10.0.0.2,10.0.0.3,10.0.0.4",
                "-g",
                "10.0.0.5,10.0.0.6",
                "-g",
                "10.0.0.7,10.0.0.8,10.0.0.9,10.0.0.10",
                "10.0.0.1",
            ],
            "Too many gateways specified. No more than 8",
        ),
        (["ping", "-R", "-T", "tsonly", "10.0.0.1"], "only one of -T or -R may be used"),
        (["ping", "-R", "10.0.0.2", "10.0.0.1"], "an LSRR option) is not with -R"),
        (["ping", "-T", "tsonly", "10.0.0.2", "10.0.0.1"], "-T tsonly takes one TARGET"),
        (["ping", *["10.0.0.2"] * 10, "10.0.0.1"], "at most 9 hosts before TARGET, not 10"),
        (["ping", "10.0.0.2", "::1"], "HOST... TARGET is IPv4 only"),
        (["ping", "::2", "10.0.0.1"], "HOST... TARGET is IPv4 only"),
        (
            [
                "ping",
                "-T",
                "tsprespec",
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.4",
                "10.0.0.5",
                "10.0.0.6",
                "10.0.0.1",
            ],
            "at most 4 hosts before TARGET, not 5",
        ),
        (["traceroute", "--mda", "-e", "10.0.0.1"], "--mda prints each hop's interfaces"),
        (["traceroute", "-Q", "100", "10.0.0.1"], "--maxprobec is a limit of --mda"),
        (["traceroute", "--gaplimit", "2", "10.0.0.1"], "--gaplimit is a limit of --mda"),
        (["traceroute", "--attempts", "2", "10.0.0.1"], "--attempts is a limit of --mda"),
        (["traceroute", "-W", "25", "10.0.0.1"], "--wait-probe is a limit of --mda"),
        (["traceroute", "--multilevel", "10.0.0.1"], "--multilevel resolves the interfaces"),
        (["traceroute", "--mda", "--mbt-rounds", "3", "10.0.0.1"], "add --multilevel"),
        # session 12 wrote a trace (ping) to TARGET without the source route: refused
        (
            ["traceroute", "-g", "10.0.0.2", "--warts", "x.warts", "10.0.0.1"],
            "--warts: scamper's trace records no source route (-g)",
        ),
        (
            ["ping", "--warts", "x.warts", "10.0.0.2", "10.0.0.1"],
            "--warts: scamper's ping records no source route (HOST... TARGET)",
        ),
        (["traceroute", "--mda-lite", "-N", "4", "10.0.0.1"], "not with --sequential or -N"),
        # was "internal error: RuntimeError: Could not determine home directory."
        (["ping", "--home", "~nosuchuser9/x", "10.0.0.1"], "there is no user 'nosuchuser9'"),
        # -q was accepted and ignored with --mda (even -q 3, traceroute's default)
        (["traceroute", "--mda", "-q", "2", "10.0.0.1"], "-q: --mda sends as many probes"),
        (["traceroute", "--mda-lite", "-q", "3", "10.0.0.1"], "-q: --mda-lite sends as many"),
    ],
)
def test_early_errors(argv: list[str], message: str) -> None:
    err = _fails(parse(*argv))
    assert isinstance(err, LinkError) and message in str(err)


@pytest.mark.parametrize(
    "words",
    [
        ["-N", "2"],
        ["--sequential"],
        ["-z", "0.1"],
        ["-P", "tcp-ack"],
        ["-e"],
        ["-g", "10.0.0.2"],
        ["-F"],
        ["-q", "2"],
    ],
)
def test_mda_lite_errors_name_mda_lite(words: list[str]) -> None:
    """Session 12 left: `--mda-lite -N 2` said `--mda sends its own rounds...`, naming an
    option the user did not type (--mda-lite implies it); each error names --mda-lite."""
    err = str(_fails(parse("traceroute", "--mda-lite", *words, "10.0.0.1")))
    assert "--mda-lite" in err and "--mda " not in err.replace("--mda-lite", ""), err
    assert "--mda " in str(_fails(parse("traceroute", "--mda", *words, "10.0.0.1")))


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        ([], 5),
        (["-c", "3"], 3),
        (["-w", "3"], 3),  # ping -w alone: those due before the deadline (0, 1, 2 s)
        (["-w", "1", "-i", "0.2"], 5),
        (["-w", "1", "-i", "0"], 10_000),
        (["-w", "10", "-c", "2"], 10),  # ping: sends until 2 are answered or the deadline
    ],
)
def test_ping_count_like_iputils(argv: list[str], count: int) -> None:
    assert run_ping_echo.ping_count(parse("ping", *argv, "x")) == count


def test_ping_exit_status_like_iputils() -> None:
    """iputils: 1 when nothing came back, or with -w when fewer than -c replies came."""
    some = PingResult("x", 3, (PingReply(1, "x", 1.0), PingReply(2, None, None)))
    none = PingResult("x", 3, (PingReply(1, None, None),))
    assert run_ping_echo.ping_exit(parse("ping", "-c", "3", "x"), some) == 0
    assert run_ping_echo.ping_exit(parse("ping", "-c", "3", "x"), none) == 1
    assert run_ping_echo.ping_exit(parse("ping", "-c", "3", "-w", "5", "x"), some) == 1
    assert run_ping_echo.ping_exit(parse("ping", "-w", "5", "x"), some) == 0


def test_traceroute_wait_takes_max_here_near() -> None:
    """traceroute -w MAX,HERE,NEAR (was: `expected a number` for anything but MAX); HERE
    and NEAR not given are 0, as traceroute's (`-w 2` kept 3,10: a silent hop between
    two that answered was given up on after 10 RTTs where traceroute waits its 2 s)."""
    a = parse("traceroute", "x")
    assert (a.wait, a.here, a.near) == (5.0, 3.0, 10.0)
    b = parse("traceroute", "-w", "2,0,4", "x")
    assert (b.wait, b.here, b.near) == (2.0, 0.0, 4.0)
    c = parse("traceroute", "-w", "1.5", "x")
    assert (c.wait, c.here, c.near) == (1.5, 0.0, 0.0)
    d = parse("traceroute", "-w", "2,3", "x")
    assert (d.wait, d.here, d.near) == (2.0, 3.0, 0.0)


@pytest.mark.parametrize(
    ("argv", "line"),
    [  # traceroute 2.1.2's stderr for each, status 2 both
        (["-q", "abc", "x"], "Cannot handle `-q' option with arg `abc' (argc 2)"),
        (["-n", "-q", "abc", "x"], "Cannot handle `-q' option with arg `abc' (argc 3)"),
        (["-qabc", "x"], "Cannot handle `-q' option with arg `abc' (argc 1)"),
        (["-q", "0", "x"], "no more than 10 probes per hop"),
        (["-q", "11", "x"], "no more than 10 probes per hop"),
        (["-m", "0", "x"], "first hop out of range"),
        (["-m", "256", "x"], "max hops cannot be more than 255"),
        (["-m", "abc", "x"], "Cannot handle `-m' option with arg `abc' (argc 2)"),
        (["-f", "0", "x"], "first hop out of range"),
        (["-f", "256", "x"], "first hop out of range"),
        (["-w", "abc", "x"], "Cannot handle `-w' option with arg `abc' (argc 2)"),
        (["-w", "1,2,3,4", "x"], "Cannot handle `-w' option with arg `1,2,3,4' (argc 2)"),
        (["-w", "-1", "x"], "bad wait specifications `-1,0,0' used"),
        (["-w", "1,-2", "x"], "bad wait specifications `1,-2,0' used"),
        (["-z", "abc", "x"], "Cannot handle `-z' option with arg `abc' (argc 2)"),
        (["-z", "-1", "x"], "bad sendtime `-1' specified"),
    ],
)
def test_traceroute_bad_numbers_in_traceroutes_words(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parse("traceroute", *argv)
    assert e.value.code == 2
    assert capsys.readouterr().err == f"pktlab run traceroute: {line}\n"


def test_sport_is_one_probe_at_a_time_waited_max_as_traceroute() -> None:
    """traceroute 2.1.2's --sport: `sim_probes = 1; here_factor = near_factor = 0`
    whatever -N and -w said (ours sent all 30 probes at once, and gave a silent hop up
    after NEAR x the next one's RTT); -N with -z (traceroute paces its window) was
    refused. --sequential, --mtu and --mda keep their own ways."""
    from packetlab.cli.run_traceroute_checks import check_options

    for argv in (["--sport=40000"], ["--sport", "40000", "-N", "5", "-w", "2,3,10"]):
        args = parse("traceroute", *argv, "10.0.0.1")
        check_options(args)
        assert (args.squeries, args.here, args.near, args.sport) == (1, 0.0, 0.0, 40000)
    args = parse("traceroute", "--sport=40000", "-z", "0.2", "10.0.0.1")
    check_options(args)
    assert (args.squeries, args.pace) == (1, 0.2)
    args = parse("traceroute", "-N", "4", "-z", "50", "10.0.0.1")
    check_options(args)
    assert (args.squeries, args.pace, args.here, args.near) == (4, 0.05, 3.0, 10.0)
    args = parse("traceroute", "--sport=40000", "--sequential", "10.0.0.1")
    check_options(args)
    assert args.squeries is None


def test_ping_identifier_and_sticky_source_as_iputils() -> None:
    """ping -e ID (iputils 20221126: the requests' identifier, 0..65535) and -B (sticky
    source) were refused: `unrecognized arguments: -e`, `-B: not needed ...`."""
    assert parse("ping", "-e", "77", "x").ident == 77
    assert parse("ping", "-e", "0", "x").ident == 0
    assert parse("ping", "x").ident is None and not parse("ping", "x").sticky
    assert parse("ping", "-B", "x").sticky
    for bad in ("65536", "0x10", "-1"):
        with pytest.raises(SystemExit):
            parse("ping", "-e", bad, "x")


def test_ping_adaptive_as_iputils() -> None:
    """ping -A (was `unrecognized arguments: -A`): with -w as many requests as the
    deadline allows, as -i 0 (they go as fast as the replies come)."""
    assert parse("ping", "-A", "x").adaptive and not parse("ping", "x").adaptive
    assert run_ping_echo.ping_count(parse("ping", "-A", "-w", "2", "x")) == 10_000
    assert run_ping_echo.ping_count(parse("ping", "-w", "2", "x")) == 2


def test_native_spellings_of_source_and_pacing() -> None:
    """traceroute -s src_addr and -z sendwait (ms above 10), ping -I address."""
    assert parse("traceroute", "-s", "10.0.0.9", "x").src == "10.0.0.9"
    assert parse("traceroute", "-z", "0.5", "x").pace == 0.5
    assert parse("traceroute", "-z", "50", "x").pace == 0.05


def test_sendwait_of_10_is_milliseconds_as_traceroute_reads_it() -> None:
    """traceroute 2.1.2 takes -z as ms from 10 on (`send_secs >= 10`): `-z 10` was 10 s
    here (a 2-probe trace of 127.0.0.1 took 10.6 s, traceroute's 0.02 s)."""
    assert parse("traceroute", "-z", "10", "x").pace == 0.01
    assert parse("traceroute", "-z", "9.99", "x").pace == 9.99
    assert parse("ping", "-I", "10.0.0.9", "x").src == "10.0.0.9"


def test_ping_accepts_n_and_names_only_named_targets() -> None:
    v4 = ipaddress.IPv4Address("127.0.0.1")
    assert run_ping_echo._ping_names_wanted(parse("ping", "localhost"), v4)
    assert not run_ping_echo._ping_names_wanted(parse("ping", "-n", "localhost"), v4)
    assert not run_ping_echo._ping_names_wanted(parse("ping", "127.0.0.1"), v4)  # numeric: -n
    assert not run_ping_echo._ping_names_wanted(parse("ping", "--json", "localhost"), v4)


def test_module_has_the_cli_interface() -> None:
    assert callable(cli_run.add_arguments) and callable(cli_run.run)


def test_src_must_be_an_address_of_this_host_for_the_in_process_endpoint() -> None:
    from packetlab.cli.run_host import check_local_address

    check_local_address(ipaddress.ip_address("127.0.0.1"))
    with pytest.raises(RunError, match=r"--src 192\.0\.2\.77 is not an address of this host"):
        check_local_address(ipaddress.ip_address("192.0.2.77"))


def test_paris_and_scamper_method_names() -> None:
    from packetlab.cli.run import build_parser

    p = build_parser()
    assert p.parse_args(["traceroute", "-P", "UDP-Paris", "x"]).protocol == "udp-paris"
    assert p.parse_args(["traceroute", "--method", "icmp-paris", "x"]).protocol == "icmp-paris"
    args = p.parse_args(["traceroute", "--paris", "-I", "-n", "x"])
    assert (args.paris, args.protocol, args.numeric) == (True, "icmp", True)


def test_ping_flood_implies_interval_0_unless_given() -> None:
    assert (parse("ping", "x").flood, parse("ping", "x").interval) == (False, 1.0)
    assert (parse("ping", "-f", "x").flood, parse("ping", "-f", "x").interval) == (True, 0.0)
    assert parse("ping", "-f", "-i", "0.5", "x").interval == 0.5
    assert parse("ping", "-i", "0.5", "-f", "x").interval == 0.5
    assert parse("ping", "--interval", "1", "-f", "x").interval == 1.0  # the default's value, given
    assert parse("ping", "-i", "0.5", "-f", "x").interval == 0.5  # in either order
    p = parse("ping", "-O", "-D", "-p", "ab", "x")
    assert (p.outstanding, p.timestamps, p.pattern) == (True, True, "ab")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ping", "-p", "12xyz", "10.0.0.1"], "patterns must be specified as hex digits: xyz"),
        (["ping", "-I", "nosuch0", "10.0.0.1"], "-I nosuch0: no such interface on this host"),
    ],
)
def test_ping_pattern_and_interface_errors(argv: list[str], message: str) -> None:
    err = _fails(parse(*argv))
    assert isinstance(err, RunError) and str(err).startswith(message)


def test_interface_address(tmp_path: Path) -> None:
    """ping -I IFNAME for the in-process endpoint: the interface's address on this host
    (lo always exists); IPv6 from /proc/net/if_inet6, a global address first."""
    assert run_host.interface_address("lo", 4) == ipaddress.IPv4Address("127.0.0.1")
    proc = tmp_path / "if_inet6"
    proc.write_text(
        "fe800000000000000000000000000001 02 40 20 80     lo\n"
        "fd000077000100000000000000000001 02 40 00 80     lo\n"
    )
    assert run_host.interface_address("lo", 6, str(proc)) == ipaddress.IPv6Address("fd00:77:1::1")
    with pytest.raises(RunError, match="-I lo: the interface has no IPv6 address"):
        run_host.interface_address("lo", 6, str(tmp_path / "none"))


def test_traceroute_packetlen_u_t_f_mtu() -> None:
    a = parse("traceroute", "10.0.0.1")
    assert (a.packetlen, a.tos, a.dont_fragment, a.mtu) == (None, None, False, False)
    b = parse("traceroute", "-U", "-t", "0x10", "-F", "--mtu", "10.0.0.1", "1400")
    assert (b.protocol, b.packetlen, b.tos, b.dont_fragment, b.mtu) == (
        "udp-fixed", "1400", "0x10", True, True,
    )  # fmt: skip
    assert traceroute_shape(b) == (1400, 16)
    assert default_port("udp-fixed") == 53  # traceroute -U's port
    assert (default_port("udp"), default_port("tcp")) == (33434, 80)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traceroute", "10.0.0.1", "70000"], "too big packetlen 70000 specified"),
        (["traceroute", "10.0.0.1", "abc"], "bad packetlen 'abc': expected a number"),
        (["traceroute", "-t", "256", "10.0.0.1"], "-t 256: the TOS byte is 0..255"),
        (["traceroute", "-t", "x", "10.0.0.1"], "-t x: expected a TOS byte"),
        (["traceroute", "--mda", "--mtu", "10.0.0.1"], "--mda sends its own probes"),
    ],
)
def test_traceroute_shape_errors_are_one_line(argv: list[str], message: str) -> None:
    err = _fails(parse(*argv))
    assert isinstance(err, RunError) and str(err).startswith(message)


def test_route_mtus_reads_the_interface_of_the_route(tmp_path: Path) -> None:
    """--mtu's hints for the in-process endpoint: the route's interface MTU (lo's, here,
    from a fake /sys/class/net) and the kernel's path MTU."""
    (tmp_path / "lo").mkdir()
    (tmp_path / "lo" / "mtu").write_text("1234\n")
    got = run_host.route_mtus(ipaddress.ip_address("127.0.0.1"), str(tmp_path))
    assert 1234 in got and list(got) == sorted(got, reverse=True)


def test_ping_interface_name_with_a_remote_endpoint_names_its_addresses() -> None:
    """-I IFNAME with --listen: the endpoint exports addresses, not interface names, so
    the run fails with one line that lists them (before anything is sent)."""
    from test_traceroute_fakes import EP4, TG4, RawRig

    from packetlab.cli.report_ping import PingReport
    from packetlab.controller.stop import StopSignal
    from packetlab.measure.traceroute import MeasureError

    rig = RawRig([TG4])
    args = parse("ping", "-I", "eth0", "--listen", "127.0.0.1:1", TG4)
    report = PingReport(rig.clock, False, TG4, name=None, count=1, size=56)
    echo = run_ping_echo.experiment(
        args, ipaddress.ip_address(TG4), None, "unknown", report, StopSignal(), ifname="eth0"
    )
    with pytest.raises(MeasureError, match=f"-I eth0: the endpoint exports its addresses.*{EP4}"):
        rig.run(Deferred.fromCoroutine(echo(rig.session)))  # type: ignore[arg-type]
    assert rig.endpoint.raw_sends == []


def test_the_listen_example_pairs_a_tls_controller_with_a_tls_endpoint() -> None:
    """`pktlab run --help`'s --listen example: the controller is TLS by default, so the
    endpoint beside it must be too (was `--insecure-plaintext`: the link never came up,
    and the controller blamed the chains after the endpoint's 10 s wait)."""
    example = cli_run.EPILOG.split("--listen 127.0.0.1:20556", 1)[1].split("\n\n", 1)[0]
    endpoint = example.split("twistd", 1)[1].split("(an endpoint with", 1)[0]
    assert "--insecure-plaintext" not in endpoint and "-c ~/.pktlab/endpt.conf" in endpoint


def test_pings_help_shows_ping_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`pktlab run ping --help` showed traceroute's examples (the shared epilog)."""
    from packetlab.cli import main

    with pytest.raises(SystemExit):
        main(["run", "ping", "--help"])
    examples = capsys.readouterr().out.split("examples:", 1)[1]
    assert "pktlab run ping --listen" in examples and "traceroute" not in examples


@pytest.mark.parametrize(
    ("what", "shown", "hidden"),
    [
        ("traceroute", ("-T -O ecn,info", " -g ", " -UL ", " -A "), "pktlab run ping"),
        ("ping", ("-T tsandaddr", "10.77.2.2 10.77.3.2"), "pktlab run traceroute"),
    ],
)
def test_help_examples_are_the_commands_own_and_parse(
    what: str, shown: tuple[str, ...], hidden: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab run traceroute --help` showed a ping example and none of -g, -O, -A, -UL/-D;
    ping's none of -T or HOST... TARGET (session 12 fresh-eyes pass). Each example
    parses as written."""
    from packetlab.cli import main
    from packetlab.cli import parse as cli_parse

    with pytest.raises(SystemExit):
        main(["run", what, "--help"])
    examples = capsys.readouterr().out.split("examples:", 1)[1].split("\n\n", 1)[0]
    assert hidden not in examples
    for word in shown:
        assert word in examples, word
    for line in examples.splitlines():
        command = line.split("#", 1)[0].split()
        if "pktlab" in command:
            args = cli_parse(command[command.index("pktlab") + 1 :])
            assert args.measurement == what


@pytest.mark.parametrize("name", list(cli_run.MEASUREMENTS))
def test_the_link_group_is_wrapped(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The `link:` group's description kept as written by the raw formatter: one line
    of 133 characters (was)."""
    from packetlab.cli import main

    with pytest.raises(SystemExit):
        main(["run", name, "--help"])
    out = capsys.readouterr().out
    link = out.split("\nlink:\n", 1)[1].split("\n\n", 1)[0]
    assert max(len(line) for line in link.splitlines()) <= 100, link


def test_sendgaps_count_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    from packetlab.cli import main

    with pytest.raises(SystemExit):
        main(["run", "sendgap", "--help"])
    assert "datagrams per train [100]" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "argv", [["run", name] for name in cli_run.MEASUREMENTS] + [["wrap"]], ids=str
)
def test_help_fits_a_terminal(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every line of `--help` within 100 columns: the descriptions kept as written by the
    raw formatter were single lines of up to 537 characters (traceroute's)."""
    from packetlab.cli import main

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, out


def test_operands_after_options(capsys: pytest.CaptureFixture[str]) -> None:
    """`pktlab run ping HOST -c 1 TARGET` and `pktlab run traceroute TARGET -n PACKETLEN`:
    operands after an option, as ping's and traceroute's getopt permute them (both were
    `unrecognized arguments`, found by the session 12 fresh-eyes pass)."""
    from packetlab.cli import parse as cli_parse
    from packetlab.cli.run_ping_echo import ping_hosts

    args = cli_parse(["run", "ping", "10.0.0.2", "-c", "1", "10.0.0.3", "-R", "10.0.0.1"])
    assert (args.count, args.target, args.prespec) == (1, "10.0.0.2", ["10.0.0.3", "10.0.0.1"])
    args.record_route = False
    assert (ping_hosts(args), args.target) == (["10.0.0.2", "10.0.0.3"], "10.0.0.1")
    args = cli_parse(["run", "traceroute", "10.0.0.1", "-n", "100"])
    assert (args.target, args.packetlen, args.numeric) == ("10.0.0.1", "100", True)
    with pytest.raises(SystemExit):  # a third operand: traceroute's `Extra arg` (session 25)
        cli_parse(["run", "traceroute", "10.0.0.1", "-n", "100", "7"])
    assert capsys.readouterr().err.endswith(": Extra arg `7' (position 3, argc 4)\n")
    with pytest.raises(SystemExit):  # an unknown option among them is still named
        cli_parse(["run", "ping", "10.0.0.2", "--bogus", "10.0.0.1"])


def test_module_refusal_names_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    """traceroute -M raw and tcpconn: the refusal lists the methods, -UL and -D too (were
    left out). (-M udplite was refused as well until session 25: now it is -UL.)"""
    for name in ("raw", "tcpconn"):
        with pytest.raises(SystemExit):
            parse("traceroute", "-M", name, "10.0.0.1")
        assert "methods are -P udp|icmp|tcp|tcp-ack|udp-paris|icmp-paris, -UL, -D" in (
            capsys.readouterr().err
        )


@pytest.mark.parametrize(
    ("name", "method"),
    [("default", "udp"), ("udp", "udp-fixed"), ("UDP", "udp-fixed"), ("icmp", "icmp"),
     ("tcp", "tcp"), ("udplite", "udplite"), ("dccp", "dccp")],
)  # fmt: skip
def test_module_names_are_traceroutes_methods(name: str, method: str) -> None:
    """traceroute -M NAME (any case) is the method of its module NAME: `-M udp` is -U."""
    assert parse("traceroute", "-M", name, "10.0.0.1").protocol == method


@pytest.mark.parametrize(
    ("words", "field", "value"),
    [
        (["--max-hops=5"], "max_ttl", 5), (["--source=10.0.0.9"], "src", "10.0.0.9"),
        (["--icmp"], "protocol", "icmp"), (["--tcp"], "protocol", "tcp"),
        (["--udp"], "protocol", "udp-fixed"), (["--first=2"], "first_ttl", 2),
        (["--gateway=10.0.0.7"], "gateways", ["10.0.0.7"]),
        (["--interface=lo"], "interface", "lo"), (["--flowlabel=5"], "flow_label", 5),
        (["--sim-queries=2"], "squeries", 2), (["--sendwait=50"], "pace", 0.05),
        (["--dont-fragment"], "dont_fragment", True), (["--extensions"], "extensions", True),
        (["--options=info"], "module_options", ["info"]),
    ],
)  # fmt: skip
def test_traceroutes_long_option_names(words: list[str], field: str, value: object) -> None:
    """traceroute 2.1.2's long names (its --help): --max-hops, --source, --icmp, --tcp and
    --udp were `unrecognized arguments`; the rest are ours or prefixes of ours."""
    assert getattr(parse("traceroute", *words, "10.0.0.1"), field) == value


@pytest.mark.parametrize(
    ("words", "line"),
    [  # traceroute 2.1.2's stderr for each, status 2 both
        (["-n"], 'Specify "host" missing argument.'),
        (["-q", "1", "-m", "2", "-n"], 'Specify "host" missing argument.'),
        (["-q"], "Option `-q' (argc 1) requires an argument: `-q nqueries'"),
        (["-n", "-q"], "Option `-q' (argc 2) requires an argument: `-q nqueries'"),
        (["-nq"], "Option `-q' (argc 1) requires an argument: `-q nqueries'"),
        (["--sport"], "Option `--sport' (argc 1) requires an argument: `--sport=num'"),
        (["--wait"], "Option `--wait' (argc 1) requires an argument: `--wait=MAX,HERE,NEAR'"),
        (["--foo=3", "1.2.3.4"], "Bad option `--foo=3' (with arg `3') (argc 1)"),
        (["-n", "-x", "1.2.3.4"], "Bad option `-x' (argc 2)"),
        (["-nx", "1.2.3.4"], "Bad option `-x' (argc 1)"),
        (["1.2.3.4", "60", "7"], "Extra arg `7' (position 3, argc 3)"),
        (["-n", "1.2.3.4", "60", "7"], "Extra arg `7' (position 3, argc 4)"),
        (["--", "1.2.3.4", "60", "7"], "Extra arg `7' (position 3, argc 4)"),
        (["1.2.3.4", "-5"], "Bad option `-5' (argc 2)"),
    ],
)
def test_traceroute_command_line_errors_in_its_words(
    words: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parse("traceroute", *words)
    assert e.value.code == 2
    assert capsys.readouterr().err == f"pktlab run traceroute: {line}\n"


@pytest.mark.parametrize(
    ("words", "argc"),
    [(["a..b"], 1), (["-n", "-6", "-q", "1", "a..b"], 5), (["-n", "--", "a..b"], 3),
     (["-q", "1", "-n", "a..b", "60"], 4)],
)  # fmt: skip
def test_a_host_not_resolved_has_traceroutes_second_line(words: list[str], argc: int) -> None:
    """traceroute's `Cannot handle "host" cmdline arg `a..b' on position 1 (argc N)`
    after the resolver's line (left out until session 25); N the host's word's place."""
    from packetlab.cli.run_traceroute_words import host_not_handled

    args = parse("traceroute", *words)
    said = host_not_handled(RuntimeError("a..b: Name or service not known"), "a..b",
                            args._host_argc)  # fmt: skip
    assert said.splitlines() == [
        "a..b: Name or service not known",
        f'Cannot handle "host" cmdline arg `a..b\' on position 1 (argc {argc})',
    ]


def test_an_unknown_module_in_traceroutes_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse("traceroute", "-M", "foo", "10.0.0.1")
    assert e.value.code == 2
    assert capsys.readouterr().err.endswith("Unknown traceroute module foo\n")


def test_ping_ip_options_for_warts() -> None:
    """ping --warts with -R/-T: scamper's flag name and the request's option bytes."""
    from packetlab.cli.run_ping_echo import ping_ip_options

    assert ping_ip_options(parse("ping", "10.0.0.1"), "10.0.0.1") == (None, b"")
    option, raw = ping_ip_options(parse("ping", "-R", "10.0.0.1"), "10.0.0.1")
    assert (option, len(raw)) == ("v4rr", 40)
    option, raw = ping_ip_options(parse("ping", "-T", "tsandaddr", "10.0.0.1"), "10.0.0.1")
    assert (option, len(raw)) == ("tsandaddr", 36)
    assert ping_ip_options(parse("ping", "-R", "::1"), "::1") == (None, b"")  # (ignored)
    args = parse("ping", "-T", "tsprespec", "10.0.0.2", "10.0.0.1")
    args.prespec_addrs = ["10.0.0.2"]
    option, raw = ping_ip_options(args, "10.0.0.1")
    assert (option, len(raw)) == ("tsprespec", 12)  # (session 12: None, no warts field)
    args = parse("ping", "10.0.0.2", "10.0.0.1")
    args.route_addrs = ["10.0.0.2"]
    option, raw = ping_ip_options(args, "10.0.0.1")
    assert option is None and len(raw) == 8  # NOP + LSRR (3 + one address)


def test_source_routed_ping_without_replies_says_why() -> None:
    """ping HOST... TARGET on loopback: 100 % loss with no word why (session 12); now one
    line naming the reason (Linux drops a source-routed packet for a local address), or
    what every host must accept; nothing when a reply or an error came, or no route."""
    from packetlab.cli.run_ping_echo import source_route_hint
    from packetlab.measure.records_ping import PingError, PingReply, PingResult

    args = parse("ping", "127.0.0.1", "127.0.0.1")
    args.route_addrs = ["127.0.0.1"]
    lost = PingResult(dst="127.0.0.1", sent=2, replies=(), src="127.0.0.1")
    hint = source_route_hint(args, lost)
    assert hint is not None and "drops a source-routed packet for a local address" in hint
    args.route_addrs = ["10.77.2.2"]
    far = PingResult(dst="10.77.3.2", sent=2, replies=(), src="10.77.1.1")
    assert "accept_source_route" in (source_route_hint(args, far) or "")
    args.ttl = 1  # (-t 1: a router's error quotes a host and is not shown: no hint)
    assert source_route_hint(args, far) is None
    args.ttl = 64
    reply = PingReply(seq=1, addr="10.77.3.2", rtt_us=10.0, ttl=62, size=64)
    assert source_route_hint(args, PingResult("10.77.3.2", 2, (reply,), "10.77.1.1")) is None
    err = PingError(1, "10.77.1.2", "time-exceeded", 11, 0)
    answered = PingResult("10.77.3.2", 2, (), "10.77.1.1", errors=(err,))
    assert source_route_hint(args, answered) is None
    args.route_addrs = []
    assert source_route_hint(args, far) is None


def test_traceroute_w_0_is_taken_as_traceroutes() -> None:
    """traceroute 2.1.2 takes `-w 0` (no wait: what its kernel holds after a batch of
    sends); ours refused it, exit 2 (`must be 0.001..60 s`; session 31, odds31)."""
    args = parse("traceroute", "-w", "0", "x")
    assert (args.wait, args.here, args.near) == (0.0, 0.0, 0.0)
    assert parse("traceroute", "-w", "0,3,10", "x").wait == 0.0
