"""The header's status as dig 9.18 names it (session 26, dns26): dig.c's own table, not
dnspython's names: RESERVED11..15 (dnspython: DSOTYPENI for 11, numbers for the rest),
`?17`..`?22` (dnspython: BADKEY .. BADTRUNC, which dig names only in a TSIG or TKEY),
BADCOOKIE, `?N` for the others; +yaml the number alone. Each checked against dig
9.18.49 with a server answering those RCODEs (extended ones in its OPT)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_cli_dns import A_DNSSEC, parse, text_of

from packetlab.cli import run_dns_text

DIG = {"NOERROR": "NOERROR", "DSOTYPENI": "RESERVED11", "12": "RESERVED12",
       "15": "RESERVED15", "BADVERS": "BADVERS", "BADKEY": "?17", "BADTRUNC": "?22",
       "BADCOOKIE": "BADCOOKIE", "24": "?24", "4095": "?4095"}  # fmt: skip


@pytest.mark.parametrize("ours", list(DIG))
def test_the_status_is_dig_s_word(ours: str) -> None:
    assert run_dns_text.dig_status(ours) == DIG[ours]
    assert run_dns_text.dig_status(ours, yaml=True) == DIG[ours].lstrip("?")


def test_the_header_line_says_it() -> None:
    text = text_of(parse("@127.0.0.1", "a.test"), {**A_DNSSEC, "rcode": "BADKEY"})
    assert ";; ->>HEADER<<- opcode: QUERY, status: ?17, id: 44758\n" in text
    text = text_of(parse("@127.0.0.1", "+yaml", "a.test"), {**A_DNSSEC, "rcode": "DSOTYPENI"})
    assert "\n      status: RESERVED11\n" in text
