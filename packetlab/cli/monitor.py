"""`pktlab monitor`: build, digest and try out WebAssembly monitors (docs/monitors.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

_DESCRIPTION = """\
Tools for PacketLab monitors (PROTOCOL.md §8): WebAssembly programs that an endpoint runs
on every request and every received packet of an experiment."""

_EPILOG = """\
examples:
  pktlab monitor build examples/monitors/tcp_only.c -o tcp_only.wasm
  pktlab monitor digest tcp_only.wasm
  pktlab monitor test tcp_only.wasm --messages examples/monitors/messages.jsonl
  pktlab init --monitor tcp_only.wasm     # require it in the demo certificates
  twistd pktendpoint -m tcp_only.wasm ... # or run it as an operator (aux) monitor

C sources are built with clang --target=wasm32 (Debian: apt-get install clang lld)
against the header we ship (pktlab monitor build --print-include shows where it is);
WAT sources with wasmtime's assembler. A source written for the reference's pktmon
(#include "monitor_helper.h" or "pktlab.h") builds unchanged (docs/monitors.md)."""

_TEST_EPILOG = """\
input: JSON lines as `pktlab decode` prints them ({"type": "nsend", ...}); nopen, nclose,
nsend, ncap and ndata are checked, other lines are passed over. Output: one JSON line per
message with the monitor's rv, the verdict, and the endpoint's answer
({"type": "result", "errid": 18, "monindx": 0, "monerrid": 5}, an nblock, "drop", or
"pass" when the endpoint would go on to its own checks). CURPKT_DATA is the message's
data (nsend/ndata) or filter (ncap); the rest of the vmem map is that of a default
endpoint with no socket open. The persistent memory starts as zeros, or from --pm FILE
(and is written back there at the end)."""


@dataclass(frozen=True)
class Toolkit:
    """What differs between `pktlab monitor` and `pktlab reflex` (one toolkit, two kinds
    of program): names, texts, the endpoint's load checks, and the `test` runner."""

    name: str
    header: str
    description: str
    epilog: str
    test_help: str
    test_epilog: str
    compile: Callable[[bytes], Any]
    add_test_options: Callable[[argparse.ArgumentParser], None]
    test: Callable[[argparse.Namespace], int]


def add_toolkit_arguments(parser: argparse.ArgumentParser, kit: Toolkit) -> None:
    parser.description = kit.description
    parser.epilog = kit.epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    b = sub.add_parser("build", help=f"build a {kit.name} from C or WAT and print its digest")
    b.add_argument("source", type=Path, nargs="?", help="SRC.c or SRC.wat")
    b.add_argument("-o", "--output", type=Path, help="the .wasm to write")
    b.add_argument("--cflag", action="append", default=[], help="extra clang flag (repeatable)")
    b.add_argument(
        "--print-include", action="store_true", help=f"print the directory of {kit.header}"
    )

    d = sub.add_parser("digest", help="print SHA-256(0x01 || wasm), the certificate digest")
    d.add_argument("files", type=Path, nargs="+", metavar="FILE", help=".wasm module(s)")

    t = sub.add_parser(
        "test",
        help=kit.test_help,
        epilog=kit.test_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("file", type=Path, metavar="FILE", help=".wasm (or .c/.wat, built first)")
    t.add_argument("--messages", default="-", metavar="JSONL", help="messages (default: stdin)")
    t.add_argument(
        "--deadline-ms",
        type=_ranged(1, 60000),
        default=100,
        help="MonitorDeadlineMillsec, 1 to 60000 [100]",
    )
    t.add_argument(
        "--memory-max",
        type=_ranged(131072, 0xFFFFFFFF),
        default=1048576,
        help="MonitorMemoryMax in bytes, at least 131072 (the 2-page host memory) [1048576]",
    )
    t.add_argument("--debug", action="store_true", help="as MonitorEnableDebug 1")
    kit.add_test_options(t)
    parser.set_defaults(_toolkit=kit)


def _ranged(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi], as the endpoint's config key takes it
    (a negative deadline used to fail every call as "deadline of -1 ms exceeded")."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{n} is not in {lo}..{hi}")
        return n

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_toolkit_arguments(parser, MONITOR)


def _monitor_test_options(t: argparse.ArgumentParser) -> None:
    t.add_argument("--pm", type=Path, metavar="FILE", help="persistent memory file (256 bytes)")
    t.add_argument("--report-crash", action="store_true", help="as MonitorReportCrash 1")


def run(args: argparse.Namespace) -> int:
    from packetlab.monitor.build import BuildError
    from packetlab.monitor.runtime import MonitorLoadError

    kit: Toolkit = getattr(args, "_toolkit", MONITOR)
    try:
        if args.action == "build":
            return _build(args, kit)
        if args.action == "digest":
            return _digest(args)
        return kit.test(args)
    except BrokenPipeError:  # `| head`: quietly, 141, as the run commands (was "error:
        from packetlab.cli.exits import EXIT_BROKEN_PIPE  # [Errno 32] Broken pipe", 1)
        from packetlab.cli.interrupt import stdout_gone

        stdout_gone()
        return EXIT_BROKEN_PIPE
    except (BuildError, MonitorLoadError, OSError) as e:
        words = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else e
        return fail(args, str(words), 1)


def fail(args: argparse.Namespace, message: str, status: int) -> int:
    """One error line that names the command, as argparse's own (`pktlab monitor digest:
    error: x.wasm: No such file or directory`); `status` back."""
    kit: Toolkit = getattr(args, "_toolkit", MONITOR)
    print(f"pktlab {kit.name} {args.action}: error: {message}", file=sys.stderr)
    return status


def load(path: Path) -> bytes:
    from packetlab.monitor.build import build

    if path.suffix.lower() in (".c", ".wat"):
        return build(path)
    return path.read_bytes()


def _build(args: argparse.Namespace, kit: Toolkit) -> int:
    from packetlab.monitor import abi
    from packetlab.monitor.build import INCLUDE_DIR, build, write_module

    if args.print_include:
        print(INCLUDE_DIR)
        return 0
    if args.source is None or args.output is None:
        return fail(args, "build needs SRC and -o OUT.wasm", 2)
    wasm = build(args.source, tuple(args.cflag))
    compiled = named(args.source, kit.compile, wasm)  # the endpoint's own load checks
    write_module(wasm, args.output)
    for note in compiled.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{abi.digest(wasm).hex()}  {args.output}")
    return 0


_NO_MAGIC = ": it does not begin with the binary magic \\0asm"


def _digest(args: argparse.Namespace) -> int:
    """The digests, once every file is known to be a module: a C source or any other
    file was digested as it was (`pktlab reflex digest prog.c`: a digest no certificate
    built from it ever matches, the attach refused later with ECRTBADHDAT), as `init
    --reflex prog.c` was before session 21 (session 25, odds25)."""
    from packetlab.monitor import abi

    kit: Toolkit = getattr(args, "_toolkit", MONITOR)
    modules = [(path, path.read_bytes()) for path in args.files]
    for path, data in modules:
        if not data.startswith(b"\0asm"):
            if path.suffix in (".c", ".wat"):
                hint = f" (build it first: pktlab {kit.name} build {path} -o OUT.wasm)"
            else:  # `build` takes sources only: say what is wrong with the file
                hint = ": it is empty (0 bytes)" if not data else _NO_MAGIC
            return fail(args, f"{path}: not a WebAssembly module{hint}", 1)
    for path, data in modules:
        print(f"{abi.digest(data).hex()}  {path}")
    return 0


class VmemHost:
    """The vmem of a default endpoint with no socket open; debug lines to stderr."""

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        """`clock`: vmem's TIME (ns), the wall clock unless given."""
        from packetlab.endpoint.budget import Budget
        from packetlab.endpoint.clock import realtime_ns
        from packetlab.endpoint.config import EndpointConfig
        from packetlab.endpoint.memory import VirtualMemory, system_image

        cfg = EndpointConfig()
        self.memory = VirtualMemory(
            system_image(cfg), [None] * 256, Budget(cfg.buf_max), clock or realtime_ns,
            lambda s, n: None, lambda s, m: None,
        )  # fmt: skip
        self.flushes = 0

    def read_vmem(self, addr: int, length: int) -> bytes:
        return self.memory.read(addr, length)

    def flush(self, instance: Any) -> None:
        self.flushes += 1

    def debug(self, instance: Any, text: str) -> None:
        print(f"debug: {text}", file=sys.stderr)


def _test(args: argparse.Namespace) -> int:
    from packetlab.monitor import abi
    from packetlab.monitor.calls import KIND, check_args
    from packetlab.monitor.runtime import (
        Box,
        MonitorCrash,
        MonitorLoadError,
        Settings,
        compile_monitor,
    )
    from packetlab.wire.jsonform import message_to_json
    from packetlab.wire.messages import Nblock, Ndata, Result

    compiled = named(args.file, compile_monitor, load(args.file))
    for note in compiled.notes:
        print(f"note: {note}", file=sys.stderr)
    settings = Settings(args.deadline_ms, args.memory_max, args.debug, args.report_crash)
    pm = args.pm.read_bytes() if args.pm is not None and args.pm.exists() else b""
    if len(pm) > abi.PM_LEN:  # it would be cut, and the file overwritten with the cut
        raise MonitorLoadError(
            f"{args.pm}: {len(pm)} bytes; a persistent memory holds {abi.PM_LEN}"
        )
    messages = MessageLines(args.messages)  # a missing file fails before the monitor runs
    box = Box(settings)
    host = VmemHost()
    out = sys.stdout
    try:
        inst = named(args.file, box.instantiate, compiled, host, pm)
        try:
            info = inst.initialize()
        except MonitorCrash as e:
            emit(out, {"initialize": "crash", "why": str(e), "answer": message_to_json(
                Result(int(_status("ECTLMONUKN")), 0))})  # fmt: skip
            return 1
        emit(out, {"initialize": "ok", "linfo": info.hex()})
        with messages:
            for lineno, msg in messages:
                if type(msg) not in KIND:
                    emit(out, {"line": lineno, "type": msg.NAME, "verdict": "not checked"})
                    continue
                kind, cargs, curpkt = check_args(inst, msg)
                before = inst.crashes
                rv = inst.check(kind, cargs, curpkt)
                row: dict[str, Any] = {"line": lineno, "type": kind, "rv": rv}
                crashed = inst.crashes > before or rv >= abi.MONITOR_CRASH
                row["verdict"] = (
                    "crash" if crashed else "allow" if rv == 0
                    else "reject" if rv > 0 else "reject (reason hidden)"
                )  # fmt: skip
                if crashed:
                    row["why"] = inst.last_crash or f"rv {rv} >= 65535"
                if isinstance(msg, Ndata):
                    if rv == 0:
                        row["answer"] = "deliver"
                    elif crashed and not settings.report_crash:
                        row["answer"] = "drop"
                    else:
                        code = 0 if crashed else rv & 0xFFFF
                        row["answer"] = message_to_json(
                            Nblock(msg.sktid, msg.family, msg.proto, code, msg.time)
                        )
                elif rv == 0:
                    row["answer"] = "pass"
                elif crashed and settings.report_crash:
                    row["answer"] = message_to_json(Result(int(_status("ECTLMONUKN")), 0))
                else:
                    code = rv if 0 < rv < abi.MONITOR_CRASH and not crashed else 0
                    row["answer"] = message_to_json(Result(int(_status("ECTLMONREJ")), 0, code))
                emit(out, row)
        if args.pm is not None:
            args.pm.write_bytes(inst.persistent())
        return 2 if messages.bad else 0
    finally:
        messages.close()
        box.close()


def named(path: Path, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, a `MonitorLoadError` from it naming `path` (the one-line error says
    which file, as for a file that cannot be read)."""
    from packetlab.monitor.abi import MonitorLoadError
    from packetlab.monitor.load import NoMemoryImport

    try:
        return fn(*args)
    except NoMemoryImport:  # the fix in the source's language
        raise MonitorLoadError(f"{path}: {NoMemoryImport(path.suffix)}") from None
    except MonitorLoadError as e:
        raise MonitorLoadError(f"{path}: {e}", decode=e.decode) from None


def _status(name: str) -> int:
    from packetlab.wire.constants import Status

    return int(Status[name])


class MessageLines:
    """The messages of a `test` input file (`-`: stdin), one JSON message per line; blank
    and `#` lines skipped. A line that is no message is reported on stderr with its number
    and counted in `bad`, and the rest still run (both toolkits' `test` read this way)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bad = 0
        self._src: IO[str] = sys.stdin if path == "-" else open(path)  # noqa: SIM115

    def __enter__(self) -> MessageLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._src is not sys.stdin:
            self._src.close()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        from packetlab.wire.errors import WireError
        from packetlab.wire.jsonform import message_from_json

        for lineno, line in enumerate(self._src, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                yield lineno, message_from_json(json.loads(text))
            except (ValueError, WireError) as e:
                print(f"{self.path}:{lineno}: {e}", file=sys.stderr)
                self.bad += 1


def emit(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _compile_monitor(wasm: bytes) -> Any:
    from packetlab.monitor.runtime import compile_monitor

    return compile_monitor(wasm)


MONITOR = Toolkit(
    name="monitor",
    header="pktlab_monitor.h",
    description=_DESCRIPTION,
    epilog=_EPILOG,
    test_help="run a monitor on messages outside any endpoint and print each verdict",
    test_epilog=_TEST_EPILOG,
    compile=_compile_monitor,
    add_test_options=_monitor_test_options,
    test=_test,
)
