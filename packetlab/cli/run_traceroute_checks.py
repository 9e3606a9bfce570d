"""`pktlab run traceroute`'s options read and checked before anything is sent: the one
line of each refused combination (`check_options`), traceroute -O's words for its tcp,
udplite and dccp modules (`module_options`, `tcp_flavor`), -g's gateways, PACKETLEN and
-t (`traceroute_shape`), and scamper tracelb's limits beside --mda (`mda_limits`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from packetlab.cli.run import Address, RunError, given, resolve_target

# traceroute --mda: the Paris method of each probe protocol (the flow is varied)
MDA_METHOD = {
    "udp": "udp-paris", "udp-paris": "udp-paris", "icmp": "icmp-paris",
    "icmp-paris": "icmp-paris", "tcp": "tcp",
}  # fmt: skip


# traceroute's methods whose probes are a flow each (a source port each), by option
FLOW_PER_PROBE = {"udp-fixed": "-U", "udplite": "-UL", "dccp": "-D"}


def check_options(args: argparse.Namespace) -> tuple[int | None, int]:
    """RunError (one line) for the first combination of options that traceroute (or
    this run) refuses, before the link is made; traceroute's packetlen and TOS
    (`traceroute_shape`). With -A, the whois server resolved (``args.as_whois``), or its
    error kept for the lines to raise (``args.as_whois_error``)."""
    if args.first_ttl > args.max_ttl:
        raise RunError("first hop out of range")  # (traceroute's words)
    mda_limits(args)
    if args.mda and args.protocol not in MDA_METHOD:
        raise RunError(
            f"{mda_flag(args)} varies the flow of udp, icmp or tcp probes, not {args.protocol}"
        )
    if args.mda and (args.sequential or args.squeries):
        raise RunError(
            f"{mda_flag(args)} sends its own rounds of probes: not with --sequential or -N"
        )
    if args.paris and args.protocol in FLOW_PER_PROBE:
        # (it was ignored: each probe kept its own source port)
        raise RunError(
            f"--paris: {FLOW_PER_PROBE[args.protocol]} probes come each from a source port "
            "of its own, as traceroute's (a flow each): for one flow, -P udp-paris"
        )
    if args.mda and args.pace:
        # (they were ignored: tracelb's own pacing is scamper's -W)
        raise RunError(
            f"{mda_flag(args)} paces its probes with -W/--wait-probe CS (1/100 s, as scamper "
            "tracelb -W): not with --pace or -z"
        )
    module_options(args)
    if args.mda and (args.extensions or args.back or args.tcp_info):
        raise RunError(
            f"{mda_flag(args)} prints each hop's interfaces: not with -e, --back or -O info"
        )
    if args.mda and (args.tcp_spec or args.gateways):
        raise RunError(
            f"{mda_flag(args)} sends its own probes: not with -g or -O's flags and options"
        )
    shape = traceroute_shape(args)
    if args.mda and (args.mtu or args.packetlen or args.tos or args.dont_fragment):
        raise RunError(
            f"{mda_flag(args)} sends its own probes: not with PACKETLEN, -t, -F or --mtu"
        )
    if args.warts and args.gateways:
        # (it wrote a trace to TARGET as if the probes had gone there straight)
        raise RunError(
            "--warts: scamper's trace records no source route (-g): the file would say "
            "the probes went straight to TARGET; --json has the gateways (summary "
            "`gateways`)"
        )
    if args.warts and args.protocol in ("udplite", "dccp"):
        raise RunError(f"--warts: scamper has no {args.protocol} trace method (-UL, -D)")
    if args.mda and args.as_lookups:
        raise RunError(f"{mda_flag(args)} prints each hop's interfaces: not with -A")
    args.as_whois = None
    if args.as_lookups:
        from packetlab.measure.aspath import AsLookupError, resolve_server, whois_server

        try:  # (as traceroute's getaddrinfo; its message, exit 2)
            args.as_whois = resolve_server(*whois_server())
        except AsLookupError as e:
            if args.json:
                raise RunError(str(e)) from None
            # traceroute stops at the first address it prints (the header and ` 1  ADDR`
            # first): so do the lines (`TracerouteReport.as_error`)
            args.as_whois_error = str(e)
    if args.squeries and args.sequential:
        raise RunError("-N sends each probe as a place frees up: not with --sequential")
    if args.sport is not None and not (args.mda or args.sequential or args.mtu):
        # traceroute's --sport implies -N 1 and a silent probe waited MAX s (it zeroes
        # HERE and NEAR): its one port is one probe's socket at a time. All at once here,
        # a silent hop was given up on after NEAR x the next hop's RTT.
        args.squeries, args.here, args.near = 1, 0.0, 0.0
    return shape


# Butskoy's tcp module (-T -O): its flags, its switches, and its words with a value
TCP_FLAG_WORDS = {
    "fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
    "ece": 0x40, "cwr": 0x80,
}  # fmt: skip


TCP_SWITCHES = ("ecn", "sack", "timestamps", "window_scaling", "sysctl", "info", "reuse")


TCP_VALUE_WORDS = ("flags", "mss")


TCP_ABBREVIATED = ("flags", "timestamps", "window_scaling")  # CLIF_ABBREV: a prefix will do


TCP_SYSCTLS = ("ecn", "sack", "timestamps", "window_scaling")


LINUX_TCP_SYSCTLS = {"ecn": False, "sack": True, "timestamps": True, "window_scaling": True}


def _tcp_word(word: str) -> tuple[str, str | None]:
    """One -O word as (name, value or None), a prefix of an abbreviable name read as it."""
    name, eq, value = word.partition("=")
    known = (*TCP_FLAG_WORDS, *TCP_SWITCHES, *TCP_VALUE_WORDS)
    if name not in known:
        name = next((n for n in TCP_ABBREVIATED if name and n.startswith(name)), name)
    if name not in known:
        raise RunError(f"-O {word}: no such option of traceroute's tcp module")
    if name in TCP_VALUE_WORDS:
        if not eq:
            raise RunError(f"-O {word}: requires an argument: `{name}=NUM'")
        return name, value
    if eq:
        raise RunError(f"-O {word}: `{name}' takes no value")
    return name, None


# the one -O word of traceroute's udplite and dccp modules: a number (its CLIF_set_uint:
# strtoul, any base; at most 32 bits), an abbreviation taken
MODULE_NUMBER_WORDS = {"udplite": "coverage", "dccp": "service"}


def _number_words(args: argparse.Namespace, words: list[str]) -> None:
    """-O coverage=NUM (-UL) or service=NUM (-D), as traceroute's modules read them; a
    RunError in traceroute's words for anything else."""
    want = MODULE_NUMBER_WORDS[args.protocol]
    for w in words:
        name, eq, value = w.partition("=")
        if not name or not want.startswith(name):
            raise RunError(f"-O {w}: no such option of traceroute's {args.protocol} module")
        if not eq:
            raise RunError(f"-O {w}: requires an argument: `{want}=NUM'")
        try:
            number = int(value, 0) if value.strip() else -1
        except ValueError:
            number = -1
        if not 0 <= number <= 0xFFFFFFFF:
            raise RunError(f"Cannot handle `{want}' keyword with arg `{value}'")
        if want == "coverage":
            args.coverage = min(number, 0xFFFF)  # (the kernel's limit, as traceroute's)
        else:
            args.service = number


