"""``pktlab run alias ADDR...``: MIDAR-style alias resolution (packetlab.measure.alias)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import time
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli.run import RunError, check_ranges
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run alias 10.77.3.10 10.77.3.11 10.77.3.12     # in-process endpoint (root)
  pktlab run alias --rounds 30 --json 192.0.2.1 192.0.2.9 198.51.100.7
  pktlab run alias --method udp 10.77.3.10 10.77.3.11   # UDP to a closed port only
  pktlab run alias --method tcp-syn-sport 10.77.3.10 10.77.3.11   # SYNs (ACKs dropped)
  pktlab run alias -f candidates.txt --json             # a list: blanks, lines, # comments
  pktlab run alias --prefixscan 10.77.3.8/30 10.77.3.5  # an alias of .5 in .8/30 (not .8)
  pktlab run alias -m prefixscan -x 10.77.3.10 10.77.3.5 10.77.3.8/30   # scamper's words
  pktlab run alias --method auto,indirect 10.77.2.2@10.77.3.2:2 10.77.2.9
      # 10.77.2.2 also probed indirectly: echo requests to 10.77.3.2 with TTL 2, whose
      # time exceeded 10.77.2.2 sends (MIDAR's indirect probing)
  pktlab run alias --listen 10.77.1.1:20556 --endpoints 2 10.77.3.10 10.77.3.11
      # then two endpoints (raw sockets) connect: their clocks are synchronised and
      # their probes interleaved on one time axis

Every candidate gets a probe in turn, one global slot every --spacing ms, dealt
round-robin over (address, endpoint). Probe methods (--method, scamper dealias's names):
icmp-echo (the echo reply's IP-ID), tcp-ack (a bare ACK to port 33435: the RST's),
udp (to port 33435: the ICMP port unreachable's); auto (the default) probes with all
three in estimation and keeps per address the method whose counter is usable, as MIDAR.
scamper's variants, not in auto: udp-dport (the destination port one up per round),
tcp-ack-sport and tcp-syn-sport (a new source port per round; a SYN's RST or SYN-ACK).
indirect (MIDAR's, scamper's probe definition with -t TTL): an address given as
ADDR@DST:TTL is probed with echo requests to DST whose TTL expires at ADDR, and the
time exceeded ADDR sends gives the IP-ID; not in auto (it needs DST and TTL): add it,
--method auto,indirect or --method indirect; --indirect-method udp|tcp-ack probes
through ADDR with UDP or TCP ACKs instead (one flow: fixed ports, as scamper's).
MIDAR's four stages: estimation (--rounds probes per address and method: its counter's
velocity), discovery (neighbours in velocity, in windows of
--window addresses), elimination and corroboration (fresh probes of the candidate pairs,
then of every pair inside each alias set). Pairs whose merged IP-ID series pass the
monotonic bounds test in every stage are aliases; --single-stage tests every pair on one
probing run. A UDP probe's port unreachable from another address of the router also
makes the two aliases (Mercator's common source address); one address alone (with a
UDP method) is that test only, scamper's dealias -m mercator: aliases or none. With two
addresses the last line is scamper ally's verdict: aliases, not aliases, or unknown (no
usable counter); with --prefixscan B/LEN, scamper prefixscan's: aliases or none.
See docs/alias.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", metavar="ADDR[@DST:TTL]", nargs="*",
                   help="candidate IPv4 addresses; with @DST:TTL (for --method indirect): "
                   "probed through DST with TTL, which expires at ADDR")  # fmt: skip
    p.add_argument("-f", "--file", metavar="FILE",
                   help="also the addresses in FILE (scamper's -f listfile): ADDR[@DST:TTL] "
                   "separated by blanks, one or more a line (all one candidate set), # "
                   "comments; - for stdin")  # fmt: skip
    p.add_argument("--method", default="auto", metavar="M[,M...]",
                   help="probe methods: auto (icmp-echo, tcp-ack and udp, the best kept per "
                   "address), icmp-echo, tcp-ack, udp, indirect, scamper's udp-dport, "
                   "tcp-ack-sport, tcp-syn-sport, or a comma-separated list [auto]")  # fmt: skip
    p.add_argument("--prefixscan", metavar="B/LEN",
                   help="scamper's prefixscan: look for an alias of the one ADDR among the "
                   "addresses of B's prefix (LEN 24..31; not B itself, B's router being "
                   "ADDR's neighbour)")  # fmt: skip
    p.add_argument("-x", "--exclude", action="append", default=[], metavar="ADDR",
                   help="with --prefixscan: an address of the prefix not to test (scamper's "
                   "prefixscan -x; repeatable)")  # fmt: skip
    p.add_argument("--indirect-method", default="icmp-echo", metavar="P",
                   choices=("icmp-echo", "udp", "tcp-ack"),
                   help="the indirect method's probes: icmp-echo, udp or tcp-ack (scamper's "
                   "-P P -i DST -t TTL: one flow, fixed ports) [icmp-echo]")  # fmt: skip
    # (-q, -W, -w: scamper dealias radargun's attempts, wait-probe and wait-timeout)
    p.add_argument("-q", "--rounds", type=int, default=10, metavar="N",
                   help="probes per address (and method) [10]")  # fmt: skip
    p.add_argument("-W", "--spacing", type=float, default=2.0, metavar="MS",
                   help="ms between consecutive probes (all endpoints) [2]")  # fmt: skip
    p.add_argument("-r", "--round-wait", type=float, default=0.0, metavar="MS",
                   help="ms from one round's start to the next at least (scamper radargun's "
                   "-r: rounds spread out, for slow counters) [0: back to back]")  # fmt: skip
    p.add_argument("-w", "--wait", type=float, default=1.0, metavar="S",
                   help="reply wait after a run's last probe [1 s]")  # fmt: skip
    p.add_argument("--shuffle", action="store_true",
                   help="probe the addresses (and methods) in a new random order every round "
                   "(scamper radargun's -O shuffle) [in the order given]")  # fmt: skip
    p.add_argument("-m", dest="scamper_method", metavar="METHOD",
                   help="scamper dealias's -m: radargun or ally (= --single-stage), mercator "
                   "(one ADDR), prefixscan (A B/LEN: --prefixscan B/LEN A) [MIDAR's]")  # fmt: skip
    p.add_argument("-O", dest="scamper_options", action="append", default=[], metavar="OPT",
                   help="scamper dealias's -O: shuffle (= --shuffle); inseq and nobs are "
                   "refused (ally's tests, which ours replaces)")  # fmt: skip
    p.add_argument("--samples", action="store_true",
                   help="also print every IP-ID sample, with its MIDAR stage")  # fmt: skip
    p.add_argument("--single-stage", action="store_true",
                   help="one probing run, every pair tested (no MIDAR stages)")  # fmt: skip
    p.add_argument("--discovery-rounds", type=int, default=10, metavar="N",
                   help="probes per address in each discovery window [10]")  # fmt: skip
    p.add_argument("--elimination-rounds", type=int, default=20, metavar="N",
                   help="probes per address in elimination [20]")  # fmt: skip
    p.add_argument("--corroboration-rounds", type=int, default=20, metavar="N",
                   help="probes per address in corroboration [20]")  # fmt: skip
    p.add_argument("--window", type=int, default=50, metavar="N",
                   help="discovery: addresses compared together, by velocity [50]")  # fmt: skip
    p.add_argument("--velocity-ratio", type=float, default=3.0, metavar="R",
                   help="discovery: pair only velocities within a factor R [3]")  # fmt: skip
    p.add_argument("--warts", metavar="FILE",
                   help="also write every probing run as scamper's dealias (radargun) records "
                   "to FILE, for sc_warts2json, sc_warts2text, sc_wartsdump")  # fmt: skip
    p.add_argument("-U", "--userid", type=int, default=0, metavar="N",
                   help="a number kept in --warts' records (scamper's -U userid) [0]")  # fmt: skip
    pcapout.add_option(p)


def _ipv4(text: str, what: str) -> str:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise RunError(f"{what!r} is not an IP address") from None
    if a.version != 4:
        raise RunError(f"{what}: IPv6 has no IP-ID to compare; IPv4 only")
    return str(a)


MAX_TARGETS = 100_000  # MIDAR's scale is not the aim (docs/alias.md); bounds the memory
MAX_LINE = 65_536  # characters in a line of a list file (4,000 addresses)


def _listed(path: str) -> list[tuple[str, str]]:
    """(token, "FILE:LINE: ") of every address in a list file (or stdin)."""
    import contextlib
    import sys

    out: list[tuple[str, str]] = []
    name = "stdin" if path == "-" else path
    try:
        with (
            contextlib.nullcontext(sys.stdin)
            if path == "-"
            else open(path, encoding="utf-8-sig", errors="replace")
        ) as lines:
            # (a line at a time, each at most MAX_LINE: a file with no newline is not
            # read whole into memory)
            for n, line in enumerate(iter(lambda: lines.readline(MAX_LINE + 1), ""), 1):
                if len(line) > MAX_LINE:
                    raise RunError(f"{name}:{n}: a line longer than {MAX_LINE} characters")
                for token in line.partition("#")[0].split():
                    out.append((token, f"{name}:{n}: "))
                    if len(out) > MAX_TARGETS:
                        raise RunError(f"{name}:{n}: more than {MAX_TARGETS} addresses")
    except OSError as e:
        # (scamper dealias's -f is its fudge, a number: say so where it was meant)
        fudge = " (scamper's -f fudge is not offered: --file lists addresses)"
        hint = fudge if path.isdigit() and isinstance(e, FileNotFoundError) else ""
        raise RunError(f"--file {path}: cannot read it: {e.strerror or e}{hint}") from None
    if not out:
        raise RunError(f"--file {path}: no addresses in it")
    return out


def _targets(
    args: argparse.Namespace, least: int = 2
) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """The addresses (the command line's, then --file's), each once, and per ADDR@DST:TTL
    its destination and TTL (indirect probing). A token that is no address is an error
    naming it (and its file line), as is an IPv6 address (no IP-ID to compare)."""
    given = [(t, "") for t in args.targets]
    if getattr(args, "file", None):
        given += _listed(args.file)
    out: dict[str, None] = {}  # (ordered; a repeated address or pair is probed once)
    via: dict[str, tuple[str, int]] = {}
    for t, where in given:
        addr, at, rest = t.partition("@")
        try:
            a = _ipv4(addr, t if not at else addr)
            if at:
                dst, colon, ttl = rest.rpartition(":")
                if not colon or not ttl.isdigit() or not 1 <= int(ttl) <= 255:
                    raise RunError(f"{t}: expected ADDR@DST:TTL, the TTL 1..255")
                try:
                    beyond = (_ipv4(dst, dst), int(ttl))
                except RunError as e:
                    raise RunError(f"{t}: {e}") from None
                if via.setdefault(a, beyond) != beyond:
                    raise RunError(f"{a} given twice, with different DST:TTL")
        except RunError as e:
            raise RunError(f"{where}{e}") from None
        out[a] = None
    if len(out) < least:
        raise RunError("give at least two different addresses" + (" (ADDR... or --file FILE)"
                       if not given else ""))  # fmt: skip
    if len(out) > MAX_TARGETS:
        raise RunError(f"more than {MAX_TARGETS} addresses")
    return list(out), via


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.alias import (
        alias_pairs,
        alias_sets,
        best_methods,
        byte_swapped,
        collect_ip_ids,
        common_source_pairs,
        indirect_flow,
        parse_methods,
        velocity,
    )
    from packetlab.measure.midar import StageReport, midar

    _scamper_options(args)
    _scamper_method(args)
    scan = _prefixscan(args)
    if getattr(args, "exclude", None) and not scan:  # (scamper: -x for prefixscan only)
        raise RunError(f"-x/--exclude {args.exclude[0]}: only with --prefixscan B/LEN (scamper's "
                       "prefixscan -x)")  # fmt: skip
    try:
        methods = parse_methods(args.method)
    except ValueError as e:
        raise RunError(f"--method: {e}") from None
    # one address: Mercator's test alone (scamper's `dealias -m mercator A`), by a UDP
    # method's port unreachable from another address; else pairs need two
    mercator = any(m in ("udp", "udp-dport") for m in methods)
    targets, via = _targets(args, least=1 if scan or mercator else 2)
    if scan:  # A, then B's prefix in scamper's order
        if len(targets) != 1:
            raise RunError(f"--prefixscan {args.prefixscan}: give one address A (its alias is "
                           f"looked for in {args.prefixscan}), not {len(targets)}")  # fmt: skip
        from packetlab.measure.alias_prefixscan import candidates

        # (-x: scamper's exclude list, left out of the candidates as its prefixscan does)
        excluded = set()
        for x in getattr(args, "exclude", None) or ():
            try:
                excluded.add(_ipv4(x, x))
            except RunError as e:
                raise RunError(f"-x {e}") from None
        scanned = [t for t in candidates(targets[0], *scan) if t not in excluded]
        if not scanned:
            raise RunError(f"--prefixscan {args.prefixscan}: no address to test against "
                           f"{targets[0]} (the prefix holds only it and B"
                           f"{', and -x excluded the rest' if excluded else ''})")  # fmt: skip
        targets += scanned
    # (the start-up's source address and the time budget read them; --file's included)
    args.targets = [f"{t}@{via[t][0]}:{via[t][1]}" if t in via else t for t in targets]
    endpoints = getattr(args, "endpoints", 1)  # (not an option of the xpmgr mlet)
    check_ranges(("--endpoints", endpoints, 1, 10_000))
    if endpoints > 1 and getattr(args, "listen", None) is None:
        raise RunError(f"--endpoints {endpoints} needs --listen ADDR (the endpoints connect "
                       "there; the in-process endpoint is one)")  # fmt: skip
    if via and "indirect" not in methods:
        a, (dst, ttl) = next(iter(via.items()))
        raise RunError(f"{a}@{dst}:{ttl}: DST:TTL is for the indirect method, which --method "
                       f"{args.method} leaves out (--method auto,indirect adds it)")  # fmt: skip
    if "indirect" in methods and not via:
        raise RunError(f"--method indirect: give each address to probe indirectly as "
                       f"ADDR@DST:TTL (e.g. {targets[0]}@DST:TTL)")  # fmt: skip
    probe = getattr(args, "indirect_method", "icmp-echo")
    if probe != "icmp-echo" and "indirect" not in methods:
        raise RunError(f"--indirect-method {probe}: no address is probed indirectly (--method "
                       f"{args.method},indirect and ADDR@DST:TTL)")  # fmt: skip
    lacking = [t for t in targets if t not in via]
    if methods == ("indirect",) and lacking:
        raise RunError(f"--method indirect: {lacking[0]} has no destination and TTL to be "
                       f"probed through (give it as {lacking[0]}@DST:TTL)")  # fmt: skip
    rounds = [("--rounds", args.rounds), ("--discovery-rounds", args.discovery_rounds),
              ("--elimination-rounds", args.elimination_rounds),
              ("--corroboration-rounds", args.corroboration_rounds)]  # fmt: skip
    least = max(1, -(-3 // endpoints))  # every endpoint probes every round
    for name, n in rounds:
        # (2 was allowed with one endpoint: no series could be tested, so every address
        # had "no usable counter", or discovery kept no pair and a true alias read "not
        # aliases")
        if 1 <= n < least:
            raise RunError(f"{name} must be {least}..10000 with {endpoints} endpoint(s), got "
                           f"{n}: a counter is tested on three samples of an address at "
                           "least (two steps)")  # fmt: skip
    check_ranges(
        *((name, n, least, 10_000) for name, n in rounds),
        ("--spacing", args.spacing, 0.05, 10_000),
        ("--round-wait", args.round_wait, 0, 3_600_000),
        ("--wait", args.wait, 0, 3600),
        ("--window", args.window, 2, float("inf")),
        ("--velocity-ratio", args.velocity_ratio, 1, float("inf")),
        ("--userid", getattr(args, "userid", 0), 0, 0xFFFFFFFF),  # (scamper's: a uint32)
    )
    flow = indirect_flow(probe)  # (None: the echo requests of the method itself)
    probed_via: dict[str, Any] = (
        {t: (dst, ttl, flow) for t, (dst, ttl) in via.items()} if flow else dict(via)
    )
    recorder = pcapout.recorder_for(args)
    runs: list[Any] | None = [] if args.warts else None
    scanned_alias: list[str] = []  # --prefixscan: A's first alias in scamper's order
    warts = _check_warts(args.warts) if args.warts else None
    unsent: dict[str, str] = {}  # address -> why the endpoint could not send to it
    unreached: dict[str, str] = {}  # address -> the ICMP unreachable that answered it

    def sample_records(by_stage: dict[str, list[Any]], skip: str | None = None) -> None:
        if args.samples:
            for name, got in by_stage.items():
                for s in got if name != skip else ():
                    emit({**s.to_dict(), "stage": name} if name else s.to_dict())

    def series_records(
        samples: list[Any],
        by_stage: dict[str, list[Any]] | None = None,
        chosen: dict[str, str | None] | None = None,
        by_method: dict[str, dict[str, float | None]] | None = None,
    ) -> None:
        """`samples`: each address's series by its kept method (`chosen`)."""
        sample_records(by_stage or {"": samples})
        for t in targets:
            series = [(s.time_ns, s.ip_id) for s in samples if s.addr == t]
            v = velocity(series)
            method = (chosen or {}).get(t) or (methods[0] if len(methods) == 1 else None)
            record = {"type": "ipid-series", "addr": t, "samples": len(series),
                      "endpoints": len({s.endpoint for s in samples if s.addr == t}),
                      "usable": v is not None, "ids_per_s": v,
                      "method": method}  # fmt: skip
            if v is not None and byte_swapped(series):  # (its velocity as it counts)
                record["byte_swapped"] = True
            if t in via:
                through: dict[str, Any] = {"dst": via[t][0], "ttl": via[t][1]}
                if probe != "icmp-echo":  # (session 27: UDP or TCP ACK through it)
                    through["probe"] = probe
                record["via"] = through
            if len(methods) > 1 and by_method is not None:  # every method's velocity (None:
                record["methods"] = {m: v for m, v in by_method[t].items()  # unusable)
                                     if m != "indirect" or t in via}  # fmt: skip
            if t in unsent:
                record["not_sent"] = unsent[t]
            if t in unreached:
                record["unreachable"] = unreached[t]
            emit(record)

    def stage(st: StageReport) -> None:
        emit(st.to_dict())
        progress(f"alias: {st.stage} done: {st.pairs} pair{'' if st.pairs == 1 else 's'} kept")

    def probing(what: str, addresses: int, probes: int) -> None:
        # (a stage of many addresses probes for minutes: what it is and about how long;
        # the line said the stage before it was done the while)
        secs = probes * args.spacing / 1000 + args.wait
        if args.round_wait:  # (rounds: about the probes an address gets)
            secs += probes / max(1, addresses) * args.round_wait / 1000
        progress(f"alias: {what}: {addresses} addresses, {probes} probes (~{secs:.0f} s)")

    def estimated(r: Any) -> None:
        # each address's counter as soon as estimation has it (streamed, and kept when a
        # later stage is cut short: Ctrl-C left only the stage lines before session 24)
        series_records(r.estimation, r.by_stage, r.methods, r.by_method)

    async def run(sessions: Any) -> None:
        spacing = args.spacing / 1000
        if args.single_stage:
            probing("one stage", len(targets), len(targets) * len(methods) * args.rounds)
            tried = await collect_ip_ids(
                sessions, targets, rounds=args.rounds, spacing=spacing, wait=args.wait,
                recorder=recorder, unsent=unsent, method=list(methods), runs=runs, via=probed_via,
                unreached=unreached, shuffle=args.shuffle, round_wait=args.round_wait / 1000,
            )  # fmt: skip
            best = best_methods(tried, targets, methods)
            chosen = {t: m for t, (m, _) in best.items()}
            samples = [s for s in tried if chosen[s.addr] == s.method]
            series_records(samples, {"": tried}, chosen, {t: vs for t, (_, vs) in best.items()})
            pairs = alias_pairs(samples)
            every = tried
        else:
            got = await midar(
                sessions, targets, estimation_rounds=args.rounds,
                discovery_rounds=args.discovery_rounds,
                elimination_rounds=args.elimination_rounds,
                corroboration_rounds=args.corroboration_rounds, window=args.window,
                velocity_ratio=args.velocity_ratio, spacing=spacing, wait=args.wait,
                recorder=recorder, on_stage=stage, on_probe=probing, unsent=unsent, methods=methods,
                runs=runs, via=probed_via, unreached=unreached, on_estimation=estimated,
                shuffle=args.shuffle, round_wait=args.round_wait / 1000,
            )  # fmt: skip
            sample_records(got.by_stage, skip="estimation")  # (estimation's came first)
            pairs, every = got.pairs, got.samples
            for g in got.inconsistent:
                emit({"type": "alias-inconsistent", "set": g})
        # the IP-ID test's pairs, and Mercator's: an address whose port unreachable came
        # from another address (scamper's `dealias -m mercator`, sc_ally's byproduct)
        by: dict[tuple[str, str], list[str]] = {p: ["ip-id"] for p in pairs}
        for p in common_source_pairs(every):
            by.setdefault(p, []).append("mercator")
        for (a, b), how in sorted(by.items()):
            emit({"type": "alias", "a": a, "b": b, "by": how})
        emit({"type": "alias-sets", "sets": alias_sets(sorted(by))})
        if scan:  # scamper's answer: the aliases of A in B's prefix, in its order
            a = targets[0]
            found = {y if x == a else x for x, y in by if a in (x, y)}
            aliases = [t for t in targets[1:] if t in found]
            emit({"type": "prefixscan", "a": a, "b": args.prefixscan, "aliases": aliases})
            scanned_alias[:] = aliases[:1]

    measured = pcapout.recording(args, recorder, run)
    if warts is None or runs is None:
        return measured
    started = time.time()

    async def with_warts(sessions: Any) -> None:
        try:
            await measured(sessions)
        finally:  # the runs done so far, also when stopped half way
            if runs:  # (none: a run that failed first leaves FILE as it was, or none)
                _write_warts(warts, runs, started, args, _scan_of(args, targets, scanned_alias))

    return with_warts


