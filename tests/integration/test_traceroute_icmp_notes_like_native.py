"""Session 25 (trace25): every ICMP error a router may answer a probe with, as Butskoy
traceroute 2.1.2 shows it (root): `!S`, `!V`, `!C`, `!<num>`, `!F-0` and the errors
Linux drops before traceroute reads them (`*`), which no route of Linux's gives (and
this host has no iptables REJECT): r2 blackholes 10.99.0.0/24 and fd00:99::/64 and
`icmp_responder.py` in its namespace answers each probe for them with one type and code.
Each line run by both tools in `ep`, stdout compared with the RTTs masked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helper_script import helper_script
from test_ip_options_like_native import captured
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
TARGET = {4: "10.99.0.1", 6: "fd00:99::1"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"trace25{os.getpid() % 10000}-", home=False)


def notes_testbed(make: Callable[..., Testbed]) -> Testbed:
    """A 2-router chain; r1 sends 10.99.0.0/24 and fd00:99::/64 to r2, which drops them
    (blackhole routes: its kernel says nothing, the responder speaks for it)."""
    tb = make(hops=2)
    tb.run("r1", ["ip", "route", "add", "10.99.0.0/24", "via", "10.77.2.2"])
    tb.run("r1", ["ip", "-6", "route", "add", "fd00:99::/64", "via", "fd00:77:2::2"])
    tb.run("r2", ["ip", "route", "add", "blackhole", "10.99.0.0/24"])
    tb.run("r2", ["ip", "-6", "route", "add", "blackhole", "fd00:99::/64"])
    return tb


def responder(
    tb: Testbed, version: int, icmp_type: int, code: int, info: int, forged: str = ""
) -> AbstractContextManager[object]:
    prefix = "10.99.0.0/24" if version == 4 else "fd00:99::/64"
    argv = [str(HERE / "icmp_responder.py"), str(version), prefix, str(icmp_type), str(code)]
    argv += ["60", str(info), *([forged] if forged else [])]
    return helper_script(argv, tb.netns_name("r2"))


CASES: list[
    tuple[int, int, int, int, list[str], str]
] = [  # (version, type, code, info, args, what traceroute 2.1.2 prints at hop 2)
    (4, 3, 5, 0, [], "10.77.2.2  R ms !S"),
    (4, 3, 8, 0, [], "10.77.2.2  R ms !N"),  # ours: !<8>
    (4, 3, 14, 0, ["-I"], "10.77.2.2  R ms !V"),
    (4, 3, 15, 0, ["-T"], "10.77.2.2  R ms !C"),
    (4, 3, 16, 0, ["-I"], "*"),  # ours: !<16>
    (4, 11, 1, 0, [], "*"),  # ours: !<11-1>
    (4, 3, 4, 1400, [], "*"),  # no DF: the UDP socket takes no error; ours: !F-1400
    (4, 3, 4, 1400, ["-U"], "*"),
    (4, 3, 4, 1400, ["-F"], "10.77.2.2  R ms !F-1400"),
    (4, 3, 4, 0, ["-I"], "10.77.2.2  R ms !F-0"),  # ours: !F
    (6, 1, 2, 0, [], "fd00:77:2::2  R ms !H"),  # ours: !S
    (6, 1, 5, 0, ["-I"], "fd00:77:2::2  R ms !<5>"),  # ours: !X
    (6, 1, 6, 0, [], "fd00:77:2::2  R ms !<6>"),  # ours: !X
    (6, 2, 0, 0, [], "fd00:77:2::2  R ms !F-0"),  # ours: !F
    (6, 3, 1, 0, [], "fd00:77:2::2  R ms !<3-1>"),
]


def test_each_icmp_error_as_traceroute_shows_it(testbed_factory: Callable[..., Testbed]) -> None:
    _side_by_side(notes_testbed(testbed_factory), CASES)


# Session 25 (icmp25b): an error type no one assigned. IPv6 (below 128): Linux's
# icmpv6_rcv hands it to the socket as an error, traceroute prints its type and code
# and stops (ours printed `*` and went on); IPv4: icmp_rcv drops it (`*` in both).
UNASSIGNED: list[tuple[int, int, int, int, list[str], str]] = [
    (6, 100, 0, 0, [], "fd00:77:2::2  R ms !<100-0>"),
    (6, 127, 3, 0, ["-I"], "fd00:77:2::2  R ms !<127-3>"),
    (6, 5, 1, 0, ["-T"], "fd00:77:2::2  R ms !<5-1>"),
    (4, 100, 0, 0, [], "*"),
    (4, 44, 1, 0, ["-I"], "*"),
]


def test_unassigned_error_types_as_traceroute_shows_them(
    testbed_factory: Callable[..., Testbed],
) -> None:
    _side_by_side(notes_testbed(testbed_factory), UNASSIGNED)


@pytest.mark.parametrize(("version", "said"), [(4, 300), (6, 1000)])
@pytest.mark.parametrize("queries", ["1", "3"])
def test_mtu_discovery_and_a_router_mtu_below_linuxs_least_as_traceroute(
    testbed_factory: Callable[..., Testbed], version: int, said: int, queries: str
) -> None:
    """--mtu, r2 answering every probe with "fragmentation needed" naming 300 / "packet
    too big" naming 1000 (below Linux's 552 / 1280): traceroute sends one probe of the
    size named and prints `!F-300` alone (its note overwrites the `F=300`), each probe
    of the hop the same; ours went on down the plateaus to `F=68 !F-300` (IPv4) and
    sent no 1000 byte probe (IPv6; session 25 had it that Linux ignores the 1000). The
    lines and the probes' lengths on the wire compared (session 26, icmp26); each run
    after the route cache is flushed, as the run before it leaves a path MTU there."""
    tb = notes_testbed(testbed_factory)
    ns = tb.netns_name("ep")
    argv = ["-n", "-q", queries, "-w", "1", "-m", "3", "--mtu", TARGET[version]]
    expr = "udp and dst net " + ("10.99.0.0/24" if version == 4 else "fd00:99::/64")
    count = 2 * int(queries) + 1  # (hop 1's, hop 2's first at 1500, the rest at `said`)
    runs, wire = {}, {}
    with responder(tb, version, 3 if version == 4 else 2, 4 if version == 4 else 0, said):
        for name, tool in (("theirs", native), ("ours", pktlab_run)):
            tb.run("ep", ["ip", f"-{version}", "route", "flush", "cache"])
            with captured(ns, "to-r1", expr, count) as packets:
                runs[name] = tool("traceroute", *argv, netns=ns)
            wire[name] = [
                int.from_bytes(p[2:4], "big")
                if version == 4
                else 40 + int.from_bytes(p[4:6], "big")
                for p in packets
            ]
    hop2 = masked(runs["theirs"].stdout)[2]
    assert hop2.endswith(f"R ms !F-{said}" * 1 + f"  R ms !F-{said}" * (int(queries) - 1)), hop2
    assert wire["theirs"] == [1500] * (int(queries) + 1) + [said] * int(queries)
    assert (masked(runs["ours"].stdout), wire["ours"]) == (
        masked(runs["theirs"].stdout),
        wire["theirs"],
    )


@pytest.mark.skipif(shutil.which("sc_warts2json") is None, reason="no scamper tools")
def test_an_unassigned_icmpv6_error_in_warts_and_json_as_scamper_reads_them(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    """Session 26 (icmp26): `!<100-0>` in --warts is a hop with ICMP type 100, code 0 in
    sc_warts2json (session 25 wrote neither), the trace's stop reason ICMP, data 100
    (`icmp type 100` in sc_wartsdump; it was HOPLIMIT, -m 3 not reached), and the
    --json summary's `stop_reason` ICMP too. (scamper itself drops such a reply: its
    own trace goes on to the hop limit with nothing at hop 2.)"""
    tb = notes_testbed(testbed_factory)
    ns, warts = tb.netns_name("ep"), tmp_path / "t.warts"
    argv = ["-n", "-q", "1", "-w", "1", "-m", "3", TARGET[6]]
    with responder(tb, 6, 100, 0, 0):
        ours = pktlab_run("traceroute", "--warts", str(warts), *argv, netns=ns)
        summary = json.loads(
            pktlab_run("traceroute", "--json", *argv, netns=ns).stdout.splitlines()[-1]
        )
    assert ours.returncode == 0 and "!<100-0>" in ours.stdout, ours.stderr
    out = subprocess.run(["sc_warts2json", str(warts)], capture_output=True, text=True, check=True)
    (trace,) = [t for t in map(json.loads, out.stdout.splitlines()) if t["type"] == "trace"]
    assert (trace["stop_reason"], trace["stop_data"]) == ("ICMP", 100)
    hop2 = [h for h in trace["hops"] if h["probe_ttl"] == 2]
    assert [(h["addr"], h["icmp_type"], h["icmp_code"]) for h in hop2] == [("fd00:77:2::2", 100, 0)]
    assert summary["stop_reason"] == "ICMP"


def _side_by_side(tb: Testbed, cases: list[tuple[int, int, int, int, list[str], str]]) -> None:
    ns, wrong = tb.netns_name("ep"), []
    for version, icmp_type, code, info, args, hop2 in cases:
        argv = ["-n", "-q", "1", "-w", "1", "-m", "3", *args, TARGET[version]]
        with responder(tb, version, icmp_type, code, info):
            theirs = native("traceroute", *argv, netns=ns)
            ours = pktlab_run("traceroute", *argv, netns=ns)
        assert ours.returncode == theirs.returncode == 0, (argv, ours.stderr)
        assert masked(theirs.stdout)[2] == f" 2  {hop2}", theirs.stdout  # (traceroute as read)
        if masked(ours.stdout) != masked(theirs.stdout):
            wrong.append((icmp_type, code, info, argv, ours.stdout))
    assert wrong == []


@pytest.mark.parametrize(
    ("icmp_type", "code", "args"), [(11, 0, []), (11, 0, ["-I"]), (3, 1, []), (11, 0, ["-T"])]
)
def test_an_error_from_the_target_itself_as_traceroute_shows_it(
    testbed_factory: Callable[..., Testbed], icmp_type: int, code: int, args: list[str]
) -> None:
    """Session 25 (icmp25b): r2 answers every probe with an error sent from the target's
    own address (10.99.0.1), as a target would that forwards its own address's packets."""
    tb = notes_testbed(testbed_factory)
    ns = tb.netns_name("ep")
    argv = ["-n", "-q", "1", "-w", "1", "-m", "4", *args, TARGET[4]]
    with responder(tb, 4, icmp_type, code, 0, forged=TARGET[4]):
        theirs = native("traceroute", *argv, netns=ns)
        ours = pktlab_run("traceroute", *argv, netns=ns)
    assert "10.99.0.1" in theirs.stdout, theirs.stdout
    assert (ours.returncode, masked(ours.stdout)) == (theirs.returncode, masked(theirs.stdout))
