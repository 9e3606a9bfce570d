"""Session 30 (alias30): the odd responders beside scamper's dealias (the testbed's
`ipid_responder` answering some probes only, rate-limited, duplicating) and the address
line's count of samples."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from packetlab.cli import run_alias
from packetlab.testbed.ipid_responder import Odd

A, B, C = (ipaddress.IPv4Address(f"10.77.2.{h}").packed for h in (12, 14, 16))


def test_the_responders_odd_ways() -> None:
    odd = Odd(every={A: 2}, rate={B: 20}, duplicate={C})
    assert [odd.copies(A, 0.0) for _ in range(6)] == [0, 1, 0, 1, 0, 1]
    # 20 a second: a burst of 20, then one every 50 ms
    assert sum(odd.copies(B, 0.0) for _ in range(30)) == 20
    assert odd.copies(B, 0.01) == 0 and odd.copies(B, 0.06) == 1
    assert [odd.copies(C, 0.0) for _ in range(3)] == [2, 2, 2]
    assert Odd().copies(A, 0.0) == 1


def test_one_sample_is_said_in_the_singular() -> None:
    # a rate-limited router's one answer: "1 samples from 1 endpoint(s)" before session 30
    def line(n: int) -> str | None:
        return run_alias.row({"type": "ipid-series", "addr": "10.77.2.18", "samples": n,
                              "endpoints": 1, "usable": False, "ids_per_s": None})  # fmt: skip

    assert line(1) == "# 10.77.2.18: 1 sample from 1 endpoint(s), no usable counter"
    assert line(2) == "# 10.77.2.18: 2 samples from 1 endpoint(s), no usable counter"


def test_scampers_f_fudge_is_named_where_it_was_meant(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scamper dealias's `-f 200` is its fudge; ours `-f` is the list file: the error
    # said only "No such file or directory" (session 30: and that the fudge is not ours)
    from packetlab.cli.run import RunError
    from packetlab.cli.run_alias import COMMAND, _targets
    from packetlab.cli.run_command import parse_args

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError) as e:
        _targets(parse_args(COMMAND, ["-f", "200", "10.0.0.1", "10.0.0.2"]))
    assert str(e.value) == (
        "--file 200: cannot read it: No such file or directory (scamper's -f fudge is not "
        "offered: --file lists addresses)"
    )
    with pytest.raises(RunError) as e:  # (a file name: as before)
        _targets(parse_args(COMMAND, ["-f", "list.txt"]))
    assert str(e.value) == "--file list.txt: cannot read it: No such file or directory"


def test_scampers_O_words() -> None:
    # scamper dealias's `-O shuffle` (radargun) was `unrecognized arguments: -O`, exit 2;
    # now --shuffle; inseq and nobs (ally's) refused in one line with the reason
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_alias import experiment
    from packetlab.cli.run_command import Progress

    def args(*argv: str) -> Any:
        return build_parser().parse_args(["alias", *argv, "10.0.0.1", "10.0.0.2"])

    for word in ("shuffle", "SHUFFLE"):
        got = args("-O", word)
        experiment(got, lambda r: None, Progress())  # (checks only: nothing probed yet)
        assert got.shuffle is True
    plain = args()
    experiment(plain, lambda r: None, Progress())
    assert plain.shuffle is False
    for word, said in (
        ("inseq", "-O inseq: not offered (ally's IDs strictly in sequence"),
        ("nobs", "-O nobs: not offered (ours takes a counter byte-swapped only when"),
        ("fast", "-O fast: scamper dealias's options are shuffle, inseq, nobs"),
    ):
        with pytest.raises(RunError) as e:
            experiment(args("-O", word), lambda r: None, Progress())
        assert str(e.value).startswith(said), e.value


def test_scampers_m_methods() -> None:
    # scamper's `dealias -m METHOD ...` was `unrecognized arguments: -m`, exit 2; now
    # radargun and ally are --single-stage, mercator one address, prefixscan `A B/LEN`;
    # bump (and midarest, midardisc: not in scamper 20211212) refused with the reason
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_alias import experiment
    from packetlab.cli.run_command import Progress

    def checked(*argv: str) -> Any:
        args = build_parser().parse_args(["alias", *argv])
        experiment(args, lambda r: None, Progress())  # (checks only: nothing probed yet)
        return args

    for m in ("radargun", "ally", "RADARGUN"):
        assert checked("-m", m, "10.0.0.1", "10.0.0.2").single_stage is True
    assert checked("10.0.0.1", "10.0.0.2").single_stage is False
    scan = checked("-m", "prefixscan", "10.0.0.1", "10.0.0.8/30")
    assert scan.prefixscan == "10.0.0.8/30" and scan.targets[0] == "10.0.0.1"
    assert scan.targets[1:] == ["10.0.0.9", "10.0.0.10", "10.0.0.11"]  # (scamper's order)
    assert checked("-m", "mercator", "10.0.0.1").targets == ["10.0.0.1"]
    for argv, said in (
        (["-m", "bump", "10.0.0.1", "10.0.0.2"], "-m bump: not offered (another algorithm"),
        (["-m", "midarest", "10.0.0.1", "10.0.0.2"], "-m midarest: not offered (not in "),
        (["-m", "mercator", "10.0.0.1", "10.0.0.2"], "-m mercator: give one address"),
        (["-m", "prefixscan", "10.0.0.1"], "-m prefixscan: give A B/LEN"),
        (["-m", "ally", "10.0.0.1", "10.0.0.2", "10.0.0.3"], "-m ally: give two addresses"),
        (["-m", "x", "10.0.0.1", "10.0.0.2"], "-m x: scamper dealias's methods are ally, "),
    ):
        with pytest.raises(RunError) as e:
            checked(*argv)
        assert str(e.value).startswith(said), e.value


def test_the_responder_answers_echo_from_another_address() -> None:
    # --echo-from ADDR=SRC: ADDR's echo reply from SRC (the testbed's "ELSE" router)
    import socket
    import struct

    from packetlab.testbed.ipid_responder import Counter, answer
    from packetlab.testbed.probe import inet_checksum

    me, there, other = (ipaddress.IPv4Address(a).packed for a in ("10.77.1.9", "10.77.2.20",
                                                                    "10.77.2.21"))  # fmt: skip
    icmp = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1])
    icmp = icmp[:2] + struct.pack("!H", inet_checksum(icmp)) + icmp[4:]
    probe = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, socket.IPPROTO_ICMP, 0, me,
                        there) + icmp  # fmt: skip
    counters = {there: Counter(0.0, 100)}
    methods = {there: {"icmp-echo"}}
    plain = answer(probe, counters, methods, 33435)
    moved = answer(probe, counters, methods, 33435, echo_from={there: other})
    assert plain is not None and plain[12:16] == there and plain[20] == 0
    assert moved is not None and moved[12:16] == other and moved[16:20] == me