# scamper dealias's -O words ours does not take, and why (one line, exit 2)
_REFUSED_O = {
    "inseq": "ally's IDs strictly in sequence; ours orders them within each sample's time "
    "error (the monotonic bounds test)",
    "nobs": "ours takes a counter byte-swapped only when swapped it counts 16 times slower",
}


def _scamper_options(args: argparse.Namespace) -> None:
    """scamper's `-O shuffle` is --shuffle (session 30; it was `unrecognized arguments:
    -O`); `inseq` and `nobs` tune ally's test, not offered."""
    for word in getattr(args, "scamper_options", None) or ():
        if word.lower() == "shuffle":  # (scamper's words are case-insensitive)
            args.shuffle = True
        elif word.lower() in _REFUSED_O:
            raise RunError(f"-O {word}: not offered ({_REFUSED_O[word.lower()]})")
        else:
            raise RunError(f"-O {word}: scamper dealias's options are shuffle, inseq, nobs "
                           "(only shuffle is offered)")  # fmt: skip


# scamper dealias's -m methods ours has no counterpart for, and why
_REFUSED_M = {
    "bump": "another algorithm than MIDAR's",
    "midarest": "not in scamper 20211212 either; MIDAR's stages are ours without -m",
    "midardisc": "not in scamper 20211212 either; MIDAR's stages are ours without -m",
}


