"""``pktlab testbed up|down|status``: namespace testbeds for trying things by hand."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from packetlab.cli.exits import EXIT_INTERRUPTED
from packetlab.cli.interrupt import interrupts_raise
from packetlab.testbed import (
    Shape,
    Testbed,
    TestbedError,
    Topology,
    TopologyError,
    chain,
    down_all,
    down_by_name,
    list_testbeds,
    missing_parts,
    orphan_namespaces,
)
from packetlab.testbed.testbed import (
    DEFAULT_STATE_DIR,
    PREFIX,
    PREFIX_ENV,
    STATE_ENV,
    full_name,
    prefix,
    state_dir,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pre = os.environ.get(PREFIX_ENV) or PREFIX  # shown as is; `up` checks it
    parser.epilog = (
        f"Namespaces are named {pre}NAME-NODE (${PREFIX_ENV} replaces {PREFIX!r}); each "
        f"testbed is recorded in {state_dir()}/{pre}NAME.json (${STATE_ENV} replaces "
        f"{DEFAULT_STATE_DIR}). Needs root and iproute2 (docs/testbed.md)."
    )
    sub = parser.add_subparsers(dest="testbed_command", metavar="ACTION")
    sub.required = True
    up = sub.add_parser(
        "up",
        help="create a testbed and leave it running",
        description="Create a testbed (namespaces joined by veths) and leave it running "
        "until `pktlab testbed down NAME`. Interrupted or failed, it removes what it made.",
    )
    up.add_argument("--topology", choices=["chain"], default="chain", help="(default: chain)")
    up.add_argument(
        "--hops", type=int, default=2, metavar="N",
        help="routers between endpoint and target, 0..20 (default: 2)",
    )  # fmt: skip
    up.add_argument("--name", help=f"testbed name ({pre}NAME; default: 6 random hex digits)")
    up.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="[LINK=]RATE",
        help="tbf-shape link LINK (1 = ep-r1; all links if LINK is left out) to RATE, "
        "e.g. 2=10mbit; repeatable (default: no shaping)",
    )
    up.add_argument("--base", type=int, default=77, metavar="B",
                    help="addresses 10.B.L.x, 0..255 (default: 77)")  # fmt: skip
    up.add_argument("--json", action="store_true", help="print the testbed as JSON")
    down = sub.add_parser(
        "down",
        help="tear down a testbed, or all of them",
        description="Stop what runs in a testbed's namespaces and delete them (their veths "
        "and qdiscs go with them) and its state file. A testbed that is not there is "
        "nothing to remove: exit 0.",
    )
    which = down.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", help="testbed name (as printed by up/status)")
    which.add_argument(
        "--all", action="store_true", help=f"every {pre}* namespace, live testbeds too"
    )
    status = sub.add_parser(
        "status",
        help="list testbeds",
        description="List recorded testbeds (live: all their namespaces exist) and "
        f"{pre}* namespaces of none, with the commands that remove those.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")


def _shapes(specs: Sequence[str]) -> Shape | dict[int, Shape] | None:
    if not specs:
        return None
    per_link: dict[int, Shape] = {}
    for spec in specs:
        link, sep, rate = spec.rpartition("=")
        if not sep:
            if len(specs) > 1:
                raise TopologyError("--shape RATE (all links) cannot be combined with others")
            return Shape.parse(rate)
        try:
            number = int(link)
        except ValueError:
            raise TopologyError(f"--shape {spec!r}: LINK must be a link number") from None
        per_link[number] = Shape.parse(rate)
    return per_link


# CAP_NET_ADMIN (links, addresses, routes) and CAP_SYS_ADMIN (setns, mounting
# /run/netns): the bits of /proc/self/status's CapEff (linux/capability.h)
NEEDED_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def missing_capabilities(status: str = "/proc/self/status") -> list[str]:
    """The capabilities a testbed needs that this process lacks (none when unknown)."""
    try:
        with open(status, encoding="ascii") as f:
            eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return []
    return [name for name, bit in NEEDED_CAPS.items() if not eff >> bit & 1]


def check_capabilities(action: str, status: str = "/proc/self/status") -> None:
    """Say before anything is made that testbeds need root (was `ip -batch - failed (1):
    mount --make-shared /run/netns failed: Operation not permitted`, over two lines)."""
    missing = missing_capabilities(status)
    if missing:
        raise TestbedError(
            f"{action} needs root: network namespaces need {' and '.join(missing)} "
            f"(run it with sudo)"
        )


def interfaces(topology: Topology) -> dict[str, list[dict[str, Any]]]:
    """Each node's interfaces as `up`'s text shows them (name, addresses, the link's tbf
    rate): `--json` had only the nodes and links, so a script had to work the addresses
    out from the base and the link numbers (docs/testbed.md's table)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for node in topology.nodes:
        out[node] = []
        for i in topology.interfaces(node):
            shape = topology.link(i.link).shape
            out[node].append({
                "name": i.name, "peer": i.peer, "link": i.link, "ipv4": str(i.ipv4),
                "ipv6": str(i.ipv6), "rate_bit": None if shape is None else shape.rate_bit,
            })  # fmt: skip
    return out


def _check_options(args: argparse.Namespace) -> None:
    """Name the option that is wrong, as `pktlab run` does (was `hops 21 outside 0..20`,
    `address base 300 outside 0..255`, `testbed name 'BAD': ...`, `no link 9 ...`)."""
    prefix()  # $PKTLAB_TESTBED_PREFIX's own error first
    for option, value, low, high in (("--hops", args.hops, 0, 20), ("--base", args.base, 0, 255)):
        if not low <= value <= high:
            raise TopologyError(f"{option} must be {low}..{high}, got {value}")
    if args.name is not None:
        try:
            full_name(args.name)
        except TestbedError:
            raise TestbedError(f"--name {args.name!r}: 1-12 lowercase letters or digits") from None


def _up(args: argparse.Namespace) -> int:
    _check_options(args)
    check_capabilities("testbed up")
    try:
        topology = chain(args.hops, shape=_shapes(args.shape), base=args.base)
    except TopologyError as e:  # --hops and --base are checked: it is --shape's
        said = str(e)
        raise TopologyError(said if said.startswith("--shape") else f"--shape: {said}") from None
    tb = Testbed(topology, name=args.name).up(persist=True)
    if args.json:
        print(json.dumps({**tb.to_dict(), "interfaces": interfaces(tb.topology)}, indent=2))
        return 0
    ep, tg = tb.netns_name("ep"), tb.topology.address("tg")
    print(tb.describe())
    print()
    print("try:")
    for cmd, note in (
        (f"ip route get {tg}", ""),
        (f"ping -c 3 {tg}", "needs iputils-ping"),
        ("bash", "a shell on the endpoint"),
    ):
        line = f"  ip netns exec {ep} {cmd}"
        print(f"{line:<50} # {note}" if note else line)
    print(f"tear down: pktlab testbed down {tb.name}")
    return 0


def left_behind(pid: int, persist: bool) -> bool:
    """A testbed whose process was to remove it (not `persist`: a `with Testbed(...)`, a
    fixture) and is gone without doing so (SIGKILL, a crash): nothing will remove it now.
    `status` said `live` of one as of any other."""
    if persist or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: there, another user's
        return False
    return False


def _status(args: argparse.Namespace) -> int:
    infos = list_testbeds()
    orphans = orphan_namespaces()
    # The namespaces and the veths in them, as `ip netns list` and `ip -n NS link` show
    # them: a testbed with a namespace or a link deleted by hand was still "live".
    missing = {i.name: missing_parts(i) for i in infos}
    if args.json:
        data = {
            "testbeds": [
                {
                    "name": i.name,
                    "live": not missing[i.name],
                    "left_behind": left_behind(i.pid, i.persist),
                    "missing": missing[i.name],
                    "created": i.created,
                    "pid": i.pid,
                    "persist": i.persist,
                    "namespaces": {n: f"{i.name}-{n}" for n in i.topology.nodes},
                    "topology": i.topology.to_dict(),
                    "interfaces": interfaces(i.topology),
                }
                for i in infos
            ],
            "orphan_namespaces": orphans,
        }
        print(json.dumps(data, indent=2))
        return 0
    if not infos and not orphans:
        print("no testbeds")
    for i in infos:
        gone = missing[i.name]
        if len(gone) == len(i.topology.nodes) and all(":" not in g for g in gone):
            state = f"gone: none of its namespaces exist (pktlab testbed down {i.name} forgets it)"
        else:
            said = [f"broken: {' '.join(gone)} missing" if gone else "live"]
            if left_behind(i.pid, i.persist):
                said.append(f"left behind: process {i.pid}, which was to remove it, is gone")
            state = ", ".join(said)
            if said != ["live"]:
                state += f" (pktlab testbed down {i.name} removes it)"
        nodes = " ".join(i.topology.nodes)
        print(f"{i.name}  {i.topology.kind}  {state}  created {i.created}  nodes: {nodes}")
    if orphans:
        print("namespaces of no recorded testbed: " + " ".join(orphans))
        print("remove them with: " + "; ".join(_removal_commands(orphans)))
    return 0


def _removal_commands(orphans: Sequence[str]) -> list[str]:
    """The commands that remove exactly these namespaces. `down --all`, which this said
    before, removes every live testbed too."""
    names: dict[str, None] = {}
    single = []
    for ns in orphans:
        short = ns[len(prefix()) :].rpartition("-")[0]
        try:  # PREFIX-NAME-NODE, as an `up` killed before its state file leaves them
            names[full_name(short)] = None
        except TestbedError:
            single.append(f"ip netns delete {ns}")
    return [f"pktlab testbed down {n}" for n in names] + single


def _down(args: argparse.Namespace) -> int:
    # as for up: without root `ip netns delete` fails, and down blamed processes inside
    check_capabilities("testbed down")
    if args.all:
        gone = down_all()
        print(f"removed {len(gone)} namespaces" + (": " + " ".join(gone) if gone else ""))
    else:
        name = full_name(args.name)
        recorded = os.path.exists(os.path.join(state_dir(), f"{name}.json"))
        gone = down_by_name(name)
        if gone:
            print(f"removed {name}: {' '.join(gone)}")
        elif recorded:
            print(f"removed {name} (its namespaces were gone already)")
        else:  # idempotent: a second down (or one after a failed up) is no failure
            print(f"no testbed {name}: nothing to remove")
    return 0


_INTERRUPTED = {
    "up": "up interrupted; what it had made is removed",
    "down": "down interrupted; run it again to remove the rest",
}


def run(args: argparse.Namespace) -> int:
    try:
        with interrupts_raise():
            if args.testbed_command == "up":
                return _up(args)
            if args.testbed_command == "status":
                return _status(args)
            return _down(args)
    except (TestbedError, TopologyError, OSError) as exc:  # OSError: one line, not a traceback
        print(f"pktlab testbed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = _INTERRUPTED.get(args.testbed_command, "interrupted")
        # up (recorded by this process) if the interrupt came once up() had returned
        mine = list_testbeds() if args.testbed_command == "up" else []
        made = next((i.name for i in mine if i.pid == os.getpid()), None)
        if made:
            what = f"interrupted; testbed {made} is up (pktlab testbed down {made} removes it)"
        print(f"\npktlab testbed: {what}", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pktlab testbed", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
