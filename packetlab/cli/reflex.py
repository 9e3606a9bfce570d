"""`pktlab reflex`: build, digest and try out reflexes (docs/reflexes.md); the monitor
toolkit (`packetlab.cli.monitor`) with the reflex ABI."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any

from packetlab.cli.monitor import (
    MessageLines,
    Toolkit,
    VmemHost,
    add_toolkit_arguments,
    emit,
    fail,
    load,
    named,
)
from packetlab.numtext import float_in

MAX_TIMER_RUNS = 10_000  # reflex_timer runs in one test (a reflex may re-arm it forever)

_DESCRIPTION = """\
Tools for PacketLab reflexes: WebAssembly programs an experiment attaches to an endpoint
socket, run at the endpoint on every packet the socket receives (docs/reflexes.md)."""

_EPILOG = """\
examples:
  pktlab reflex build examples/reflexes/udp_responder.c -o udp_responder.wasm
  pktlab reflex digest udp_responder.wasm
  pktlab reflex test udp_responder.wasm --messages examples/reflexes/packets.jsonl
  pktlab init --reflex udp_responder.wasm   # allow it in the demo certificates
  pktlab ppks sign exppriv ... --reflex-digest HEX

C sources include pktlab_reflex.h (pktlab reflex build --print-include shows where);
clang and lld: apt-get install clang lld."""

_TEST_EPILOG = """\
input: JSON lines as `pktlab decode` prints them; each ndata of the reflex's socket
(--sktid, else the first ndata's) is a packet it receives (other lines are passed over).
Output: one JSON line per packet with "deliver" (the packet goes on to the controller)
or "consume", the sends the reflex asked for (which the endpoint then checks as nsends),
"refused": the sends and reports answered -1 (past 64 sends or 16 reports a call, bad
arguments; an endpoint counts them in the block's REFUSED), its reports, the timer it
armed ("timer": endpoint time in ns), or the crash that would detach it.
Timers run on a simulated endpoint clock: reflex_now() is the attach time (the first
ndata's), then each packet's time; an armed timer runs ({"reflex_timer": NOW, ...}, with
what it sent) before the first packet at or after its time, and after the last packet
for --timers-ms more; --timer-late-us runs each one late, as a busy endpoint may."""


def _compile(wasm: bytes) -> Any:
    from packetlab.reflex.runtime import compile_reflex

    return compile_reflex(wasm)


def _test_options(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--params", default="", metavar="HEX", help="the parameters to attach with (hex)"
    )
    t.add_argument(
        "--sktid",
        type=_sktid,
        metavar="N",
        help="the socket the reflex is attached to: reflex_init gets it, and only this "
        "socket's ndata reach the reflex, as at an endpoint [the first ndata's]",
    )
    t.add_argument(
        "--timers-ms",
        type=_millis,
        default=1000.0,
        metavar="MS",
        help="after the last packet, run the timers the reflex arms over this much more "
        "endpoint time (the clock is simulated: no waiting) [1000]",
    )
    t.add_argument(
        "--timer-late-us",
        type=_millis,
        default=0.0,
        metavar="US",
        help="run every timer this many microseconds after its time, as a busy endpoint "
        "does (reflex_timer's now says when it ran) [0]",
    )


def _millis(text: str) -> float:
    ms = float_in(text, 0, 86_400_000)
    if ms is None:
        raise argparse.ArgumentTypeError(f"{text} is not a time (0 to 86400000)")
    return ms


def _sktid(text: str) -> int:
    n = int(text)
    if not 0 <= n < 256:
        raise argparse.ArgumentTypeError(f"{text} is not a socket id (0 to 255)")
    return n


def _attached_to(sktid: int | None, lines: Iterator[tuple[int, Any]]) -> tuple[int, int, list[Any]]:
    """The reflex's socket (`sktid`, or the first ndata's; 0 when there is none) and the
    clock at its attach (the first ndata's time, else 0); the lines read to find them
    are handed back."""
    from packetlab.wire.messages import Ndata

    ahead: list[tuple[int, Any]] = []
    for item in lines:
        ahead.append(item)
        msg = item[1]
        if isinstance(msg, Ndata) and sktid in (None, msg.sktid):
            return msg.sktid, msg.time, ahead
    return (0 if sktid is None else sktid), 0, ahead


class _Host(VmemHost):
    """The endpoint as `reflex test` plays it: a simulated clock (``reflex_now``) that
    the packets' times move, and the timer the reflex armed."""

    def __init__(self) -> None:
        super().__init__(lambda: self.clock)  # vmem's TIME is the same clock
        self.clock = 0  # ns, endpoint time
        self.armed: int | None = None  # when reflex_timer runs next

    def now(self) -> int:
        return self.clock

    def timer_at(self, instance: Any, when_ns: int) -> None:
        instance.timer_request = when_ns


class _Timers:
    """Runs `reflex_timer` as the endpoint's scheduler would, on the simulated clock."""

    def __init__(self, inst: Any, host: _Host, out: Any, late_ns: int) -> None:
        self.inst = inst
        self.host = host
        self.out = out
        self.late_ns = late_ns
        self.runs = 0
        self.stopped = False

    def run_until(self, until: int) -> bool:
        """Every armed timer due at or before `until`, in time order (a timer re-armed
        runs again); False when one crashed the reflex (the endpoint detaches it)."""
        from packetlab.monitor.runtime import MonitorCrash

        host, inst = self.host, self.inst
        while host.armed is not None and host.armed <= until:
            if self.runs >= MAX_TIMER_RUNS:
                if not self.stopped:  # said once: later packets may re-arm it again
                    why = (
                        f"stopped after {MAX_TIMER_RUNS} runs of reflex_timer (an endpoint goes on)"
                    )
                    emit(self.out, {"timers": why})
                    self.stopped = True
                host.armed = None
                return True
            self.runs += 1
            host.clock = max(host.clock, host.armed + self.late_ns)
            host.armed = None
            row: dict[str, Any] = {"reflex_timer": host.clock}
            if not inst.has("reflex_timer"):
                emit(self.out, row | {"verdict": "not exported: the endpoint runs nothing"})
                continue
            try:
                inst.call("reflex_timer", (host.clock, inst.ctx))
            except MonitorCrash as e:
                emit(self.out, row | {"verdict": "crash (detached)", "why": str(e)})
                return False
            emit(self.out, row | _effects(inst, host))
        return True


def _test(args: argparse.Namespace) -> int:
    from packetlab.monitor.runtime import Box, MonitorCrash, Settings
    from packetlab.reflex import abi
    from packetlab.reflex.runtime import ReflexInstance
    from packetlab.wire.messages import Ndata

    compiled = named(args.file, _compile, load(args.file))
    try:
        params = bytes.fromhex(args.params)
    except ValueError:
        return fail(args, "--params must be hex", 2)
    if len(params) > abi.PARAMS_LEN:
        return fail(args, f"--params: at most {abi.PARAMS_LEN} bytes", 2)
    box = Box(Settings(args.deadline_ms, args.memory_max, args.debug, False))
    out = sys.stdout
    host = _Host()
    try:
        inst = named(args.file, ReflexInstance, box, compiled, host)
        inst.setup(b"")
        inst.set_params(0, params)
        timers = _Timers(inst, host, out, round(args.timer_late_us * 1000))
        messages = MessageLines(args.messages)
        with messages:
            lines = iter(messages)
            # The endpoint calls reflex_init with the socket's id (it was 0 here, so a
            # reflex that keeps it sent on socket 0 here and on its own socket there).
            sktid, host.clock, ahead = _attached_to(args.sktid, lines)
            try:
                rv = inst.call("reflex_init", (inst.ctx, sktid))
            except MonitorCrash as e:
                emit(out, {"init": "crash", "why": str(e)})
                return 1
            if rv != 0:  # the endpoint drops it: nothing init asked for is done
                why = "an endpoint answers the rattach EUNKFAULT and runs nothing it asked for"
                emit(out, {"init": f"refused ({rv})", "why": why})
                return 1
            emit(out, {"init": "ok", **_effects(inst, host)})
            for lineno, msg in itertools.chain(ahead, lines):
                if not isinstance(msg, Ndata):
                    emit(out, {"line": lineno, "type": msg.NAME, "verdict": "not a packet"})
                    continue
                # the endpoint's clock passed this packet's RX stamp: timers due run first
                if not timers.run_until(msg.time):
                    return 1
                host.clock = max(host.clock, msg.time)
                if msg.sktid != sktid:
                    verdict = f"another socket's (the reflex is on socket {sktid})"
                    emit(out, {"line": lineno, "verdict": verdict})
                    continue
                if len(msg.data) > abi.PKT_BUF:  # a traceback before: no endpoint reads one
                    print(
                        f"{args.messages}:{lineno}: an ndata of {len(msg.data)} bytes: "
                        f"endpoints read at most {abi.PKT_BUF} (NDATA_MAX)",
                        file=sys.stderr,
                    )
                    messages.bad += 1
                    continue
                row: dict[str, Any] = {"line": lineno}
                try:
                    flags = inst.packet(
                        msg.sktid, msg.family, msg.proto, msg.time, msg.raddr, msg.rport,
                        msg.data,
                    )  # fmt: skip
                except MonitorCrash as e:
                    row |= {"verdict": "crash (detached)", "why": str(e)}
                    emit(out, row)
                    return 1
                row["verdict"] = "deliver" if flags & abi.PASS else "consume"
                emit(out, row | _effects(inst, host))
        # then the timers still armed, over --timers-ms of endpoint time
        if not timers.run_until(host.clock + round(args.timers_ms * 1e6)):
            return 1
        emit(out, {"state": inst.ctx_bytes(abi.PARAMS_LEN, abi.STATE_LEN).rstrip(b"\0").hex()})
        return 2 if messages.bad else 0
    finally:
        box.close()


def _effects(inst: Any, host: _Host) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if inst.refused:  # reflex_send/reflex_report answered -1: past the per-call bounds
        row["refused"] = inst.refused
        inst.refused = 0
    if inst.emits:
        sends = []
        for e in inst.emits:
            send: dict[str, Any] = {"sktid": e.sktid, "data": e.data.hex()}
            if e.raddr is not None:
                send |= {"raddr": str(ip_address(e.raddr)), "rport": e.rport}
            sends.append(send | {"time": e.time, "tag": e.tag})
        row["sends"] = sends
        inst.emits = []
    if inst.reports:
        row["reports"] = [r.hex() for r in inst.reports]
        inst.reports = []
    if inst.timer_request is not None:  # replaces an armed timer, as at the endpoint
        row["timer"] = host.armed = inst.timer_request
        inst.timer_request = None
    return row


REFLEX = Toolkit(
    name="reflex",
    header="pktlab_reflex.h",
    description=_DESCRIPTION,
    epilog=_EPILOG,
    test_help="run a reflex on packets outside any endpoint and print what it does",
    test_epilog=_TEST_EPILOG,
    compile=_compile,
    add_test_options=_test_options,
    test=_test,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_toolkit_arguments(parser, REFLEX)


def run(args: argparse.Namespace) -> int:
    from packetlab.cli.monitor import run as run_toolkit

    return run_toolkit(args)