def _scamper_method(args: argparse.Namespace) -> None:
    """scamper's `dealias -m METHOD ...` read as ours (session 30; it was `unrecognized
    arguments: -m`): radargun and ally probe once and test every pair (--single-stage);
    mercator takes one address; prefixscan takes `A B/LEN` as scamper's."""
    method = getattr(args, "scamper_method", None)
    if method is None:
        return
    m = method.lower()  # (scamper's are case-insensitive)
    if m in ("radargun", "ally"):
        if m == "ally" and len(args.targets) != 2 and not getattr(args, "file", None):
            raise RunError(f"-m ally: give two addresses (scamper's ally tests one pair), not "
                           f"{len(args.targets)}")  # fmt: skip
        args.single_stage = True
    elif m == "mercator":
        if len(args.targets) != 1 or getattr(args, "file", None):
            raise RunError("-m mercator: give one address (scamper's dealias -m mercator A)")
    elif m == "prefixscan":
        if getattr(args, "prefixscan", None) is None:
            if len(args.targets) != 2 or "/" not in args.targets[1]:
                raise RunError("-m prefixscan: give A B/LEN (scamper's dealias -m prefixscan "
                               "A B/LEN; or --prefixscan B/LEN A)")  # fmt: skip
            args.prefixscan = args.targets.pop()
    elif m in _REFUSED_M:
        raise RunError(f"-m {method}: not offered ({_REFUSED_M[m]})")
    else:
        raise RunError(f"-m {method}: scamper dealias's methods are ally, bump, mercator, "
                       "prefixscan, radargun")  # fmt: skip


