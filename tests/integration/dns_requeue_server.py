# Run as a child process: imports only the standard library, Twisted and dnspython.
"""A DNS server whose answers make dig 9.18 ask again (its requeued lookups): it enforces
RFC 7873 cookies as a BIND server with `require-server-cookie` does, and answers EDNS
versions above its own with BADVERS, for `pktlab run dns` side by side with dig:

    python dns_requeue_server.py [ADDR]     # prints "PORT" (UDP and TCP on ADDR)

Every reply echoes the query's client cookie (its first 8 bytes) with a fixed 16-byte
server cookie; the answer is `NAME 60 IN A 192.0.2.7`. By the first label of the name:
`enforce` BADCOOKIE over UDP until the query carries the server cookie (then the
answer); `always` BADCOOKIE over UDP whatever the cookie (the answer over TCP);
`everywhere` BADCOOKIE over TCP too; `mismatch` the answer with another client cookie
(dig: `Client COOKIE mismatch`), `mismatchbad` BADCOOKIE with it; `noopt` BADCOOKIE
over UDP with no COOKIE at all (dig cannot retry); `tcmismatch` TC over UDP with
another client cookie, the answer over TCP; `tcbad` TC over UDP, BADCOOKIE over TCP.
A client cookie of any length is read (dig +cookie=HEX sends 1..40 bytes).

EDNS versions: `v1` speaks EDNS 0 and 1 (BADVERS with version 1 to a query of version 2
or more; the answer with the query's version); `liar` answers any version above 0
with BADVERS and version 3 (dig asks again only with a version below the one asked)."""

from __future__ import annotations

import sys

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
from childserver import query_of, serve_dns

SERVER_COOKIE = bytes.fromhex("00112233445566778899aabbccddeeff")
COOKIE = dns.edns.OptionType.COOKIE
# a client cookie of any length: dnspython's CookieOption refuses one under 8 bytes
dns.edns.register_type(dns.edns.GenericOption, COOKIE)


def reply_to(wire: bytes, tcp: bool) -> bytes | None:
    got = query_of(wire)
    if got is None:
        return None
    q, label = got
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    sent = b"".join(bytes(o.to_wire() or b"") for o in q.options if o.otype == COOKIE)
    options: list[dns.edns.Option] = []
    if sent and label != "noopt":
        client = b"\x01" * 8 if label in ("mismatch", "mismatchbad", "tcmismatch") else sent[:8]
        options.append(dns.edns.GenericOption(COOKIE, client + SERVER_COOKIE))
    if q.edns >= 0:
        r.use_edns(min(q.edns, 1) if label == "v1" else 0, 0, 1232, options=options)
    if (label == "v1" and q.edns > 1) or (label == "liar" and q.edns > 0):
        r.use_edns(1 if label == "v1" else 3, 0, 1232, options=options)
        r.set_rcode(dns.rcode.BADVERS)
        return r.to_wire()
    if label.startswith("tc") and not tcp:
        r.flags |= dns.flags.TC
        return r.to_wire()
    bad = {
        "enforce": not tcp and sent[8:] != SERVER_COOKIE,
        "always": not tcp, "everywhere": True, "mismatchbad": not tcp, "noopt": not tcp,
        "tcbad": tcp,
    }.get(label, False)  # fmt: skip
    if bad and q.edns >= 0:
        r.set_rcode(dns.rcode.BADCOOKIE)
    else:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
    return r.to_wire()


def main(argv: list[str]) -> None:
    serve_dns(lambda q: reply_to(q, False), lambda q: reply_to(q, True), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
