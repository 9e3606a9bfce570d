"""The bytes `pktlab run dns` sends, beside dig 9.18's (session 24, dig24): a UDP+TCP
server here records each query's wire bytes and answers each with a fixed reply (the
question back, no records; an OPT of 4096 when the query had one); dig and ours run the
same command lines against two of them, and the recordings must match but for the
message ID and the client cookie (random on both sides), the outputs but for what
test_dns_dig's `normal` masks. docs/dns.md "Session 24 (dig24)" lists the grid compared;
what matched already is pinned by test_dns_options_dig's test_the_query_is_digs_bytes
and the other test_dns_*_dig files; here the differences found, each fixed."""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_dns_dig import dig, normal, ours, pytestmark  # noqa: F401


class Recorder:
    """UDP and TCP on one loopback port: each query's bytes kept (with how it came)."""

    def __init__(self) -> None:
        for _ in range(50):  # the UDP port's number may be taken over TCP: another one
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            try:
                self.tcp = socket.create_server(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
        else:
            raise OSError("no port free over both UDP and TCP")
        self.queries: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        for serve in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()

    def take(self) -> list[tuple[str, bytes]]:
        with self.lock:
            got, self.queries[:] = list(self.queries), []
        return got

    def _keep(self, how: str, query: bytes) -> bytes:
        with self.lock:
            self.queries.append((how, query))
        return reply(query)

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65535)
                self.udp.sendto(self._keep("udp", data), peer)
            except OSError:
                return

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while chunk := conn.recv(65535):
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = int.from_bytes(buf[:2], "big")
                    query, buf = buf[2 : 2 + n], buf[2 + n :]
                    answer = self._keep("tcp", query)
                    conn.sendall(len(answer).to_bytes(2, "big") + answer)


def reply(query: bytes) -> bytes:
    """The fixed answer: the query's ID, QR RA (RD and CD copied), its question, no
    records, an OPT (udp 4096, no options) if it had an additional record."""
    if len(query) < 12:
        return query
    flags, qd, _an, _ns, ar = struct.unpack("!5H", query[2:12])
    end = 12
    if qd:
        while end < len(query) and query[end]:
            end += 1 + query[end]
        end += 5
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00" if ar else b""
    head = struct.pack("!5H", 0x8080 | (flags & 0x7910), min(qd, 1), 0, 0, 1 if opt else 0)
    return query[:2] + head + query[12:end] + opt


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    mine, theirs = Recorder(), Recorder()
    yield mine, theirs
    mine.close()
    theirs.close()


def masked(query: bytes) -> bytes:
    """The query but for its ID and the client cookie's 8 random bytes."""
    out = bytearray(query)
    out[:2] = b"\0\0"
    for m in re.finditer(rb"(?=\x00\x0a\x00[\x08\x18\x28])", bytes(out)):
        out[m.start() + 4 : m.start() + 12] = b"C" * 8
    return bytes(out)


def compare(servers: tuple[Recorder, Recorder], *words: str) -> list[tuple[str, bytes]]:
    """Ours and dig on the same words at once, each to its own recorder: the same
    queries (masked) and the same output (normal, the port written PORT); ours."""
    mine, theirs = servers
    mine.take(), theirs.take()
    with ThreadPoolExecutor(1) as pool:
        digs = pool.submit(dig, "@127.0.0.1", "-p", str(theirs.port), *words)
        got = ours("@127.0.0.1", "-p", str(mine.port), *words)
        want = digs.result()
    assert "Traceback" not in got.stderr, got.stderr
    sent, expected = mine.take(), theirs.take()
    hexes = [[(h, masked(q).hex()) for h, q in qs] for qs in (sent, expected)]
    assert hexes[0] == hexes[1], words
    text = normal(got.stdout).replace(str(mine.port), "PORT")
    assert text == normal(want.stdout).replace(str(theirs.port), "PORT"), (words, got.stderr)
    assert got.returncode == want.returncode, (words, got.stderr)
    return sent