def _prefixscan(args: argparse.Namespace) -> tuple[str, int] | None:
    """--prefixscan B/LEN as (B, LEN), or None."""
    text = getattr(args, "prefixscan", None)
    if text is None:
        return None
    from packetlab.measure.alias_prefixscan import parse_prefix

    try:
        return parse_prefix(text)
    except ValueError as e:
        raise RunError(f"--prefixscan {e}") from None


def _check_warts(path: str) -> str:
    """--warts FILE checked before probing (opened for appending, so an unwritable path
    fails at once and an existing file stays as it was until a run is written)."""
    if path == "-":
        raise RunError("--warts: give a file (the records go to stdout)")
    new = not os.path.lexists(path)
    try:
        open(path, "ab").close()
    except OSError as e:
        raise RunError(f"--warts {path}: cannot write it: {e.strerror or e}") from None
    if new:
        os.unlink(path)
    return path


def _scan_of(args: argparse.Namespace, targets: list[str], alias: list[str]) -> Any:
    """--prefixscan's question and answer for its warts record (scamper's prefixscan
    record, not a radargun record per MIDAR stage: session 31, odds31); None without it."""
    scan = _prefixscan(args)
    if scan is None:
        return None
    from packetlab.measure.warts import PrefixScan

    xs = tuple(dict.fromkeys(_ipv4(x, x) for x in getattr(args, "exclude", None) or ()))
    return PrefixScan(targets[0], scan[0], scan[1], alias[0] if alias else None, xs)


