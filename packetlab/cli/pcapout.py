"""``--pcap FILE`` of the ``pktlab run`` measurements: one option, one recorder, one save."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packetlab.measure.pcap import PcapRecorder

HELP = (
    "also write the packets the endpoint sent and received, at the endpoint's times, as a "
    "pcap file (ns stamps, raw IP: tcpdump -r FILE, Wireshark; docs/wire.md)"
)


def add_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pcap", metavar="FILE", help=HELP)


def recorder_for(args: argparse.Namespace) -> PcapRecorder | None:
    """A recorder for --pcap FILE, the file made now with its header (as tcpdump -w): one
    that cannot be written is a one-line error before the measurement, not an errno after
    it, and a run stopped before its end (killed, Ctrl-C twice) leaves a pcap with no
    packets that tcpdump reads, not an empty file it refuses."""
    if not getattr(args, "pcap", None):
        return None
    from packetlab.cli.run import RunError
    from packetlab.measure.pcap import PcapRecorder, pcap_header

    if args.pcap == "-":  # tcpdump -w -'s stdout: ours carries the command's own output
        raise RunError(
            "--pcap -: standard output carries the command's output; give a file name "
            "(tcpdump -r FILE reads it)"
        )
    try:
        with open(args.pcap, "wb") as f:
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # not twice down a FIFO
                f.write(pcap_header())
    except OSError as e:
        raise RunError(f"--pcap {args.pcap}: cannot write it: {e.strerror or e}") from None

    return PcapRecorder()


def recording(
    args: argparse.Namespace,
    recorder: PcapRecorder | None,
    run: Callable[[Any], Coroutine[Any, Any, None]],
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """`run`, then the pcap written, also when the run failed or was stopped half way."""
    if recorder is None:
        return run

    async def wrapped(session: Any) -> None:
        try:
            await run(session)
        finally:
            n = recorder.save(args.pcap)
            print(f"wrote {n} packets to {args.pcap}", file=sys.stderr)

    return wrapped
