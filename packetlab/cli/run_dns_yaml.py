"""dig 9.18's +yaml output for `pktlab run dns` (its printmessage's YAML branch): each
message a `- type: MESSAGE` item with where and when it went, then its header, OPT
pseudosection and sections as lists of one-line records; a lookup without answer a
`- type: DIG_ERROR` item."""

from __future__ import annotations

import time
from collections.abc import Callable

from packetlab.cli.run_command import Record
from packetlab.cli.run_dns_text import dig_status

FLAG_ORDER = ("QR", "AA", "TC", "RD", "RA", "AD", "CD")


def stamp(seconds: float) -> str:
    """BIND's isc_time_formatISO8601ms: UTC, milliseconds."""
    whole = int(seconds)
    ms = int((seconds - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def error_item(text: str) -> list[str]:
    return ["- type: DIG_ERROR", "  message: |", f"    {text}"]


def v6_zero(rtype: str, text: str) -> str:
    """A record's data as dig's YAML style writes its IPv6 addresses (BIND's inet_totext:
    one ending in `::` gets a `0`, so no YAML reader takes its colon for a mapping's):
    AAAA, an IPSECKEY's or AMTRELAY's gateway of type 2, APL's family-2 items (session
    29, dig29: dig 9.18.49 `2001:db8::0`, ours was `2001:db8::`)."""
    if rtype == "AAAA":
        return text + "0" if text.endswith(":") else text
    words = text.split(" ")
    at = {"IPSECKEY": 3, "AMTRELAY": 3}.get(rtype)
    if at is not None and len(words) > at and words[at - 1] == "2" and words[at].endswith(":"):
        words[at] += "0"
    elif rtype == "APL":
        words = [w.replace("::/", "::0/") if w.lstrip("!").startswith("2:") else w
                 for w in words]  # fmt: skip
    return " ".join(words)


def _record(a: Record, data: Callable[[Record], str]) -> str:
    text = v6_zero(str(a["type"]), data(a))  # (+short's lines are not YAML: as they are)
    return f"'{a['name']} {a['ttl']} {a.get('class', 'IN')} {a['type']} {text}'"


def _opt(opt_lines: list[str]) -> list[str]:
    """dig's OPT pseudosection lines (`; EDNS: version: 0, flags: do; udp: 1232`, then an
    option a line) as its YAML mapping."""
    head, options = opt_lines[0].removeprefix("; EDNS: "), opt_lines[1:]
    version, _, rest = head.partition(", ")
    flags, _, tail = rest.partition("; ")
    lines = ["        EDNS:", f"          {version}", f"          {flags}"]
    for part in tail.split(", "):
        lines.append(f"          {part}")
    for option in options:  # one may take several lines (EDE's mapping)
        lines += [f"          {x}" if x else "" for x in option.removeprefix("; ").split("\n")]
    return lines


def message(
    r: Record,
    show: dict[str, bool],
    data: Callable[[Record], str],
    opt_lines: Callable[[Record], list[str]],
    *,
    short: bool = False,
    now: float | None = None,
) -> list[str]:
    """A message (a reply; dig +qr's query when `r['sent']`) as dig's YAML item: the
    records one a line (`data`: their data as dig's YAML style writes it), +short's
    data after the header."""
    sent = bool(r.get("sent"))
    now = time.time() if now is None else now
    took = r.get("rtt_us") if r.get("rtt_us") is not None else r.get("query_time_us")
    flags = [f for f in FLAG_ORDER if f in r["flags"]]
    recursive = "RD" in flags and (sent or "RA" in flags)
    kind = ("RECURSIVE_" if recursive else "AUTH_") + ("QUERY" if sent else "RESPONSE")
    v6 = ":" in r["server"]
    lines = ["- type: MESSAGE", "  message:", f"    type: {kind}",
             f"    query_time: !!timestamp {stamp(now - (took or 0) / 1e6)}"]  # fmt: skip
    if not sent:
        lines.append(f"    response_time: !!timestamp {stamp(now)}")
    qd, an, ns, ar = r.get("counts") or (1, len(r["answers"]), 0, 0)
    lines += [
        f"    message_size: {r['size']}b",
        f"    socket_family: {'INET6' if v6 else 'INET'}",
        f"    socket_protocol: {r.get('proto', 'udp').upper()}",
        f'    response_address: "{r["server"]}"',
        f"    response_port: {r['port']}",
        f'    query_address: "{"::0" if v6 else "0.0.0.0"}"',  # dig 9.18.49's, as printed
        "    query_port: 0",
        f"    {'query' if sent else 'response'}_message_data:",
        f"      opcode: {r.get('opcode', 'QUERY')}",
        f"      status: {dig_status(r['rcode'], yaml=True)}",
        f"      id: {r.get('id')}",
        "      flags:" + "".join(f" {f.lower()}" for f in flags),
        *(["      MBZ: 0x4"] if r.get("z") else []),  # the header's Z bit
        f"      QUESTION: {qd}",
        f"      ANSWER: {an}",
        f"      AUTHORITY: {ns}",
        f"      ADDITIONAL: {ar}",
    ]
    if short:
        return [*lines, *(data(a) for a in r["answers"])]
    if show["comments"] and r.get("edns") is not None:
        lines += ["      OPT_PSEUDOSECTION:", *_opt(opt_lines(r["edns"]))]
    if show["question"] and "qname" in r and (sent or qd):
        from packetlab.cli.run_dns_text import BIND_TYPE_NAMES

        qtype = BIND_TYPE_NAMES.get(str(r["qtype"]).upper(), r["qtype"])  # as dig: DOA
        q = f"'{r.get('reply_qname') or r['qname']} {r.get('qclass', 'IN')} {qtype}'"
        lines += ["      QUESTION_SECTION:", f"        - {q}"]
    elif show["question"] and sent:  # +header-only's query: the title alone
        lines.append("      QUESTION_SECTION:")
    for title, key in (("ANSWER", "answers"), ("AUTHORITY", "authority"),
                       ("ADDITIONAL", "additional")):  # fmt: skip
        records = r.get(key) or []
        if show[title.lower()] and records:
            lines += [f"      {title}_SECTION:",
                      *(f"        - {_record(a, data)}" for a in records)]  # fmt: skip
    if show["additional"] and r.get("tsig"):  # dig: indented less, a blank line after
        lines += ["      TSIG_PSEUDOSECTION:",
                  *(f"      - {_record(a, data)}" for a in r["tsig"]), ""]  # fmt: skip
    return lines
