"""``--pcap FILE`` of the ``pktlab run`` measurements: one option, one recorder, one save."""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from packetlab.measure.pcap import PcapRecorder

HELP = (
    "also write the packets the endpoint sent and received, at the endpoint's times, as a "
    "pcap file (ns stamps, raw IP: tcpdump -r FILE, Wireshark; docs/wire.md); - is "
    "standard output, as tcpdump -w - (| tcpdump -r -), the command's own output then on "
    "standard error"
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

    if args.pcap == "-" or _is_stdout(args.pcap):  # tcpdump -w -: text then on stderr
        args._pcap_stream = _stdout_for_pcap()
        return PcapRecorder()
    try:
        f = _open(args.pcap)
        f.write(pcap_header())
        f.flush()
    except OSError as e:
        raise RunError(f"--pcap {args.pcap}: cannot write it: {e.strerror or e}") from None
    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()  # written whole at the end (`PcapRecorder.save`)
    else:  # a FIFO, a device: kept open, as tcpdump -w keeps it (closed, the reader
        args._pcap_stream = f  # took the end of the file and the run hung opening it again)
    return PcapRecorder()


def _open(path: str) -> BinaryIO:
    """`path` opened for writing (a FIFO's kept open: `recorder_for`). A FIFO's open waits
    for a reader, in the reactor's thread, where our SIGTERM and Ctrl-C handlers only ask
    the reactor to stop: it did not end on either (killed with -9). While it waits, the
    default actions end it, as they end `tcpdump -w FIFO`."""
    try:
        fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        fifo = False
    if not fifo or threading.current_thread() is not threading.main_thread():
        return open(path, "wb")
    kept = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return open(path, "wb")
    finally:
        for s, handler in kept.items():
            signal.signal(s, handler)


def _is_stdout(path: str) -> bool:
    """`path` is our standard output (/dev/stdout, /dev/fd/1): written there beside the
    command's text, `| tcpdump -r -` said `unknown file format`. A device other than a
    terminal is shared, not ours: `--pcap /dev/null >/dev/null` moved the text to stderr."""
    try:
        st, out = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    if stat.S_ISCHR(out.st_mode) and not os.isatty(sys.stdout.fileno()):
        return False
    return os.path.samestat(st, out)


def _stdout_for_pcap() -> BinaryIO:
    """Standard output taken for the pcap, as `tcpdump -w -` takes it: the header written
    now (`tcpdump -r -` starts; a run killed later leaves a stream it reads), the
    records at the end; what the command prints goes to standard error from here on (fd 1
    pointed there, so that no line of text lands among the packets)."""
    from packetlab.cli.run import RunError
    from packetlab.measure.pcap import pcap_header

    if os.isatty(sys.stdout.fileno()):  # binary on a terminal: as gzip, refused
        raise RunError(
            "--pcap -: standard output is a terminal; pipe it (| tcpdump -r -) or give a file name"
        )
    sys.stdout.flush()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        out.write(pcap_header())
        out.flush()
    except BrokenPipeError:  # `| true`: quietly 141, as the other output's readers gone
        raise
    except OSError as e:
        raise RunError(f"--pcap -: cannot write standard output: {e.strerror or e}") from None
    return out


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
            stream: BinaryIO | None = getattr(args, "_pcap_stream", None)
            if stream is None:
                n = recorder.save(args.pcap)
                print(f"wrote {n} packets to {args.pcap}", file=sys.stderr)
            else:
                with stream:
                    n = recorder.write(stream, header=False)
                where = "standard output" if args.pcap == "-" else args.pcap
                print(f"wrote {n} packets to {where}", file=sys.stderr)

    return wrapped
