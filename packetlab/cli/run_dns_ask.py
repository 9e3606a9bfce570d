"""The lookups of `pktlab run dns` in dig's order: a query's servers and tries (`_ask`,
over UDP or TCP, +nofail's next server), +search's names (`_search`), zone transfers
(`_transfer`, IXFR over UDP), the TSIG key of -y/-k (`_tsig_key`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from packetlab.cli.run import RunError
from packetlab.cli.run_command import Emit, Progress, Record
from packetlab.cli.run_dns_text import error_lines


def _tsig_key(args: argparse.Namespace) -> Any:
    """dig's -y/-k key, or None: what dig cannot make is its warning on stderr and no
    key (the queries go unsigned, as dig's); a -y without name and secret, a key file
    without algorithm or secret, an error (dig: exit 1). Both: -k's key, as dig 9.18 (its
    setup_file_key before setup_text_key; ours took -y's until session 30, dig30), -y's
    words read all the same (its usage, digest bits, algorithm warning: dig's parse)."""
    y, path = getattr(args, "tsig_y", None), getattr(args, "tsig_file", None)
    if y is None and path is None:
        return None
    from packetlab.measure.dnstsig import BAD_ALGORITHM, KeyUsageError, key_from_file, key_from_y

    parsed: list[str] = []
    made = None
    try:
        made = key_from_y(y) if y is not None else None
        if path is not None:
            parsed = [w for w in made.warnings if w.startswith(BAD_ALGORITHM)] if made else []
            made = key_from_file(str(path))
    except KeyUsageError as e:
        raise RunError(f"-k {path}: {e} (dig's words)" if made else str(e)) from None
    assert made is not None
    made.warnings[:0] = parsed
    if made.warnings:
        sys.stdout.flush()
        print("\n".join(made.warnings), file=sys.stderr, flush=True)
    if made.failed is not None:  # dig: on stdout, before anything; then each reply says so
        print(made.failed, flush=True)
    # dig: a secret read (-y's, a key file's) and no key made: each reply says so
    if made.failed is not None or (made.key is None and y is not None):
        args.tsig_unused = True
    return made.key


async def _transfer(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    name: str,
    qtype: str,
    o: argparse.Namespace,
    qclass: str,
    recorder: Any,
    progress: Progress,
    cookie: bytes | None = b"",
    tsig: Any = None,
    tries: int | None = None,
) -> Any:
    """A zone transfer (AXFR, IXFR=SERIAL) from dig's servers in dig's order: a
    communications failure (a refused connection, the server closing or silent
    mid-transfer) is tried again from the first server while the lookup's tries last
    (+tries: dig's requeue), then the next servers once each; an answer (a refusal too)
    ends it. The attempts before the last are its `retries`, one that went on to the
    next server marked `next_server` (dig says `no servers could be reached` after the
    others). `tries`: the lookup's (default +tries; less after UDP tries, dig's requeue)."""
    from packetlab.measure.dns import EDNS_PAYLOAD
    from packetlab.measure.dnsxfr import dns_xfr

    serial = int(qtype[5:]) if qtype.upper().startswith("IXFR=") else None
    if cookie == b"":  # one client cookie for the lookup, as dig (given: IXFR's over UDP)
        cookie = _xfr_cookie(o.cookie)
    earlier: list[Record] = []
    left, budget, i = o.tries if tries is None else tries, o.xfr_max, 0
    while True:
        server, port = servers[i]
        result = await dns_xfr(
            session, name, serial=serial, server=server, port=port, timeout=o.wait,
            attempts=1, edns=False if o.edns < 0 else o.edns,
            payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize,
            dnssec=bool(o.dnssec), family=o.family, qclass=qclass, nsid=o.nsid,
            cookie=cookie, max_records=budget, recorder=recorder,
            stop=lambda: progress.stopping,  # Ctrl-C: what came is printed, then the summary
            tsig=tsig,
        )  # fmt: skip
        budget -= len(result.answers)  # the cap holds for all the attempts together
        final = result.error is None or result.error_kind in (
            "malformed", "mismatch", "limit", "interrupted",
        )  # fmt: skip
        if final or progress.stopping or (left <= 1 and i == len(servers) - 1):
            break
        attempt = result.attempt_dict()
        if left > 1:  # dig's requeue: the lookup again, from its first server
            left, i = left - 1, 0
        else:
            attempt["next_server"] = True
            i += 1
        earlier.append(attempt)
    result.retries = earlier
    result.tries = len(earlier) + 1
    return result


def _ixfr_over_udp(qtype: str, o: argparse.Namespace) -> bool:
    """dig 9.18 asks an IXFR over UDP when +notcp (+novc) was given (its tcp_mode_set)."""
    return qtype.upper().startswith("IXFR=") and bool(getattr(o, "tcp_set", False)) and not o.tcp


async def _ixfr_udp(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    name: str,
    qtype: str,
    o: argparse.Namespace,
    qclass: str,
    recorder: Any,
    progress: Progress,
    tsig: Any = None,
) -> Any:
    """dig's `IXFR=N +notcp`: the IXFR request asked over UDP as a query (its servers,
    tries and errors a query's); a truncated (TC) reply is the transfer over TCP (from
    the first server again: dig's requeue), with the same client cookie (`;; Truncated,
    retrying in TCP mode.` before it, shown as dig with +comments), unless +ignore."""
    from packetlab.measure.dns import EDNS_PAYLOAD

    cookie = _xfr_cookie(o.cookie)
    result, left = await _ask_udp(
        session, servers, name, "IXFR", tcp=False, tcp_fallback=False, timeout=o.wait,
        attempts=o.tries, edns=False if o.edns < 0 else o.edns,
        payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize, dnssec=bool(o.dnssec),
        family=o.family, recorder=recorder, qclass=qclass, nsid=o.nsid,
        cookie=cookie or False, expect_opt=isinstance(o.cookie, bytes),
        ixfr_serial=int(qtype[5:]), tsig=tsig,
    )  # fmt: skip
    if not result.truncated or o.ignore:
        return result
    # dig's requeued lookup over TCP: from its first server again, as a transfer's, with
    # the tries the UDP ones left (the first server once at least, then the next ones)
    xfr = await _transfer(session, servers, name, qtype, o, qclass, recorder, progress, cookie,
                          tsig, tries=max(left, 1))  # fmt: skip
    xfr.notes = [*result.notes, "Truncated, retrying in TCP mode."]
    return xfr


def _xfr_cookie(cookie: bool | bytes) -> bytes | None:
    """The client cookie a transfer sends (dig's default: a random one)."""
    import random

    if cookie is True:
        return random.randbytes(8)
    return cookie or None


async def _search(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    names: list[str],
    qtype: str,
    emit: Emit,
    show: bool,
    origins: int = 0,
    **options: Any,
) -> Any:
    """dig +search: each of `names` (`search_plan`) while the answer is NXDOMAIN; the
    last answer emitted, those before it only with +showsearch (each marked
    `search_step`: dig prints its whole banner again before the next). A name asked as
    given first (`search_plan`'s "") whose answer is NXDOMAIN is marked `stats_twice`:
    dig 9.18 prints its statistics twice then. One of the first `origins` (asked under
    a search domain) whose answer is neither NOERROR nor NXDOMAIN (REFUSED, SERVFAIL)
    is marked `stats_none`: dig 9.18's recv_done prints a reply's statistics only when
    it is NOERROR or the lookup has no search domain (or in its NXDOMAIN branch)."""
    as_is_first = names[1:] == [""]
    names = [n for n in names if n]
    i = 0
    for i, name in enumerate(names):
        result = await _ask(session, servers, name, qtype, **options)
        if result.rcode != "NXDOMAIN" or i == len(names) - 1:
            break
        if show:
            emit({**result.to_dict(), "search_step": True})
    record = result.to_dict()
    if as_is_first and result.rcode == "NXDOMAIN":
        record["stats_twice"] = True
    if i < origins and result.rcode not in (None, "NOERROR", "NXDOMAIN"):
        record["stats_none"] = True
    emit(record)
    return result


async def _ask(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> Any:
    """dig's servers of a query in dig's order until one answers (a reply that does not
    parse ends it too): the lookup's tries go to its first server (each timeout or
    `connection refused` one; a closed port is asked again, as dig, not given up at
    once), then each next server gets one try (dig's requeue, as over TCP). The one
    that answered, with the failures before it as dig's remarks
    (`communications error to ADDR#PORT: connection refused`, a line a try)."""
    if len(servers) < 2:  # the one server asked again after a BADCOOKIE (dns_query)
        return (await _ask_once(session, servers, name, qtype, **options))[0]
    # dig 9.18 requeues a lookup whose reply is a BADCOOKIE to ask again: the new lookup
    # (the server's cookie, the tries left, over TCP the second time) starts from the
    # first server, not the one that said it (session 26, odds26)
    notes: list[str] = []
    shown: list[Any] = []
    wires: list[bytes] = []
    seen = False
    while True:
        result, left = await _ask_once(session, servers, name, qtype, requeue=True,
                                       badcookie_seen=seen, **options)  # fmt: skip
        if result.requeue_cookie is None:
            break
        notes += result.notes
        shown += result.badcookies
        if result.query_wire is not None:
            wires += [*result.query_before, result.query_wire]
        tcp = bool(options.get("tcp")) or result.requeue_tcp
        options = {**options, "cookie": result.requeue_cookie, "tcp": tcp,
                   "attempts": max(left, 1)}  # fmt: skip
        seen = True
    result.notes[:0] = notes
    result.badcookies[:0] = shown
    if result.query_wire is not None:
        result.query_before[:0] = wires
    return result


async def _ask_once(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> Any:
    """`_ask`'s lookup: over TCP (+tcp, +tls, +https) or UDP; the result and the tries
    left (TCP: 1)."""
    if options.get("tcp") or options.get("tls") or options.get("doh"):  # dig: TCP's order
        return await _ask_tcp(session, servers, name, qtype, **options), 1
    return await _ask_udp(session, servers, name, qtype, **options)


async def _ask_udp(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> tuple[Any, int]:
    """`_ask` over UDP: the result, and the lookup's tries left (dig's requeue over TCP
    after a truncated reply has only those)."""
    from packetlab.measure.dns import dns_query

    notes: list[str] = []
    servfail_next = options.pop("servfail_next", False)
    attempts = options.pop("attempts")
    left, i, first = attempts, 0, 0
    while True:
        server, port = servers[i]
        tries = left if i == first else 1
        result = await dns_query(session, name, qtype, server=server, port=port,
                                 attempts=tries, **options)  # fmt: skip
        if i == first:
            left -= max(result.tries, 1)  # a refusal ends its tries early: the rest left
        if servfail_next and result.rcode == "SERVFAIL":  # dig +nofail: the next server
            if i + 1 == len(servers):
                notes.append(f"Got SERVFAIL reply from {server}")
                break
            notes.append(f"Got SERVFAIL reply from {server}, trying next server")
            i = first = i + 1  # asked anew, with the lookup's tries (as dig)
            left = attempts
            continue
        if result.error is None or result.error_kind == "malformed":
            break
        if i == first and left > 0 and result.error_kind == "refused":
            pass  # the first server again, with the tries left
        elif i + 1 < len(servers):
            i += 1
        else:
            break
        lines = error_lines(result.to_dict())  # after its own (dig's warnings, tries)
        notes += [*result.notes, *(line.removeprefix(";; ") for line in lines)]
    result.notes[:0] = notes
    return result, left


async def _ask_tcp(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> Any:
    """A query over TCP (+tcp) in dig's order for a lookup over TCP: a connection refused
    or a failed exchange is asked again from the first server while the tries last
    (dig's requeue), then the next servers once each; each failure dig's lines before
    the last (`;; Connection to ADDR#PORT(ADDR) for NAME failed: connection refused.`,
    then `;; no servers could be reached` but when it goes on to the next server)."""
    from packetlab.measure.dns import dns_query

    notes: list[str] = []
    servfail_next = options.pop("servfail_next", False)
    left, i = options["attempts"], 0
    while True:
        server, port = servers[i]
        result = await dns_query(session, name, qtype, server=server, port=port, **options)
        if servfail_next and result.rcode == "SERVFAIL":  # dig +nofail: the next server
            if i + 1 == len(servers):
                notes.append(f"Got SERVFAIL reply from {server}")
                break
            notes.append(f"Got SERVFAIL reply from {server}, trying next server")
            i += 1
            continue
        if result.error is None or result.error_kind not in ("refused", "tcp"):
            break
        if left > 1:
            left, i, next_server = left - 1, 0, False
        elif i + 1 < len(servers):
            i, next_server = i + 1, True
        else:
            break
        lines = error_lines(result.to_dict())
        if result.error_kind == "refused" and not next_server:
            lines.append(";; no servers could be reached")
        notes += [line.removeprefix(";; ") for line in lines]
    result.notes[:0] = notes
    return result


NSSEARCH_SERVERS = 8  # NS names of the zone asked at most (a hostile reply may list thousands)
NSSEARCH_ADDRESSES = 16  # their addresses asked at most (likewise)


async def _nssearch(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    name: str,
    emit: Emit,
    **options: Any,
) -> None:
    """dig +nssearch: NAME's NS from dig's servers (recursion desired, as dig asks it),
    then NAME's SOA from each address of each NS (recursion off, one try each, as dig's
    parallel queries), a record each (`nssearch`: dig's `SOA ... from server ADDR in N
    ms.`). An NS address is the reply's glue, else asked of the servers (dig: its host's
    resolver). A server that does not answer is dig's warning (`nssearch_error`, not an
    error: dig exits 0 when one answered); none answered: the last one's error, marked
    `nssearch_failed` (dig's `;; NS servers could not be reached`, exit 9)."""
    recursive = {**options, "recursion": True}
    ns = await _ask(session, servers, name, "NS", **recursive)
    if ns.error is not None:
        emit(ns.to_dict())
        return
    rtype = "AAAA" if options.get("family") == 6 else "A"
    port = servers[0][1]
    targets: list[str] = []
    hosts = [a.data for a in ns.answers if a.type == "NS"][:NSSEARCH_SERVERS]
    for host in hosts:
        glue = [g.data for g in ns.additional if g.name == host and g.type == rtype]
        if not glue:
            got = await _ask(session, servers, host, rtype, **recursive)
            glue = [a.data for a in got.answers if a.type == rtype]
        targets += [addr for addr in glue if addr not in targets]
    targets = targets[:NSSEARCH_ADDRESSES]
    answered = 0
    soa = {**options, "recursion": False, "attempts": 1, "servfail_next": False}
    for i, addr in enumerate(targets):
        result = await _ask(session, [(addr, port)], name, "SOA", **soa)
        record = {**result.to_dict(), "nssearch": True}
        if "error" not in record:
            answered += 1
        elif answered or i + 1 < len(targets):
            record["nssearch_error"] = record.pop("error")
        else:
            record["nssearch_failed"] = True
        emit(record)
