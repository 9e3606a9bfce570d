"""`pktlab run dns --dig-exit-codes`: dig 9.18's exit statuses instead of ours.

dig keeps one status for the run (BIND's `exitcode`): a lookup's connection made (a UDP
socket connected, a TCP or TLS connection established) sets it to 0, a lookup no server
answered (a timeout, a refused or closed connection, `+nssearch` with no name server
reached) to 9; so the run's status is its last lookup's. A reply that does not parse
(`Got bad packet`), an ID mismatch, an error RCODE (NXDOMAIN, SERVFAIL, REFUSED) and
`; Transfer failed.` are answers: 0. A TLS certificate that fails dig's check, a client
certificate that cannot be used (`TLS context cannot be created`) and `-6` with only IPv4
servers (`No acceptable nameservers`) leave the status as it was (dig prints its line and
goes on). Usage errors: 1 (dig's `usage()` and
its `fatal()`: an unknown or ambiguous option, a bad port, server, cookie, subnet or EDNS
option, an IXFR serial), 10 for a bad number after a `+WORD=` (dig's `Couldn't parse
...`) and a name that is not legal, 8 for a `-f` file that cannot be opened; an error
of the run itself (the endpoint lost, `--timeout`): 10, dig's internal error. A trace
that goes no deeper: 1 (dig's `too many lookups`, a `fatal()`). Ctrl-C stays 130.

Compared with dig 9.18.49 case by case (tests/integration/test_dns_exits_dig.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from packetlab.cli.run import RunError

DIG_OK, DIG_USAGE, DIG_BATCH, DIG_NO_REPLY, DIG_INTERNAL = 0, 1, 8, 9, 10


def dig_error(message: str, status: int) -> RunError:
    """A usage error whose dig status is not 1 (`status`: 8 or 10)."""
    e = RunError(message)
    e.dig_status = status  # type: ignore[attr-defined]
    return e


def bad_number(
    word: str, desc: str, value: str, number: bool | None = None, status: int = 10
) -> RunError:
    """A number dig's parse_uint refuses: its line on stdout, now (`invalid DESC 'VALUE':
    REASON`, isc_parse_uint32's reason: out of range for a `number`, by default digits
    only, else not a valid number), and the error to raise (dig's `Couldn't parse DESC`,
    its status: 10 for a `+` option's number, 1 for -p's, a fatal())."""
    number = value.isascii() and value.isdigit() if number is None else number
    why = "out of range" if number else "not a valid number"
    sys.stdout.flush()
    print(f"invalid {desc} '{value}': {why}", flush=True)
    return dig_error(f"{word}: Couldn't parse {desc} ({why})", status)


def lookup_status(record: dict[str, Any]) -> int | None:
    """dig's status after the lookup of `record` (None: left as it was)."""
    if record.get("type") == "summary":
        return None
    if record.get("error") is None:  # an answer, `Transfer failed.`, +nssearch's warning
        return DIG_OK
    kind = record.get("error_kind")
    if kind in ("tls", "family"):  # dig: its line (no TLS, no server), status unchanged
        return None
    if kind in ("malformed", "mismatch"):  # the connection was made: dig's 0
        return DIG_OK
    if kind in ("lame", "steps"):  # dig loops to `too many lookups`, a fatal()
        return DIG_USAGE
    if kind == "limit":  # --xfr-max (dig has no cap): an error of ours
        return DIG_INTERNAL
    return DIG_NO_REPLY


def status(args: argparse.Namespace, records: Sequence[dict[str, Any]], ours: int) -> int:
    """The run's exit status: ours (0, 1), or dig's with --dig-exit-codes."""
    if not getattr(args, "dig_exit_codes", False):
        return ours
    code = DIG_OK
    for record in records:
        got = lookup_status(record)
        if got is not None:
            code = got
    return code


def error_status(args: argparse.Namespace, error: BaseException) -> int | None:
    """The exit status of a run that ended in `error` (None: ours, 2)."""
    if not getattr(args, "dig_exit_codes", False):
        return None
    if isinstance(error, RunError):
        return int(getattr(error, "dig_status", DIG_USAGE))
    return DIG_INTERNAL


def usage_status(words: Sequence[str]) -> int:
    """The exit status of a command line argparse refuses (ours 2; dig's usage() 1)."""
    # (argparse takes an abbreviation: --dig-exit)
    asked = any(len(w) > 6 and "--dig-exit-codes".startswith(w) for w in words)
    return DIG_USAGE if asked else 2
