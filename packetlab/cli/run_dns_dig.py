"""dig's whole output of `pktlab run dns` (`DigText`): the banner, each reply's header,
sections and statistics as the display switches say, +short, +qr's query, +yaml,
+trace's steps and zone transfers."""

from __future__ import annotations

import argparse
import time
from typing import Any

from packetlab.cli.run_command import Record
from packetlab.cli.run_dns_text import (
    FLAG_ORDER,
    STREAMS,
    Style,
    _opt_lines,
    connect_failed_line,
    dig_status,
    error_lines,
    hex_dump,
    question_line,
    rr_line,
)
from packetlab.cli.run_dns_words import SECTIONS, _base_of
from packetlab.cli.runclock import now_of

#: the remarks dig prints before a reply only with +comments (+short turns them off)
COMMENTS = ("Truncated, retrying", "BADVERS, retrying", "BADCOOKIE, retrying",
            "Got SERVFAIL reply")  # fmt: skip
#: the remarks on a reply after which dig asks again (a next query: +qr prints it)
REQUEUED = ("Truncated, retrying", "BADVERS", "BADCOOKIE, retrying")


def sent_queries(r: Record) -> list[tuple[str, str, str]]:
    """dig +qr +yaml: each query a lookup sent (its hex, server, transport), an item
    each in dig 9.18.49's YAML: one a communications error (to that server), one before
    each remark after which dig asks again (TCP after `retrying in TCP mode`), then the
    one answered (session 29, dig29: ours showed the last alone)."""
    wires = [*r.get("query_before", []), r["query"]]
    k = 0
    notes = r.get("notes", [])
    tcp_later = any("retrying in TCP mode" in n for n in notes)
    proto = "udp" if tcp_later else str(r["proto"])
    out: list[tuple[str, str, str]] = []
    for note in notes:
        wire = wires[min(k, len(wires) - 1)]
        if note.startswith("communications error to "):
            out.append((wire, note.removeprefix("communications error to ").rsplit("#", 1)[0],
                        proto))  # fmt: skip
        elif note.startswith("Got SERVFAIL reply from ") and note.endswith("trying next server"):
            out.append((wire, note.removeprefix("Got SERVFAIL reply from ").split(",")[0], proto))
        elif note.startswith(REQUEUED):
            out.append((wire, str(r["server"]), proto))
            k += 1
            proto = "tcp" if "TCP mode" in note else proto
    return [*out, (wires[min(k, len(wires) - 1)], str(r["server"]), str(r["proto"]))]


