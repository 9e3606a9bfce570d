"""dig's `IXFR=N +notcp` (BIND 9.18): the IXFR request asked over UDP and its reply
printed as a query's (the records without header or question, as a transfer shows them,
then `;; SERVER: ...(UDP)` and `;; MSG SIZE  rcvd`); a truncated (TC) reply is the
transfer over TCP (`;; Truncated, retrying in TCP mode.` with +comments), +ignore keeps
it. Through the scripted endpoint; the expected texts are dig's, against
tests/integration/dns_xfr_server.py (which answers as `reply` does here)."""

from __future__ import annotations

import argparse
import io
import re
import struct
import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))

from ctl_fakes import Rig
from twisted.internet.defer import Deferred

import packetlab.cli as cli
from packetlab.cli import run_dns_ask, run_dns_words
from packetlab.cli.run_command import Progress, begun, measure
from packetlab.controller.stop import StopSignal
from packetlab.wire import Nopen, Nsend, Proto

SERVER = ("127.0.0.1", 48002)
IX = "ixfr.xfr."
RR = tuple[str, int, str, str]


def soa(serial: int, zone: str = IX) -> RR:
    return (zone, 3600, "SOA", f"ns.{zone} h.{zone} {serial} 7200 3600 1209600 300")


# dns_xfr_server.py's incremental reply from serial 1 (to 3), and tc.xfr.'s zone
DIFFS = [soa(3), soa(1), (f"a.{IX}", 300, "A", "192.0.2.1"), soa(2),
         (f"c.{IX}", 300, "A", "192.0.2.3"), soa(2), (f"b.{IX}", 300, "A", "192.0.2.2"),
         soa(3), (f"d.{IX}", 300, "TXT", '"new in 3"'), soa(3)]  # fmt: skip
TC = [soa(5, "tc.xfr."), ("tc.xfr.", 3600, "NS", "ns.tc.xfr."),
      ("www.tc.xfr.", 60, "A", "192.0.2.5"), soa(5, "tc.xfr.")]  # fmt: skip


def reply(query: bytes, records: list[RR], tc: bool = False) -> bytes:
    """dns_xfr_server.py's message: AA set (TC when asked), the records in order."""
    r = dns.message.make_response(dns.message.from_wire(query))
    r.flags |= dns.flags.AA | (dns.flags.TC if tc else 0)
    for name, ttl, rtype, data in records:
        r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, data))
    return bytes(r.to_wire(want_shuffle=False, max_size=65535))


def run(rig: Rig, *words: str, at: tuple[str, ...] = ("@127.0.0.1",)) -> str:
    """What `pktlab run dns @127.0.0.1 -p 48002 WORDS` prints through the rig (`at`: the
    servers)."""
    argv = [*at, "-p", "48002", *words]
    args = cli.parse(["run", "dns", *argv])
    args.cmdline = argv
    out = io.StringIO()

    async def link(reactor: object, a: argparse.Namespace, emit: Any, p: Progress) -> None:
        await begun(a._command.experiment(a, emit, p), p)(rig.session)

    rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), out, run=link)))
    return out.getvalue()


NATURE = [(re.compile(r"^; <<>> .*? <<>> ", re.M), "; <<>> PROGRAM <<>> "),
          (re.compile(r"(status: \w+, id: )\d+"), r"\1ID"),
          (re.compile(r"^;; Query time: .*$", re.M), ";; Query time: T"),
          (re.compile(r"^;; WHEN: .*$", re.M), ";; WHEN: W")]  # fmt: skip


def normal(text: str) -> str:
    for pattern, to in NATURE:
        text = pattern.sub(to, text)
    return text


def sent(rig: Rig) -> list[tuple[int, dns.message.Message]]:
    """Each query the endpoint sent, with its protocol."""
    protos: dict[int, int] = {}  # a socket id is used again once closed
    out = []
    for m in rig.endpoint.received:
        if isinstance(m, Nopen):
            protos[m.sktid] = m.proto
        elif isinstance(m, Nsend):
            tcp = protos[m.sktid] == Proto.TCP
            out.append((protos[m.sktid], dns.message.from_wire(m.data[2:] if tcp else m.data)))
    return out


def test_ixfr_notcp_is_asked_over_udp_and_printed_as_digs_query() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [reply(q, DIFFS)]
    assert normal(run(rig, "ixfr.xfr", "IXFR=1", "+notcp")) == normal(DIG_IXFR)
    ((proto, q),) = sent(rig)  # dig's request, over UDP: no flag, the client's SOA
    assert proto == Proto.UDP and q.flags == 0 and q.question[0].rdtype == dns.rdatatype.IXFR
    (auth,) = q.authority
    assert auth[0].to_text() == ". . 1 0 0 0 0" and q.payload == 1232


def test_ixfr_notcp_up_to_date_and_before_the_name() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [reply(q, [soa(3)])]
    out = run(rig, "+notcp", "ixfr.xfr", "IXFR=3", "+nocmd")
    assert out.startswith(f"{IX}\t\t3600\tIN\tSOA\tns.{IX} h.{IX} 3 7200 3600 1209600 300\n")
    assert "(UDP)\n" in out and ";; MSG SIZE  rcvd: 78\n" in out
    # without +notcp (or with +tcp): the transfer over TCP, as before
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = lambda q: [struct.pack(">H", len(r)) + r for r in
                                                  [reply(q[2:], [soa(3)])]]  # fmt: skip
    for words in (["ixfr.xfr", "IXFR=3"], ["ixfr.xfr", "IXFR=3", "+notcp", "+tcp"]):
        assert ";; XFR size: 1 records (messages 1, bytes 78)" in run(rig, *words)