def _write_warts(
    path: str, runs: list[Any], started: float, args: argparse.Namespace, scan: Any = None
) -> None:
    """The runs as warts (with `scan`, a PrefixScan: scamper's one prefixscan record of
    them): the cycle's host named only when this host probed (in-process)."""
    import socket

    from packetlab.cli.link import Link
    from packetlab.measure.warts import alias_warts

    host = socket.gethostname() if Link.from_args(args).in_process else ""
    data = alias_warts(runs, start_s=int(started), stop_s=int(time.time()), hostname=host,
                       userid=getattr(args, "userid", 0), scan=scan)  # fmt: skip
    with open(path, "wb") as out:
        out.write(data)


def _routed(targets: list[str]) -> str:
    """The first target this host has a route to (the in-process endpoint's address is
    the one it sends from), else the first (whose "no route" is the error): the others
    without a route are each `not_sent`, the run goes on. (Before session 24 the first
    target was taken, and one without a route ended the run, exit 2, where the same
    address anywhere else in the list was left out and the pairs found.)"""
    from packetlab.cli.link import LinkError, route_source

    addrs = [t.partition("@")[0] for t in targets]
    for a in addrs:
        ip = ipaddress.ip_address(a)
        try:
            if ip.is_loopback or route_source(ip):
                return a
        except LinkError:
            continue
    return addrs[0]