def module_options(args: argparse.Namespace) -> None:
    """traceroute -O for -T (Butskoy's tcp module), read into ``args.tcp_spec`` (the
    flags, the switches asked, -O mss's value) for `tcp_flavor`, and ``args.tcp_info``.
    RunError (one line) for a word it has not or a bad value."""
    words = [w for opt in args.module_options for w in opt.split(",") if w]
    args.tcp_info, args.tcp_spec = False, None
    args.coverage, args.service = 8, None  # -UL's and -D's (traceroute's defaults)
    if args.protocol in MODULE_NUMBER_WORDS:
        _number_words(args, words)
        return
    if args.protocol not in ("tcp", "tcp-ack"):
        if words:
            method = {"udp-fixed": "udp (-U)"}.get(args.protocol, args.protocol)
            raise RunError(f"-O {','.join(words)}: the {method} method takes no options (-T does)")
        return
    flags, switches, mss, fixed = 0, set(), None, False
    for w in words:
        name, value = _tcp_word(w)
        if name in TCP_FLAG_WORDS:
            flags |= TCP_FLAG_WORDS[name]
        elif name == "flags":
            try:
                number = int(str(value), 0)
            except ValueError:
                raise RunError(f"-O {w}: expected a number (0x.. hex too)") from None
            flags, fixed = number & 0xFF, True
        elif name == "mss":
            if not str(value).isdigit() or not 0 <= int(str(value)) <= 0xFFFF:
                raise RunError(f"-O {w}: expected 0..65535")
            mss = int(str(value))
        else:
            switches.add(name)
    args.tcp_info = "info" in switches
    if args.protocol == "tcp-ack" and not (flags or fixed or switches - {"info", "reuse"}):
        return  # -P tcp-ack (scamper's bare ACKs): -O info only
    args.tcp_spec = (flags, fixed, frozenset(switches), mss)
    if (flags, fixed) == (0x10, False) and not switches - {"info", "reuse"}:
        args.protocol = "tcp-ack"  # (its name in --json and --warts: scamper's)
    elif args.protocol == "tcp-ack":
        args.protocol = "tcp"


