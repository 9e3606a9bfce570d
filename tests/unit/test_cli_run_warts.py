"""`pktlab run traceroute --warts FILE`: the file is opened before the run, and a file that
cannot be written is one line and exit status 2, as any bad option."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.cli.run import RunError, build_parser
from packetlab.cli.run_measure import open_warts
from packetlab.cli.run_traceroute_trace import write_warts
from packetlab.measure.records_traceroute import Hop, TracerouteResult
from packetlab.measure.warts_format import OBJ_TRACE
from packetlab.measure.warts_read import read_warts


def _args(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["traceroute", *argv])


def test_an_unwritable_file_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"--warts .*/no/such/x.warts: cannot write it: No such"):
        open_warts(_args("--warts", str(tmp_path / "no/such/x.warts"), "192.0.2.1"))


def test_mda_writes_a_tracelb_with_the_runs_options(tmp_path: Path) -> None:
    # (--mda was refused before: "--warts writes a trace: not with --mda")
    from packetlab.cli.run_traceroute_trace import write_tracelb_warts
    from packetlab.measure.mda import MdaHop, MdaResult
    from packetlab.measure.warts_format import OBJ_TRACELB

    path = tmp_path / "lb.warts"
    args = _args("--mda", "-f", "2", "-w", "3", "--warts", str(path), "192.0.2.1")
    out = open_warts(args)
    assert out is not None
    hop = MdaHop(2, ("192.0.2.1",), 1)
    with out:
        write_tracelb_warts(out, args, MdaResult("192.0.2.1", "192.0.2.9", "udp-paris", 0.95,
                                                 (hop,), 1, True))  # fmt: skip
    (lb,) = [o for o in read_warts(path.read_bytes()) if o.kind == OBJ_TRACELB]
    assert (lb.fields[10], lb.fields[11], lb.fields[16], lb.fields[17]) == (2, 3, 1, 0)


def test_no_option_no_file() -> None:
    assert open_warts(_args("192.0.2.1")) is None


def test_write_warts_takes_the_runs_options(tmp_path: Path) -> None:
    args = _args("-q", "2", "-f", "2", "-w", "3", "--sport", "4000", "-p", "40000", "192.0.2.1")
    hop = Hop(2, "192.0.2.1", 5.0, "dest-unreachable", 3, 10**18, 10**18 + 5000, 60)
    result = TracerouteResult(dst="192.0.2.1", hops=(hop,), src="192.0.2.9", max_ttl=30)
    path = tmp_path / "t.warts"
    with path.open("wb") as out:
        write_warts(out, args, result, interrupted=False)
    (trace,) = [o for o in read_warts(path.read_bytes()) if o.kind == OBJ_TRACE]
    f = trace.fields
    assert (f[9], f[13], f[14], f[15], f[17]) == (2, 4000, 40000, 2, 3)


def test_the_file_keeps_its_content_until_the_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "t.warts"
    path.write_bytes(b"an earlier run's trace")
    out = open_warts(_args("--warts", str(path), "192.0.2.1"))
    assert out is not None
    with out:
        assert path.read_bytes() == b"an earlier run's trace"  # (a failed run leaves it)
        hop = Hop(1, "192.0.2.1", 5.0, "dest-unreachable", 3, 10**18, 10**18 + 5000, 60)
        result = TracerouteResult(dst="192.0.2.1", hops=(hop,), src="192.0.2.9", max_ttl=30)
        write_warts(out, _args("192.0.2.1"), result, interrupted=False)
    assert [o.kind for o in read_warts(path.read_bytes())] == [1, 2, OBJ_TRACE, 4]
