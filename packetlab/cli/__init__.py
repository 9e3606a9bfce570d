"""The `pktlab` command: one sub-command per module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("packetlab.cli.decode", "decode PacketLab frames to JSON lines"),
    "encode": ("packetlab.cli.encode", "encode JSON lines to PacketLab frames"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pktlab",
        description="PacketLab tools: wire dissector, experiments, certificates, testbeds.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (modname, helptext) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=modname)
        importlib.import_module(modname).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = importlib.import_module(args._module).run(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