def when(seconds: float) -> str:
    """dig's `;; WHEN:` time: `seconds` (the endpoint's clock, `now_of`) in the local
    zone, in its strftime format (its zone's abbreviation: `UTC`, `CET`)."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(seconds))


class DigText:
    """dig's output for each record (its default sections, the +[no]SECTION switches,
    +short), the `; <<>>` banner before the first one."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bannered: argparse.Namespace | None = None  # whose banner was shown last
        self.tsig_failures = False  # a reply's TSIG did not verify (dig: every later says so)
        # whose first lookup has ended (a record not a +showsearch step): dig keeps the
        # banner (its lookup's cmdline) for the first lookup's search names only
        self.looked_up: argparse.Namespace | None = None
        self.banner_line = False  # the banner again after a later -f line's search step
        self.banner_made = False  # a banner printed yet (the first is whole)

    @property
    def view(self) -> argparse.Namespace:
        """The options of what is shown now: a batch line's (dig -f), else the command's."""
        return getattr(self.args, "view", None) or self.args

    @property
    def show(self) -> dict[str, bool]:
        return getattr(self.view, "show", None) or dict.fromkeys(SECTIONS, True)

    @property
    def short(self) -> bool:  # dig's global switch: the command line's (batch line's)
        return bool(getattr(_base_of(self.view), "short", False))

    @property
    def cmd(self) -> bool:  # likewise
        show = getattr(_base_of(self.view), "show", None)
        return bool(show["cmd"]) if show else True

    @property
    def trace(self) -> bool:
        return bool(getattr(self.view, "trace", False))

    @property
    def error_banner(self) -> bool:
        """dig made the lookup's banner (`_dig_words`' `error_banner`): it comes before
        `no servers could be reached` even when +nocmd or +short came after the name."""
        return bool(getattr(self.view, "error_banner", False))

    @property
    def user_server(self) -> str | None:
        return getattr(self.view, "user_server", None)

    @property
    def style(self) -> Style:
        view = self.view
        multiline = bool(getattr(view, "multiline", False)) and not self.short

        def opt(name: str, default: Any) -> Any:
            return getattr(view, name, default)

        return Style(multiline, opt("split", None), ttl=opt("ttlid", True),
                     cls=opt("show_class", True), ttlunits=opt("ttlunits", False),
                     comments=opt("rrcomments", None), crypto=opt("crypto", True),
                     unknown=opt("unknownformat", False),
                     expandaaaa=opt("expandaaaa", False),
                     idnout=opt("idnout", False))  # fmt: skip

    def banner(self, always: bool = False, failed: bool = False) -> list[str]:
        """dig's banner before the first answer; with -f, a line of it before each batch
        line's first answer too, naming that line's words. `always`: whatever +nocmd and
        +short say now (dig made it when it read the name, before them); `failed`: before
        `no servers could be reached`, where +short does not hide it (dig prints the
        lookup's banner, made unless +nocmd: `+short +cmd` shows it)."""
        view = _base_of(self.view)
        words = getattr(view, "batch_words", None)
        if view is self.bannered or (self.bannered is not None and words is None):
            return []
        # (dig: the run's first banner made is whole, whichever -f line makes it: a line
        # of +nocmd or +short makes none; session 29)
        first = (self.bannered is None and not self.banner_line) or not self.banner_made
        self.bannered, self.banner_line = view, False
        if not always and (not self.cmd or (self.short and not failed)):
            return []
        self.banner_made = True
        from packetlab import __version__

        # dig: each word after a space (none: the line ends with `<<>>`)
        # (a batch line's words as written: dig copies the line before it reads it)
        given = (
            words
            if words is not None
            else [_echoed(w) for w in getattr(self.args, "cmdline", None) or []]
        )
        text = "".join(f" {w}" for w in given)
        if not first:
            return _cut([f"; <<>> pktlab {__version__} <<>>{text}"])
        lines = ["", f"; <<>> pktlab {__version__} <<>>{text}"]
        if self.user_server is not None:
            lines.append("; (1 server found)")
        # dig's short_form when it made the banner (`always`: before a +short after the name)
        short = (self.short and not always) or bool(getattr(self.view, "nssearch", False))
        return _cut([*lines, f";; global options: {'+short ' if short else ''}+cmd"])

    def __call__(self, r: Record) -> str | None:
        text = self.text(r)
        if text is None or GLUE not in text:
            return text
        return text.replace(GLUE + "\n", "").replace(GLUE, "")  # a cut banner runs on

    def text(self, r: Record) -> str | None:
        if r["type"] != "dns":
            return None
        ended = self.looked_up  # before this record
        searched = ended is _base_of(self.view)
        if not r.get("search_step"):
            self.looked_up = _base_of(self.view)
        if getattr(self.view, "yaml", False):
            return "\n".join(self.yaml(r)) or None
        if r.get("xfr"):
            return "\n".join(self.transfer(r)) or None
        if r.get("nssearch"):
            return "\n".join(self.nssearch(r)) or None
        if r.get("error_kind") == "lame" and self.trace and not self.short:  # as dig's step
            notes = [f";; {n}" for n in r.get("notes", []) if not n.startswith("BAD ")]
            return "\n".join([*notes, *self.trace_step(r), f";; {r['error']}"])
        comments = self.show["comments"]  # dig says these remarks only with +comments
        lines = [f";; {n}" for n in r.get("notes", []) if comments or not n.startswith(COMMENTS)]
        if "error" in r and "query" in r and r.get("error_kind") in ("timeout", "refused"):
            return "\n".join(self.with_queries(r, [";; no servers could be reached"]))
        if "error" in r and "query" in r and r.get("error_kind") == "malformed":
            return "\n".join([*self.banner(), *self.sending(r), *error_lines(r)])
        if "error" in r:
            texts = getattr(self.view, "server_texts", None) or {}
            lines += error_lines(r, texts.get(r["server"]) or self.user_server)
            if r.get("proto") in STREAMS and r.get("error_kind") == "refused":
                lines.append(";; no servers could be reached")  # as dig: no banner
            elif r.get("error_kind") in ("malformed", "mismatch"):
                self.banner()  # as dig: the lookup's banner is used up, not shown
            elif r.get("error_kind") not in ("lame", "steps", "tls", "family"):  # its line alone
                lines += self.banner(always=self.error_banner, failed=True)
                lines.append(";; no servers could be reached")
            if r.get("error_kind") == "timeout" and "; " in r["error"]:
                lines.append(";; (" + r["error"].split("; ", 1)[1] + ")")
            return "\n".join(lines)
        if self.short and self.trace:  # dig +trace +short: each answer, where, how long
            ms = self.took(r)
            style = self.style
            lines += [f"{a['type']} {style.data(a)} from server {r['server']} in {ms}."
                      for a in r["answers"]]  # fmt: skip
            return "\n".join(lines) or None
        if self.short:
            style = self.style
            where = (f" from server {r['server']} in {self.took(r)}."
                     if getattr(self.view, "identify", False) else "")  # fmt: skip
            lines += [style.data(a) + where for a in r["answers"]]
            return "\n".join(lines) or None
        if "query" in r:  # dig +qr: the banner, each query as sent, then what came of it
            return "\n".join(self.with_queries(r, self.message(r)))
        if r.get("badcookies"):  # dig +showbadcookie: each before its retry's remark
            lines = self.badcookie_lines(r)
        lines += self.banner()
        if self.trace:
            return "\n".join([*lines, *self.trace_step(r)])
        lines += self.message(r, self.xfr_show() if r["qtype"] == "IXFR" else None)  # +notcp
        # dig +showsearch: the next lookup's whole banner again, in the first lookup only
        # (dig.c gives the cmdline to the first lookup, requeue_lookup to its next names)
        if r.get("search_step") and not searched:
            # dig's banner again: whole in the run's first lookup, a later -f line's one line
            self.bannered, self.banner_line = None, ended is not None
        return "\n".join(lines) if lines else None

    def badcookie_lines(self, r: Record) -> list[str]:
        """dig +showbadcookie: the lookup's remarks with each BADCOOKIE reply it asked
        again printed whole before its `BADCOOKIE, retrying.` (the banner first, dig's
        print of the first message makes it); +nocomments: the reply, no remark."""
        shown = list(r["badcookies"])
        lines: list[str] = []
        for note in r.get("notes", []):
            if note.startswith("BADCOOKIE, retrying") and shown:
                lines += [*self.banner(), *self.message(shown.pop(0))]
            if self.show["comments"] or not note.startswith(COMMENTS):
                lines.append(f";; {note}")
        return lines

    def nssearch(self, r: Record) -> list[str]:
        """dig +nssearch: each SOA query's answer as `SOA DATA from server ADDR in N ms.`,
        a server that did not answer as dig's warning; none: dig's error after it."""
        error = r.get("error") or r.get("nssearch_error")
        if error is not None:
            lines = error_lines({**r, "error": error, "tries": 1})
            if r.get("nssearch_failed"):
                lines.append(";; NS servers could not be reached")
            return lines
        if not self.show["answer"]:  # dig +nssearch +noall: its warnings alone
            return []
        ms, style = self.took(r), self.style
        return [f"{a['type']} {style.data(a)} from server {r['server']} in {ms}."
                for a in r["answers"]]  # fmt: skip

    def yaml(self, r: Record) -> list[str]:
        """dig +yaml: the message (after the query with +qr) as dig's YAML item; no
        answer: its DIG_ERROR item (dig's remarks before an answer are not shown)."""
        from packetlab.cli import run_dns_yaml as y

        if "error" in r:  # dig 9.18 says nothing of a bad packet in YAML
            malformed = r.get("error_kind") == "malformed"
            return [] if malformed else y.error_item("no servers could be reached")
        # dig's YAML style: one line, +split's words, none of the other record switches
        data = Style(False, self.style.split).data

        def opt_lines(edns: Record) -> list[str]:
            return _opt_lines(edns, yaml=True)

        now = now_of(self.args)  # (the vantage point's clock, as dig's)
        lines: list[str] = []
        for shown in r.get("badcookies", []):  # +showbadcookie: each a MESSAGE item first
            lines += y.message(shown, self.show, data, opt_lines, short=self.short, now=now)
        if "query" in r:
            from packetlab.measure.dns import query_record

            for wire, server, proto in sent_queries(r):
                sent = {**query_record(bytes.fromhex(wire)), "server": server,
                        "port": r["port"], "proto": proto, "rtt_us": r.get("rtt_us")}  # fmt: skip
                lines += y.message(sent, self.show, data, opt_lines, now=now)
        if self.short and getattr(self.view, "identify", False):  # dig +identify: where
            where, plain = f" from server {r['server']} in {self.took(r)}.", data

            def data(a: Record) -> str:  # (+short's lines only: no record then)
                return plain(a) + where

        return lines + y.message(r, self.show, data, opt_lines, short=self.short, now=now)

    def took(self, r: Record) -> str:
        """The query time and its unit as dig writes them in its lines: `N ms`, whole ms
        (endpoint stamps; "?" when not known), `N us` with -u."""
        us = r["rtt_us"] if r.get("rtt_us") is not None else r.get("query_time_us")
        usec = bool(getattr(self.args, "usec", False))
        n = "?" if us is None else int(us) if usec else int(us // 1000)
        return f"{n} {'us' if usec else 'ms'}"

    def trace_step(self, r: Record) -> list[str]:
        """A +trace step as dig prints it: the answer and authority records, where they
        came from and how long it took."""
        ms = self.took(r)
        name = r.get("server_name") or self.user_server or r["server"]
        style = self.style
        bad = [f";; {n}" for n in r.get("notes", []) if n.startswith("BAD ")]  # dig's, after
        return [
            *(rr_line(a, style) for a in [*r["answers"], *r.get("authority", [])]),
            *bad,
            f";; Received {r['size']} bytes from {r['server']}#{r['port']}({name}) in {ms}",
            "",
        ]

    def transfer(self, r: Record) -> list[str]:
        """A zone transfer as dig prints it: each attempt's messages (only their answer
        sections by default: a transfer shows headers and questions when +comments and
        +question were given), how it ended (`; Transfer failed.`, a communications
        error), then the statistics with dig's XFR size line."""
        show = self.xfr_show()
        show["stats"] = False  # after the last message, with its XFR size
        attempts = [*r.get("retries", []), r]
        lines = self.xfr_notes(r)
        for i, a in enumerate(attempts):
            lines += self.xfr_attempt(a, show, last=i == len(attempts) - 1)
        complete = r.get("error") is None and r.get("failed") is None and r["messages"]
        if complete and self.show["stats"] and not self.short:
            size = f"{r['records']} records (messages {r['messages']}, bytes {r['bytes']})"
            lines += self.stats(r, f";; XFR size: {size}")
        return lines

    def xfr_show(self) -> dict[str, bool]:
        """A transfer's display switches (an IXFR asked over UDP's too, as dig): headers
        and questions only when +comments and +question were given."""
        show = dict(self.show)
        given = getattr(self.view, "plus_set", None) or {}
        show["comments"] = show["comments"] and given.get("comments", False)
        show["question"] = show["question"] and given.get("question", False)
        return show

    def xfr_notes(self, r: Record) -> list[str]:
        """dig's remarks before a transfer (`IXFR=N +notcp` truncated: `;; Truncated,
        retrying in TCP mode.`, which dig prints only with +comments)."""
        comments = self.xfr_show()["comments"]
        return [f";; {n}" for n in r.get("notes", []) if comments or not n.startswith("Trunc")]

    def xfr_attempt(self, a: Record, show: dict[str, bool], last: bool) -> list[str]:
        style = self.style
        lines: list[str] = []
        if a["parts"]:
            first = a["parts"][0].get("tsig_note")  # dig: its TSIG's failure, then the banner
            lines += [f";; {first}"] if first else []
            lines += self.banner()  # dig's, with the first message
        at = 0
        onesoa = bool(getattr(self.view, "onesoa", False)) and a["qtype"] == "AXFR"
        for j, part in enumerate(a["parts"]):
            if j and part.get("tsig_note"):  # dig: before the message that did not verify
                lines.append(f";; {part['tsig_note']}")
            lines += [f";; {note}" for note in part.get("notes", [])]
            records = a["answers"][at : at + part["answers"]]
            at += part["answers"]
            if self.short:
                lines += [style.data(x) for x in records]
                continue
            if onesoa:  # dig +onesoa (AXFR): the first message's first SOA, no other
                soas = [k for k, x in enumerate(records) if x["type"] == "SOA"]
                drop = set(soas[1:] if j == 0 else soas)
                records = [x for k, x in enumerate(records) if k not in drop]
            message = {**part, "answers": records}
            if "question" in part:
                message["qname"], message["qtype"], message["qclass"] = part["question"]
            lines += self.message(message, show)
        if a.get("failed"):
            lines.append(f"; {a['failed']}")
        kind = a.get("error_kind")
        if a.get("error") is None:
            return lines
        where = f"{a['server']}#{a['port']}"
        texts = getattr(self.view, "server_texts", None) or {}
        if kind in ("refused", "tcp"):  # dig: the lookup's name as typed, no final dot
            why = ("connection refused" if kind == "refused" else "timed out"
                   if "timed out" in a["error"] else a["error"].split(": ", 1)[-1])  # fmt: skip
            user = texts.get(a["server"]) or self.user_server or a["server"]
            lines.append(connect_failed_line(a, user, why))
            if not a.get("next_server"):  # dig: said but when it goes on to the next server
                lines.append(";; no servers could be reached")
        elif kind == "malformed" and "packet" in a:
            lines += [f";; Got bad packet: {a['reason']}", *hex_dump(bytes.fromhex(a["packet"]))]
        elif kind in ("eof", "timeout", "reset"):
            what = {"eof": "end of file", "timeout": "timed out"}.get(kind, "connection reset")
            lines.append(f";; communications error to {where}: {what}")
            if last:  # dig's banner, if no message showed it
                lines += [*self.banner(always=self.error_banner, failed=True),
                          ";; no servers could be reached"]  # fmt: skip
        else:  # an ID mismatch (dig's words), a cap reached (ours)
            lines.append(f";; {a['error']}")
        return lines

    def stats(self, r: Record, size_line: str) -> list[str]:
        """dig's statistics: query time, server, when, the size line, a blank line."""
        lines = []
        took = r["rtt_us"] if r.get("rtt_us") is not None else r.get("query_time_us")
        if took is not None and getattr(self.args, "usec", False):  # dig -u
            lines.append(f";; Query time: {int(took)} usec")
        elif took is not None:
            lines.append(f";; Query time: {int(took // 1000)} msec")
        texts = getattr(self.view, "server_texts", None) or {}
        user = texts.get(r["server"]) or self.user_server or r["server"]
        return [
            *lines,
            f";; SERVER: {r['server']}#{r['port']}({user}) ({r['proto'].upper()})",
            f";; WHEN: {when(now_of(self.args))}",
            size_line,
            *(
                [";; WARNING -- Some TSIG could not be validated"] if self.tsig_failed(r) else []
            ),  # dig's, after the size
            *(
                [";; WARNING -- TSIG key was not used."]
                if getattr(self.args, "tsig_unused", False)
                or getattr(self.view, "tsig_unused", False)
                else []
            ),
            "",
        ]

    def tsig_failed(self, r: Record) -> bool:
        """dig's `Some TSIG could not be validated`: from the first reply that did not
        verify, every later signed lookup's too (dig's `validated` is a global)."""
        if r.get("tsig_verified") is False:
            self.tsig_failures = True
        return self.tsig_failures and r.get("tsig_verified") is not None

    def message(self, r: Record, show: dict[str, bool] | None = None) -> list[str]:
        """The reply: header, OPT pseudosection, sections and statistics as dig shows
        them; a blank line ends each block (the last one is the record's line end).
        `show`: the display switches (default: the view's)."""
        show, style = show or self.show, self.style
        comments = show["comments"]
        lines: list[str] = []
        if comments:
            flags = "".join(f" {f.lower()}" for f in FLAG_ORDER if f in r["flags"])
            qd, an, ns, ar = r.get("counts") or (1, len(r["answers"]), 0, 0)
            mbz = "; MBZ: 0x4" if r.get("z") else ""  # dig's word for the Z bit
            lines += [
                ";; Got answer:",
                f";; ->>HEADER<<- opcode: {r.get('opcode', 'QUERY')}, "
                f"status: {dig_status(r['rcode'])}, "
                f"id: {r.get('id')}",
                f";; flags:{flags}{mbz}; QUERY: {qd}, ANSWER: {an}, AUTHORITY: {ns}, "
                f"ADDITIONAL: {ar}",
            ]
            if "RD" in r["flags"] and "RA" not in r["flags"] and not r.get("sent"):
                lines.append(";; WARNING: recursion requested but not available")
            if r.get("extra_bytes"):
                lines.append(f";; WARNING: Message has {r['extra_bytes']} extra bytes at end")
            lines.append("")
            if r.get("edns") is not None:  # as dig 9.18: no blank line after it
                lines += [";; OPT PSEUDOSECTION:", *_opt_lines(r["edns"])]
        sections = [("QUESTION", "question", None), ("ANSWER", "answer", r["answers"]),
                    ("AUTHORITY", "authority", r.get("authority", [])),
                    ("ADDITIONAL", "additional", r.get("additional", []))]  # fmt: skip
        for title, key, records in sections:
            if not show[key]:
                continue
            no_question = "qname" not in r or (
                not r.get("sent") and (r.get("counts") or [1])[0] == 0
            )  # a transfer's message without one, a reply to +header-only
            if records is None and no_question:
                if r.get("sent"):  # dig +header-only's query: the title alone
                    lines += [f";; {title} SECTION:", ""] if comments else []
                continue
            if records is None:
                cls, rtype = style.names({"class": r.get("qclass", "IN"), "type": r["qtype"]})
                qname = r.get("reply_qname") or r["qname"]  # dig: the reply's, as it came
                body = [question_line(qname, rtype, cls, style)]
            else:
                body = [rr_line(a, style) for a in records]
            if body:
                lines += [f";; {title} SECTION:", *body, ""] if comments else body
        if show["additional"] and r.get("tsig"):  # dig: after the additional section
            body = [rr_line(a, style) for a in r["tsig"]]
            lines += [";; TSIG PSEUDOSECTION:", *body, ""] if comments else body
        if r.get("sent"):  # dig +qr's query: its size, not the statistics
            return [*lines, f";; QUERY SIZE: {r['size']}", ""] if show["stats"] else lines
        twice = 2 if r.get("stats_twice") else 0 if r.get("stats_none") else 1
        if show["stats"]:
            lines += self.stats(r, f";; MSG SIZE  rcvd: {r['size']}") * twice
        elif getattr(self.view, "identify", False):  # dig +identify +nostats
            lines += [
                f";; Received {r['size']} bytes from {r['server']}#{r['port']}"
                f"({self.user_server or r['server']}) in {self.took(r)}",
                "",
            ] * twice
        return lines

    def with_queries(self, r: Record, tail: list[str]) -> list[str]:
        """dig +qr: the banner, then each query sent (`;; Sending:`) before what came of
        it (a communications error, a truncated reply, a SERVFAIL with +nofail, a
        BADVERS or BADCOOKIE: the next round's query), the remarks on the last reply, then `tail`
        (the reply; `no servers could be reached`). A TCP connection that failed sent
        nothing: its lines as they are."""
        wires = [*r.get("query_before", []), r["query"]]
        k = 0
        out: list[str] = []
        after: list[str] = []
        before: list[str] = []  # the lines before the first query

        sent: list[bool] = []

        def send() -> None:
            if not sent:  # dig's banner comes with the first message it prints (+cmd)
                out.extend(self.banner())
                sent.append(True)
            out.extend(self.sending({"query": wires[min(k, len(wires) - 1)]}))

        tries = error_lines(r) if "error" in r else []
        shown = list(r.get("badcookies", []))  # +showbadcookie: each after its query
        for note in [*r.get("notes", []), *(t.removeprefix(";; ") for t in tries)]:
            if note.startswith(("communications error", *REQUEUED)) or (
                note.startswith("Got SERVFAIL reply") and note.endswith("trying next server")
            ):  # fmt: skip
                send()
                if note.startswith("BADCOOKIE, retrying") and shown:
                    out.extend(self.message(shown.pop(0)))
                if self.show["comments"] or not note.startswith(COMMENTS):
                    out.append(f";; {note}")
                k += note.startswith(REQUEUED)  # (the next query sent)
            elif note.startswith(("Connection to", "no servers could be reached")):
                (out if sent else before).append(f";; {note}")
            elif self.show["comments"] or not note.startswith(COMMENTS):
                after.append(f";; {note}")
        if "error" not in r:
            send()
            out += after
        return [*before, *out, *tail]

    def sending(self, r: Record) -> list[str]:
        """dig +qr: `;; Sending:` and the query as dig prints it before it goes (its
        PADDING option still empty), `;; QUERY SIZE: N` for its statistics."""
        from packetlab.measure.dns import query_record

        lines = self.message(query_record(bytes.fromhex(r["query"])))
        return lines[:1] and [";; Sending:", *lines[1:]] if self.show["comments"] else lines


#: dig makes its banner in a buffer of 1,024 bytes (dig.h's `cmdline`, strlcat): a longer
#: one is cut at 1,023 bytes, its last line with no newline: what follows runs on from it
#: (`...aaaa;; Got answer:`; session 30, dig30)
BANNER_BYTES = 1023
GLUE = "\0"  # ends a cut banner's last line (no argument holds a NUL): DigText drops it


def _cut(lines: list[str]) -> list[str]:
    """The banner's lines as dig's buffer holds them: cut at BANNER_BYTES (a character
    cut in two: its first bytes kept, as lone surrogates written as bytes, as dig writes
    them), the last one then marked to run on."""
    raw = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    if len(raw) <= BANNER_BYTES:
        return lines
    *whole, last = raw[:BANNER_BYTES].decode("utf-8", "surrogateescape").split("\n")
    return [*whole, last + GLUE]


def _echoed(word: str) -> str:
    """A word as dig 9.18's banner shows it: its parser cut `+WORD=` with no value at the
    `=` in place (`+cookie=` is shown `+cookie`), and `+ednsopt=CODE:` with no data at
    the `:` (session 24, dig24)."""
    if not word.startswith("+"):
        return word
    if word.endswith("="):
        return word[:-1]
    key, eq, value = word.partition("=")
    if eq and value.endswith(":") and value.count(":") == 1 and "ednsopt".startswith(key[1:]):
        return word[:-1]
    return word