def test_a_bufsize_of_32768_or_more_is_digs_default(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18 keeps +bufsize in an int16_t: 32768..65535 read back negative, its "not
    given": `udp: 1232` (we sent the number as given: `udp: 65535`)."""
    for size in ("32767", "32768", "40000", "65535"):
        sent = compare(servers, "+qr", f"+bufsize={size}", "a.test")
        udp = 32767 if size == "32767" else 1232
        assert b"\x00\x00\x29" + udp.to_bytes(2, "big") in sent[0][1], size
    compare(servers, "+bufsize=512", "+bufsize=40000", "a.test")  # the later one: default
    compare(servers, "+bufsize=1000", "a.test", "+bufsize=40000", "b.test")


def test_bufsize_asks_with_edns_even_after_noedns(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18: a +bufsize given (0..32767, or alone: 1232) means an OPT record whatever
    +noedns says, before or after it (ours had none); one of 32768 or more is not given
    (no OPT after +noedns)."""
    for words in (["+noedns", "+bufsize=1000"], ["+bufsize=1000", "+noedns"],
                  ["+noedns", "+bufsize=0"], ["+noedns", "+bufsize"]):  # fmt: skip
        sent = compare(servers, "+qr", *words, "a.test")
        assert struct.unpack("!H", sent[0][1][10:12]) == (1,), words  # ARCOUNT 1: the OPT
    sent = compare(servers, "+noedns", "+bufsize=40000", "a.test")
    assert sent[0][1][10:12] == b"\0\0"


def test_bufsize_without_a_number_is_digs_default(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18: `+bufsize` alone offers its default, 1232 (ours refused the word)."""
    compare(servers, "+bufsize", "a.test")
    sent = compare(servers, "+qr", "+bufsize=1000", "+bufsize", "a.test")
    assert b"\x00\x00\x29\x04\xd0" in sent[0][1]  # udp 1232, the OPT's first bytes


def test_reverse_of_an_ipv4_mapped_address_is_ip6_arpa(
    servers: tuple[Recorder, Recorder],
) -> None:
    """dig 9.18 -x ::ffff:192.0.2.1 asks 1.0.2.0.0.0.0.c.f.f.f.f.0...ip6.arpa PTR (ours
    asked 1.2.0.192.in-addr.arpa: dnspython's from_address maps it to IPv4)."""
    sent = compare(servers, "-x", "::ffff:192.0.2.1", "+qr", "-x", "192.0.2.1")
    assert b"\x01c\x01f\x01f\x01f\x01f" in sent[0][1] and b"\x03ip6\x04arpa\x00" in sent[0][1]
    assert b"\x07in-addr\x04arpa\x00" in sent[1][1]
    compare(servers, "-x", "::1.2.3.4")


def test_subnet_prefixes_as_dig_reads_them(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18's parse_netprefix: a prefix past the family's length is that length
    (/33 is /32; ours refused it), a short IPv4 address with a prefix gets `.0`s
    (10/8, 0/0: ours refused them); a prefix that is no number is refused (ours took
    `192.0.2.1/` as /32)."""
    want = {"192.0.2.1/33": b"\x00\x01\x20\x00\xc0\x00\x02\x01",
            "2001:db8::1/200": b"\x00\x02\x80\x00\x20\x01\x0d\xb8" + bytes(11) + b"\x01",
            "10.1/16": b"\x00\x01\x10\x00\x0a\x01", "0/0": b"\x00\x01\x00\x00",
            "0/24": b"\x00\x01\x18\x00\x00\x00\x00"}  # fmt: skip
    for value, data in want.items():
        sent = compare(servers, f"+subnet={value}", "a.test")
        assert b"\x00\x08" + len(data).to_bytes(2, "big") + data in sent[0][1], value
    got = ours("@127.0.0.1", "-p", "1", "+subnet=192.0.2.1/", "a.test")
    assert got.returncode == 2 and got.stderr.count("\n") == 1, got.stderr
    assert "invalid prefix length in '192.0.2.1/': not a valid number" in got.stderr


def test_a_cookie_given_of_any_length_to_40_as_dig(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18 sends +cookie=HEX as given, 1 to 40 bytes (ours refused all but 8 and
    16..40), and `+cookie=` is +cookie (a random one; ours refused it)."""
    for n in (1, 4, 10, 40):
        cookie = bytes(range(1, n + 1))
        sent = compare(servers, f"+cookie={cookie.hex()}", "a.test")
        assert b"\x00\x0a" + n.to_bytes(2, "big") + cookie in sent[0][1], n
    for n in (1, 10):  # +qr prints it (was an internal error: dnspython's CookieOption)
        compare(servers, "+qr", f"+cookie={bytes(range(1, n + 1)).hex()}", "a.test")
    sent = compare(servers, "+qr", "+cookie=", "a.test")  # (the banner: see docs/dns.md)
    assert b"\x00\x0a\x00\x08" in sent[0][1]
    got = ours("@127.0.0.1", "-p", "1", "+cookie=" + "00" * 41, "a.test")
    assert got.returncode == 2 and "COOKIE data too large" in got.stderr, got.stderr


def test_a_word_with_an_empty_value_as_dig(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18 reads `+WORD=` as `+WORD` (its strtok finds no value): `+bufsize=` is
    its default, `+split=` and `+split` change nothing (ours refused the three), and its
    banner shows the word cut at the `=` (`+ednsopt=CODE:` at the `:`)."""
    for words in (["+bufsize="], ["+split="], ["+split"], ["+split=8", "+split"],
                  ["+ednsopt=65001:"], ["+nsid="]):  # fmt: skip
        compare(servers, *words, "a.test")


def test_a_type_word_after_dash_x_is_a_type(servers: tuple[Recorder, Recorder]) -> None:
    """dig 9.18: after -t or -c a type or class word is a name, after -x not: `-x
    192.0.2.1 MX` asks MX of 1.2.0.192.in-addr.arpa (ours asked PTR, then `MX.` A)."""
    sent = compare(servers, "-x", "192.0.2.1", "MX", "b.test")
    assert len(sent) == 2 and b"\x04arpa\x00\x00\x0f\x00\x01" in sent[0][1]  # MX IN
    compare(servers, "-x", "192.0.2.1", "CH")
    compare(servers, "-c", "CH", "a.test", "MX")  # (-c: MX is a name, as before)


def test_batch_lines_as_dig(servers: tuple[Recorder, Recorder], tmp_path: Path) -> None:
    """The fixes above on -f lines too; a line's banner shows its words as written
    (`+bufsize=` kept: dig copies the line before it reads it)."""
    batch = tmp_path / "batch"
    lines = ["a.test +bufsize=40000", "b.test +noedns +bufsize=100", "-x ::ffff:10.0.0.1",
             "c.test +subnet=10/8", "d.test +cookie=0102", "-x 192.0.2.1 MX",
             "e.test +bufsize="]  # fmt: skip
    batch.write_text("".join(f"{line}\n" for line in lines))
    for words in ([], ["+bufsize=1000"], ["+noedns"]):
        assert len(compare(servers, *words, "-f", str(batch))) == 7


def test_types_only_bind_names_in_the_question_as_dig(
    servers: tuple[Recorder, Recorder],
) -> None:
    """The same bytes (TYPEnnn), and dig 9.18's question line names UINFO, RKEY, DOA,
    ... (ours wrote TYPE100, TYPE57, TYPE259: dnspython's words); +yaml's too."""
    for qtype in ("UINFO", "RKEY", "DOA", "type31", "KEYDATA"):
        compare(servers, "-t", qtype, "a.test")
    compare(servers, "+qr", "-t", "DOA", "a.test")
    got = ours("@127.0.0.1", "-p", str(servers[0].port), "+yaml", "-t", "DOA", "a.test")
    assert "        - 'a.test. IN DOA'\n" in got.stdout, got.stdout
