"""Numbers on iperf3 3.12's command line, read as its C code reads them.

iperf3 reads a count (`-b RATE/BURST`'s BURST, `--rcv-timeout`) with glibc's `atoi` and a
size or a rate (`-b`, `--fq-rate`, `-n`, `-k`, `-l`, `--pacing-timer`) with its
`unit_atof`/`unit_atoi`: `sscanf(s, "%lf%c", &n, &suffix)`, then the suffix scaled if it
is one of `kKmMgGtT` and ignored if not (`-b 10Q` is 10 bit/s, `-n 10 K` 10 bytes).
Python's `int()`/`float()` read other things: `٣` (an Arabic-Indic digit) and `3_00`
as numbers, `0x10` and `10M/3abc` not at all. Here the C rules, checked against iperf3 3.12
itself (tests/unit/measure/test_throughput_cnum.py has its answers).

Where iperf3's C has no defined value (no number at all: `sscanf` leaves `n` unset; a
negative, infinite or NaN size converted to an unsigned integer) we refuse with the
reason instead of guessing what a build of iperf3 happens to do."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: C's isspace() in the "C" locale (what atoi and sscanf skip first)
_C_SPACE = " \t\n\v\f\r"

#: strtod's longest prefix: hex (with a p exponent), decimal (with an e exponent), inf,
#: infinity, nan, nan(chars). ASCII digits only ([0-9] in a Python pattern is ASCII).
_STRTOD = re.compile(
    r"[+-]?(?:"
    r"(?P<hex>0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    r"|(?P<dec>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<inf>[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
    r"|(?P<nan>[nN][aA][nN](?:\([0-9A-Za-z_]*\))?)"
    r")"
)
_ATOI = re.compile(r"[+-]?[0-9]+")

_LONG_MAX = (1 << 63) - 1
_LONG_MIN = -(1 << 63)


def c_atoi_rest(text: str) -> tuple[int, str] | None:
    """`c_atoi` and the text after its digits; None where there are no digits (atoi's 0)."""
    body = text.lstrip(_C_SPACE)
    m = _ATOI.match(body)
    return None if m is None else (c_atoi(body), body[m.end() :])


def c_atoi(text: str) -> int:
    """glibc's `atoi`: `(int) strtol(text, NULL, 10)`: spaces skipped, a sign, ASCII
    digits up to the first other character; none is 0; past a long it is clamped to
    LONG_MIN/LONG_MAX, then cut to the int's 32 bits (`4294967299` is 3, as iperf3 3.12
    takes `-b 10M/4294967299` as a burst of 3)."""
    m = _ATOI.match(text.lstrip(_C_SPACE))
    if m is None:
        return 0
    digits = m.group().lstrip("+-").lstrip("0")[:25] or "0"  # (past 19 digits: clamped)
    value = int(digits) * (-1 if m.group().startswith("-") else 1)
    value = max(_LONG_MIN, min(_LONG_MAX, value))
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


@dataclass(frozen=True)
class Scanned:
    """`sscanf(text, "%lf%c", &n, &suffix)`: the number, its suffix (the one character
    right after it, "" at the end) and whether more text came after that."""

    value: float
    suffix: str
    rest: str  # the text after the number (the suffix its first character)


def c_scan(text: str) -> Scanned | None:
    """`%lf%c` of `text`, None where sscanf converts nothing (iperf3 then reads its
    uninitialised `n`)."""
    body = text.lstrip(_C_SPACE)
    m = _STRTOD.match(body)
    if m is None:
        return None
    number = m.group()
    if m.group("hex") is not None:
        value = float.fromhex(number)
    elif m.group("nan") is not None:
        value = float("nan")
    else:
        value = float(number)  # decimal, inf, infinity (overflow: inf, as strtod's HUGE_VAL)
    rest = body[m.end() :]
    return Scanned(value, rest[:1], rest)


#: unit_atof_rate's 10^3 steps (-b, --fq-rate) and unit_atoi's 2^10 (-n, -k, -l, ...)
RATE_STEPS = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
SIZE_STEPS = {"k": 2.0**10, "m": 2.0**20, "g": 2.0**30, "t": 2.0**40}


@dataclass(frozen=True)
class UnitNumber:
    """A number with iperf3's unit read: `value` scaled, and the text iperf3 ignored
    when it follows a number without a unit (`10Q`'s `Q`, `10 M`'s ` M`), "" if none:
    the number counts as it stands then (10 bit/s), which a warning can say."""

    value: float
    ignored: str


def unit_number(text: str, steps: dict[str, float], *, signed: bool = False) -> UnitNumber:
    """iperf3's unit_atof (`steps` RATE_STEPS or SIZE_STEPS): the number, times its
    suffix's step if the suffix is one of k/m/g/t (any case). ValueError (the reason)
    where 3.12 has no defined value: no number, or one that is negative, infinite or NaN
    (its sizes and rates are unsigned: `-b -1` became 2^64 - 1 bit/s, `-n inf` 0).
    `signed`: a negative number is returned as it is, for a range check in the option's
    own words (`-l -1`: iperf3's `block size too large`, its -1 wrapped to 2^64 - 1)."""
    scanned = c_scan(text)
    if scanned is None:
        raise ValueError("no number (iperf3 3.12's sscanf reads none and leaves its value unset)")
    value = scanned.value
    step = steps.get(scanned.suffix.lower())
    if step is not None:
        value *= step
    if not (-(2.0**64) if signed else 0.0) <= value < 2.0**64:  # (NaN too)
        what = "NaN, infinite or" if signed else "negative, NaN, infinite or"
        raise ValueError(f"{what} 2^64 and over (iperf3 3.12 stores it unsigned)")
    return UnitNumber(value, "" if step is not None else scanned.rest)