def row(r: Record) -> str | None:
    t = r["type"]
    if t == "ipid-series":
        v = f"{r['ids_per_s']:.0f} IDs/s" if r["usable"] else "no usable counter"
        if r.get("byte_swapped"):
            v += " (byte-swapped)"
        if r["usable"] and r.get("methods"):
            v += f" by {r['method']}"
        if r.get("methods"):
            others = [f"{m} {'none' if x is None else f'{x:.0f}'}"
                      for m, x in r["methods"].items() if m != r.get("method")]  # fmt: skip
            v += f" ({', '.join(others)})" if others else ""
        if "not_sent" in r:
            v += f" ({r['not_sent']})"
        if "unreachable" in r and not r["usable"]:  # (why it has none)
            v += f" ({r['unreachable']})"
        addr = r["addr"]
        if "via" in r:  # probed indirectly (too): through which destination, at which TTL
            by = f", {r['via']['probe']}" if "probe" in r["via"] else ""
            addr += f" (TTL {r['via']['ttl']} to {r['via']['dst']}{by})"
        n = r["samples"]  # ("1 samples" before session 30)
        return f"# {addr}: {n} sample{'' if n == 1 else 's'} from {r['endpoints']} endpoint(s), {v}"
    if t == "alias":
        if r.get("by") == ["mercator"]:  # no IP-ID evidence: say what is
            return f"{r['a']} {r['b']}  # common source address (Mercator)"
        return f"{r['a']} {r['b']}"
    if t == "alias-sets":
        return "\n".join("# router: " + " ".join(s) for s in r["sets"]) or None
    if t == "alias-stage":
        return (f"# {r['stage']}: {r['addresses']} addresses x {r['rounds']} rounds, "
                f"{r['samples']} samples, {r['tested']} pairs tested, "
                f"{r['pairs']} kept")  # fmt: skip
    if t == "prefixscan":
        found = " ".join(r["aliases"]) if r["aliases"] else "none"
        return f"# prefixscan {r['a']} in {r['b']}: {found}"
    if t == "alias-inconsistent":
        return "# split by corroboration (not every pair passed): " + " ".join(r["set"])
    if t == "summary":
        pairs = f"# {r['pairs']} alias pair{'' if r['pairs'] == 1 else 's'}"
        if r.get("stop_reason") in ("INTERRUPTED", "ERROR"):  # not "no aliases"
            return f"{pairs} (run cut short: the stage in flight was dropped)"
        if "verdict" in r:  # (two addresses: no usable counter for one is no verdict)
            return f"{pairs}: {r['verdict']}"
        return pairs
    return None


