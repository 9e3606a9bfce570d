"""Numbers of `run throughput`'s iperf3 options read as iperf3 3.12 reads them (session 29,
iperf29): each row is what iperf3 3.12 itself did with the text (its `-d` parameters
against `iperf3 -s`, its exit status and words), and ours must do the same.

Until session 29 -b's BURST and --rcv-timeout were read by Python's int() (`٣` was 3,
`3_00` 300, `3abc` and `500ms` refused), and a unit iperf3 does not know was refused
(`-b 10Q`; native runs at 10 bit/s), `0x10` and `10Mbit` too."""

from __future__ import annotations

import argparse

import pytest

from packetlab.cli import run_throughput as rt
from packetlab.measure import iperf3
from packetlab.measure.throughput_cnum import c_atoi

ERR = None  # iperf3 3.12: `parameter error - invalid burst count (maximum = 1000)`, exit 1

#: -b 10M/TEXT: iperf3 3.12's `burst` in its parameters, or its error
NATIVE_BURST = [
    ("3", 3), ("\u0663", ERR), ("3_00", 3), (" 3", 3), ("3 ", 3), ("+3", 3), ("3abc", 3),
    ("abc", ERR), ("", ERR), ("0x10", ERR), ("010", 10), ("4294967299", 3),
    ("99999999999999999999", ERR), ("3.7", 3), ("1e2", 1), ("-3", ERR), ("1001", ERR),
    ("0", ERR), ("1000", 1000),
]  # fmt: skip


@pytest.mark.parametrize(("text", "native"), NATIVE_BURST, ids=[repr(t) for t, _ in NATIVE_BURST])
def test_burst_count_read_as_iperf3(text: str, native: int | None) -> None:
    if native is ERR:
        with pytest.raises(ValueError, match=r"invalid burst count \(maximum = 1000\)"):
            iperf3.parse_rate_burst(f"10M/{text}")
    else:
        assert iperf3.parse_rate_burst(f"10M/{text}") == (10e6, native)


#: --rcv-timeout TEXT (with -R): iperf3 3.12 ran (the value) or said `parameter error -
#: receive timeout value is incorrect or not in range`, exit 1 (ERR)
NATIVE_RCV_TIMEOUT = [
    ("500", 500), ("\u0663\u0660\u0660", ERR), ("3_00", ERR), ("500ms", 500), (" 500", 500),
    ("+500", 500), ("0x200", ERR), ("abc", ERR), ("", ERR), ("4294967796", 500),
    ("1e3", ERR), ("500.9", 500), ("99", ERR), ("86400000", 86400000), ("86400001", ERR),
    ("-500", ERR), ("99999999999999999999", ERR),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "native"), NATIVE_RCV_TIMEOUT, ids=[repr(t) for t, _ in NATIVE_RCV_TIMEOUT]
)
def test_rcv_timeout_read_as_iperf3(text: str, native: int | None) -> None:
    if native is ERR:
        with pytest.raises(argparse.ArgumentTypeError, match="receive timeout value is incorrect"):
            rt.rcv_timeout(text)
    else:
        assert rt.rcv_timeout(text) == native


def test_atoi_is_glibcs() -> None:
    """strtol's clamp to a long, then the int's 32 bits."""
    assert c_atoi("2147483648") == -(1 << 31) and c_atoi("-2147483649") == (1 << 31) - 1
    assert c_atoi("\t\n\v\f\r 7") == 7 and c_atoi("- 7") == 0 and c_atoi("+-7") == 0
    assert c_atoi("-99999999999999999999") == 0  # LONG_MIN's low 32 bits


REFUSED = None  # iperf3 3.12 has no defined value (see the module's docstring): refused

#: -b TEXT: iperf3 3.12's `bandwidth` (bit/s, absent: 0); its `inf`, `1e400`, `-1`, `nan`,
#: `abc`, `` were 0, 0, 2^64 - 1, 2^63 and 0 (an unset double), all undefined in C
NATIVE_RATE = [
    ("10M", 10e6), ("10Q", 10), ("10m", 10e6), ("10k", 10e3), ("10K", 10e3), ("10g", 10e9),
    ("10t", 10e12), ("10T", 10e12), ("10 M", 10), (" 10M", 10e6), ("10MB", 10e6),
    ("10Mbit", 10e6), ("1.5M", 1.5e6), ("1e3", 1e3), ("1e3K", 1e6), ("0x10", 16),
    ("0x1p4K", 16e3), ("1_0M", 1), ("+5K", 5e3), (".5K", 500), ("5.K", 5e3),
    ("10Mx", 10e6), ("10kQ", 10e3), ("0", 0),
    ("inf", REFUSED), ("nan", REFUSED), ("-1", REFUSED), ("-1M", REFUSED), ("abc", REFUSED),
    ("", REFUSED), ("M", REFUSED), ("\u0663M", REFUSED), ("1e400", REFUSED),
]  # fmt: skip