def tc_rig() -> Rig:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [reply(q, [], tc=True)]
    rig.endpoint.tcp_servers[SERVER] = lambda q: [
        struct.pack(">H", len(r)) + r for r in (reply(q[2:], TC[:2]), reply(q[2:], TC[2:]))
    ]
    return rig


def test_a_truncated_ixfr_notcp_reply_is_the_transfer_over_tcp() -> None:
    rig = tc_rig()
    assert normal(run(rig, "tc.xfr", "IXFR=1", "+notcp", "+comments")) == normal(DIG_TC)
    (udp, q1), (tcp, q2) = sent(rig)  # the same request (its cookie too), then over TCP
    assert (udp, tcp) == (Proto.UDP, Proto.TCP)
    assert q1.to_wire()[2:] == q2.to_wire()[2:]
    out = run(tc_rig(), "tc.xfr", "IXFR=1", "+notcp")  # no +comments: no Truncated line
    assert out.startswith("\n; <<>>") and "Truncated" not in out and "XFR size: 4 records" in out


def test_a_truncated_ixfr_notcp_reply_is_asked_over_tcp_from_the_first_server() -> None:
    """dig requeues the lookup over TCP: from its first server again (here one that
    refuses the connection), then the next (was: only the one that sent TC)."""
    rig = tc_rig()
    words = ["tc.xfr", "IXFR=1", "+notcp", "+tries=1", "+time=1"]
    out = run(rig, *words, at=("@127.0.0.2", "@127.0.0.1"))
    assert out.startswith(
        ";; communications error to 127.0.0.2#48002: timed out\n"
        ";; Connection to 127.0.0.2#48002(127.0.0.2) for tc.xfr failed: connection refused.\n"
        "\n; <<>>"
    )  # fake: the UDP query to .2 unanswered (dig's: ICMP, `connection refused`)
    assert ";; SERVER: 127.0.0.1#48002(127.0.0.1) (TCP)" in out and "XFR size: 4 records" in out


def test_a_truncated_ixfr_notcp_reply_with_ignore_is_shown_as_it_came() -> None:
    rig = tc_rig()
    assert normal(run(rig, "tc.xfr", "IXFR=1", "+notcp", "+ignore", "+nocmd")) == normal(DIG_IGNORE)
    assert [p for p, _ in sent(rig)] == [Proto.UDP]


def test_a_batch_lines_tcp_switches_are_ignored_as_dig(tmp_path: Path) -> None:
    """dig 9.18 ignores +tcp, +vc, +notcp and +novc on a `-f` line (its is_batchfile): the
    command line's hold (`ixfr.xfr IXFR=1 +notcp` on a line was a TCP transfer in dig,
    UDP in ours; `x.xfr A +tcp` on a line UDP in dig, TCP in ours)."""
    f = tmp_path / "batch"
    f.write_text("ixfr.xfr IXFR=1 +notcp\nx.xfr A +tcp\n+vc y.xfr\n")
    for argv, tcp in ((["-f", str(f)], False), (["+tcp", "-f", str(f)], True)):
        args = cli.parse(["run", "dns", "@127.0.0.1", *argv])
        run_dns_words.dig_style(args)
        lines = [entry[3] for entry in args.plan]
        assert [bool(line.tcp) for line in lines] == [tcp] * 3
        assert not run_dns_ask._ixfr_over_udp("IXFR=1", lines[0])
    args = cli.parse(["run", "dns", "@127.0.0.1", "+notcp", "-f", str(f)])
    run_dns_words.dig_style(args)  # the command line's +notcp: UDP, as dig
    assert run_dns_ask._ixfr_over_udp("IXFR=1", args.plan[0][3])


DIG_IXFR = """\

; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 48002 ixfr.xfr IXFR=1 +notcp
; (1 server found)
;; global options: +cmd
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 3 7200 3600 1209600 300
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 1 7200 3600 1209600 300
a.ixfr.xfr.		300	IN	A	192.0.2.1
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 2 7200 3600 1209600 300
c.ixfr.xfr.		300	IN	A	192.0.2.3
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 2 7200 3600 1209600 300
b.ixfr.xfr.		300	IN	A	192.0.2.2
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 3 7200 3600 1209600 300
d.ixfr.xfr.		300	IN	TXT	"new in 3"
ixfr.xfr.		3600	IN	SOA	ns.ixfr.xfr. h.ixfr.xfr. 3 7200 3600 1209600 300
;; Query time: 0 msec
;; SERVER: 127.0.0.1#48002(127.0.0.1) (UDP)
;; WHEN: Sat Dec 05 04:10:07 UTC 2026
;; MSG SIZE  rcvd: 335

"""

DIG_TC = """\
;; Truncated, retrying in TCP mode.

; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 48002 tc.xfr IXFR=1 +notcp +comments
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 64655
;; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 8192
;; ANSWER SECTION:
tc.xfr.			3600	IN	SOA	ns.tc.xfr. h.tc.xfr. 5 7200 3600 1209600 300
tc.xfr.			3600	IN	NS	ns.tc.xfr.

;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 64655
;; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 8192
;; ANSWER SECTION:
www.tc.xfr.		60	IN	A	192.0.2.5
tc.xfr.			3600	IN	SOA	ns.tc.xfr. h.tc.xfr. 5 7200 3600 1209600 300

;; Query time: 0 msec
;; SERVER: 127.0.0.1#48002(127.0.0.1) (TCP)
;; WHEN: Sat Dec 05 04:10:07 UTC 2026
;; XFR size: 4 records (messages 2, bytes 186)

"""

DIG_IGNORE = """\
;; Query time: 0 msec
;; SERVER: 127.0.0.1#48002(127.0.0.1) (UDP)
;; WHEN: Sat Dec 05 04:10:07 UTC 2026
;; MSG SIZE  rcvd: 35

"""