def summary(records: list[Record]) -> Record:
    out: Record = {"pairs": sum(1 for r in records if r["type"] == "alias")}
    series = [r for r in records if r["type"] == "ipid-series"]
    done = any(r["type"] == "alias-sets" for r in records)  # (not cut short: the last one)
    scan = [r for r in records if r["type"] == "prefixscan"]
    if scan:  # (scamper's prefixscan result: aliases or none)
        out["verdict"] = "aliases" if scan[0]["aliases"] else "none"
        return out
    if len(series) == 1 and done:  # Mercator's test alone, scamper's mercator verdicts
        out["verdict"] = "aliases" if out["pairs"] else "none"
    if len(series) == 2 and done:  # one pair, as scamper's ally judges it: its verdicts
        if out["pairs"]:
            out["verdict"] = "aliases"
        elif all(r["usable"] for r in series):
            out["verdict"] = "not aliases"
        else:
            out["verdict"] = "unknown"
    return out


def budget(args: argparse.Namespace) -> float:
    tried = sum(3 if m.strip() == "auto" else 1 for m in args.method.split(","))
    rounds = args.rounds * tried  # estimation (or the single stage) probes every method
    if not args.single_stage:  # every stage at most every address; discovery windows overlap
        rounds += 2 * args.discovery_rounds + args.elimination_rounds
        rounds += args.corroboration_rounds
    stages = 1 if args.single_stage else 4
    spread = 0.0  # --round-wait: every round of every probing run (discovery's windows)
    if args.round_wait:
        windows = 1 if args.single_stage else 2 * -(-len(args.targets) // args.window) + 1
        spread = rounds * windows * args.round_wait / 1000
    return (len(args.targets) * rounds * args.spacing / 1000 * 4 + spread
            + stages * (args.wait + 2) + 15)  # fmt: skip


COMMAND = Command(
    name="alias",
    help="MIDAR-style alias resolution (IP-ID monotonic bounds test)",
    description="Probe candidate IPv4 addresses (ICMP echo, TCP ACK or SYN, UDP; or indirectly, "
    "TTL-limited through them) from one or more "
    "endpoints at synchronised, interleaved times and report the pairs whose IP-ID series could "
    "come from one shared counter (MIDAR's monotonic bounds test).",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    target=lambda args: _routed(args.targets),
    multi=True,
    endpoint_clock=False,  # its probe times are mapped onto our clock (clocksync.md)
    raw=True,
    raw_needed=True,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