@pytest.mark.parametrize(("text", "native"), NATIVE_RATE, ids=[repr(t) for t, _ in NATIVE_RATE])
def test_rate_read_as_iperf3(text: str, native: float | None) -> None:
    """-b and --fq-rate (3.12 read them alike: its `fqrate` was `bandwidth` for each)."""
    if native is REFUSED:
        with pytest.raises(argparse.ArgumentTypeError, match="expected a rate like 10M"):
            rt.rate(text, "-b")
        with pytest.raises(ValueError, match="expected a rate like 10M"):
            iperf3.parse_rate_burst(text + "/3")
    else:
        assert rt.rate(text, "-b") == pytest.approx(native)
        assert iperf3.parse_rate_burst(text + "/3") == (pytest.approx(native), 3)


#: -k TEXT: iperf3 3.12's `blockcount` (its unit_atoi, 2^10 steps; -n, -l, --pacing-timer
#: read alike: `num`, `len`, `pacing_timer` were the same numbers where in range)
NATIVE_SIZE = [
    ("10K", 10240), ("10Q", 10), ("10k", 10240), ("10m", 10 << 20), ("1g", 1 << 30),
    ("1t", 1 << 40), ("10 K", 10), ("10KB", 10240), ("1.5K", 1536), ("1e3", 1000),
    ("0x10", 16), ("1_0K", 1), ("10Kx", 10240), ("7.9", 7),
    ("inf", REFUSED), ("nan", REFUSED), ("-1", REFUSED), ("abc", REFUSED), ("", REFUSED),
    ("\u0663K", REFUSED), ("1e400", REFUSED), ("99999999999999999999", REFUSED),
]  # fmt: skip


def test_no_number_says_so() -> None:
    for read in (rt.count, rt.size_of, rt.length):
        with pytest.raises(argparse.ArgumentTypeError, match="got '\u0663K': no number"):
            read("\u0663K")
        with pytest.raises(argparse.ArgumentTypeError, match=r"got 'inf': NaN, infinite or"):
            read("inf")


@pytest.mark.parametrize(("text", "native"), NATIVE_SIZE, ids=[repr(t) for t, _ in NATIVE_SIZE])
def test_size_read_as_iperf3(text: str, native: int | None) -> None:
    if native is REFUSED:
        for read in (rt.count, rt.nbytes, rt.pacing_timer):  # (-l: checked with -u or not)
            with pytest.raises(argparse.ArgumentTypeError):  # (-1: each option's range)
                read(text)
    else:
        assert rt.count(text) == native and rt.size_of(text) == native
        assert rt.length(text) == native


def test_an_ignored_unit_is_warned_once_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """iperf3 3.12 runs `-b 10Q` at 10 bit/s and says nothing; ours the same, and says
    what it read (on stderr: -J's document stays whole). A known unit with text after it
    (`10Mbit`, `25MB`) or a `B` alone is read as meant: no warning."""
    p = argparse.ArgumentParser(exit_on_error=False)
    rt.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-b", "10Q/4", "-n", "10 K", "-l", "1000B"])
    assert (args.bitrate, args.burst, args.bytes, args.length) == (10, 4, 10, 1000)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: -b 10Q: read as 10, as iperf3 3.12 reads it ('Q' after the number is no "
        "unit: only k, m, g or t right after it is)",
        "warning: -n 10 K: read as 10, as iperf3 3.12 reads it (' K' after the number is no "
        "unit: only k, m, g or t right after it is)",
    ]
    args = p.parse_args(["-c", "192.0.2.5", "-b", "10Mbit", "-n", "25MB", "-k", "1KiB"])
    assert (args.bitrate, args.bytes, args.blocks) == (10e6, 25 << 20, 1024)
    assert capsys.readouterr().err == ""


#: iperf3 3.12's reading of its other numbers (its -d parameters: `parallel`, `omit`,
#: `time`; the test run for --connect-timeout and -i): ours the same, but -t keeps its
#: fraction (documented) and no digits at all is refused (native -P `٢` or `0x2`, read 0,
#: hung with no stream)
NATIVE_OTHERS = [
    ("-P", " 2", 2), ("-P", "2.7", 2), ("-P", "2x", 2), ("-P", "+2", 2), ("-P", "\u0662", REFUSED),
    ("-O", "1x", 1), ("-O", "1.5", 1),
    ("-t", "1x", 1.0), ("-t", "1.9", 1.9),
    ("--connect-timeout", "1k", 1024),
    ("--connect-timeout", "500ms", 500 << 20),  # (unit_atoi's m: 2^20 ms, six days)
    ("-i", "0.5s", 0.5), ("-i", "1e0", 1.0), ("-i", "0x1", 1.0),
    ("--cport", "40100x", 40100), ("-p", "5202 ", 5202),
]  # fmt: skip


@pytest.mark.parametrize(
    ("option", "text", "native"), NATIVE_OTHERS, ids=[f"{o}={t!r}" for o, t, _ in NATIVE_OTHERS]
)
def test_other_numbers_read_as_iperf3(option: str, text: str, native: float | None) -> None:
    p = argparse.ArgumentParser(exit_on_error=False)
    rt.configure(p)
    dest = {"-P": "parallel", "-O": "omit", "-t": "time", "-i": "interval", "-p": "port",
            "--connect-timeout": "connect_timeout", "--cport": "cport"}[option]  # fmt: skip
    if native is REFUSED:
        with pytest.raises(argparse.ArgumentError, match=r"expected a whole number.*no number"):
            p.parse_args(["-c", "192.0.2.5", option, text])
    else:
        assert getattr(p.parse_args(["-c", "192.0.2.5", option, text]), dest) == native