def tcp_flavor(
    spec: tuple[int, bool, frozenset[str], int | None] | None,
    sysctl: Callable[[str], bool],
    mtu: int | None,
    version: int = 4,
) -> Any:
    """The TCP probe Butskoy's tcp_init builds from -O's words (`module_options`'s
    `spec`): with no flag and no option word, the sender's sysctls (`sysctl(NAME)`:
    net.ipv4.tcp_NAME is 1) pick SACK, timestamps, window scaling and ECN (`sysctl` asks
    for them anyway); no flag: SYN (with ECE and CWR for ECN); the MSS option (SYN only)
    and the window from the path MTU `mtu` (576 if unknown or below, as traceroute's)."""
    from packetlab.measure.probes import TcpFlavor

    flags, fixed, switches, mss = spec or (0, False, frozenset(), None)
    use_sysctl = "sysctl" in switches or not (
        flags or fixed or switches & {"ecn", "sack", "timestamps", "window_scaling"}
    )
    on = set(switches)
    if use_sysctl:
        on |= {name for name in TCP_SYSCTLS if sysctl(name)}
    if not (flags or fixed):
        flags = 0x02 | (0xC0 if "ecn" in on else 0)
    path_mss = max(mtu or 0, 576) - (40 if version == 4 else 60)
    return TcpFlavor(
        flags, sack="sack" in on, timestamps="timestamps" in on,
        window_scaling="window_scaling" in on, mss=path_mss if mss is None else mss,
        window=(4 * path_mss) & 0xFFFF,
    )  # fmt: skip


def host_tcp_sysctl(name: str, proc: str = "/proc/sys/net/ipv4") -> bool:
    """net.ipv4.tcp_NAME of this host (its network namespace) is 1, as traceroute reads
    it (tcp_ecn's 2, "only when asked", is not)."""
    try:
        with open(f"{proc}/tcp_{name}", "rb") as f:
            return f.read(1) == b"1"
    except OSError:
        return False


def gateways(words: Sequence[str], dst: Address) -> list[str]:
    """traceroute -g's gateways (repeated or comma-separated), resolved: RunError, one
    line, in traceroute's words where it has them, past 8 or for an IPv6 target (its type
    0 routing header is deprecated, RFC 5095, and Linux no longer forwards it)."""
    names = [g for w in words for g in w.split(",") if g]
    if not names:
        return []
    from packetlab.measure.packets_ip_options import MAX_GATEWAYS

    if dst.version != 4:
        raise RunError(
            "-g: source routing over IPv6 (a type 0 routing header) is deprecated (RFC 5095) "
            "and not built; -g takes IPv4 gateways"
        )
    if len(names) > MAX_GATEWAYS:
        raise RunError(f"Too many gateways specified. No more than {MAX_GATEWAYS}")
    return [str(resolve_target(g, 4)) for g in names]


def default_port(protocol: str) -> int:
    """traceroute's default destination port: 80 for TCP, 53 for -U and -UL, 33434 (+n)
    else (-D: 33434 for every probe)."""
    from packetlab.measure.traceroute_probes import TCP_METHODS

    if protocol in TCP_METHODS:
        return 80
    return 53 if protocol in ("udp-fixed", "udplite") else 33434


def traceroute_shape(args: argparse.Namespace) -> tuple[int | None, int]:
    """traceroute's packetlen and -t TOS, checked: RunError (one line) when bad."""
    packetlen: int | None = None
    if args.packetlen is not None:
        try:
            packetlen = int(args.packetlen)
        except ValueError:
            raise RunError(f"bad packetlen {args.packetlen!r}: expected a number") from None
        if packetlen > 65000:  # traceroute's own words
            raise RunError(f"too big packetlen {packetlen} specified (at most 65000)")
        if packetlen < 0:
            raise RunError(f"bad packetlen {packetlen}: expected 0..65000")
    tos = 0
    if args.tos is not None:
        try:
            tos = int(args.tos, 0)
        except ValueError:
            raise RunError(f"-t {args.tos}: expected a TOS byte, 0..255 or 0x00..0xff") from None
        if not 0 <= tos <= 255:
            raise RunError(f"-t {args.tos}: the TOS byte is 0..255 (0x00..0xff)")
    return packetlen, tos


MDA_LIMITS = (
    ("max_probes", "--maxprobec"), ("gaplimit", "--gaplimit"), ("attempts", "--attempts"),
    ("wait_probe", "--wait-probe"),
)  # fmt: skip


def mda_limits(args: argparse.Namespace) -> None:
    """--mda-lite implies --mda; scamper's tracelb limits are for --mda only, and
    traceroute's -q is not one of them."""
    if getattr(args, "mda_lite", False):
        args.mda = True
    if args.mda and given(args, "-q"):
        raise RunError(
            f"-q: {mda_flag(args)} sends as many probes per hop as its stopping rule needs "
            "(set --confidence; --attempts resends a silent probe)"
        )
    if getattr(args, "multilevel", False) and not args.mda:
        raise RunError("--multilevel resolves the interfaces --mda finds into routers: "
                       "add --mda or --mda-lite")  # fmt: skip
    if getattr(args, "mbt_rounds", None) is not None and not args.multilevel:
        raise RunError("--mbt-rounds bounds --multilevel's alias resolution: add --multilevel")
    limits = [flag for dest, flag in MDA_LIMITS if getattr(args, dest, None) is not None]
    if limits and not args.mda:
        raise RunError(f"{limits[0]} is a limit of --mda (scamper's tracelb): add --mda")


def mda_flag(args: argparse.Namespace) -> str:
    """The multipath option the user typed, for its errors: --mda-lite implies --mda,
    but an error about it names --mda-lite."""
    return "--mda-lite" if getattr(args, "mda_lite", False) else "--mda"
