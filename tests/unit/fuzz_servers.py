"""Fuzz targets for what a hostile server sends a measurement (session 27): DNS replies
and dig's text of them, HTTP/1 heads and bodies, Content-Encoding decoding, HTTP/2
frames, iperf3's control messages, ICMP replies. The invariants are in each target's
docstring; `fuzz_decoders` lists them."""

from __future__ import annotations

import argparse
import json
import math
import struct
import zlib
from typing import Any

from fuzz_common import pieces

# ---------------------------------------------------------------------------------- dns


def fuzz_dns(data: bytes) -> None:
    """A reply to dig's query (the first two bytes replaced by the query's ID for an even
    first byte, so most inputs get past the ID check) read as BIND reads it: `_parse`
    returns the message or None, or raises `_Malformed` with a reason, nothing else; over
    a stream (`_stream_reply`) it is the reply or an error said; what parsed fills a
    DnsResult and prints as dig prints it (plain, +multiline, +yaml, +short, +idnout)
    and its record reads back (`to_dict` is JSON) without an exception."""
    import dns.message

    from packetlab.measure.dnsparse import _fill, _Malformed, _parse, _stream_reply
    from packetlab.measure.dnsresult import DnsResult

    query = _dns_query()
    wire_ = data[1:]
    if data[:1] and data[0] % 2 == 0 and len(wire_) >= 2:
        wire_ = struct.pack(">H", query.id) + wire_[2:]
    said: list[str] = []
    try:  # over UDP: a reply that is not ours is passed over (None), the wait goes on
        udp = _parse(query, wire_, said)
        assert udp is None or isinstance(udp, dns.message.Message)
    except _Malformed as e:
        assert e.reason and e.wire == wire_
    # over a stream, as dnstransport reads the one message: the reply, or the error
    result = DnsResult(qname="a.test.", qtype="A", server="192.0.2.53", port=53, proto="tcp")
    msg = _stream_reply(query, wire_, result, "TCP")
    if msg is not None:
        _fill(result, msg, wire_)
    else:
        assert result.error and result.error_kind in ("malformed", "mismatch"), result
    record = result.to_dict()
    json.dumps(record)
    for args in _dig_views():
        text = args.dig_text(record)
        assert text is None or isinstance(text, str)


_DNS: dict[str, Any] = {}


def _dns_query() -> Any:
    if "query" not in _DNS:
        import dns.message

        q = dns.message.make_query("a.test.", "A", use_edns=0, want_dnssec=False)
        q.id = 0x4242
        _DNS["query"] = q
    return _DNS["query"]


def _dig_views() -> list[argparse.Namespace]:
    """`pktlab run dns` parsed with a few display switches (each prints the same record
    its way)."""
    if "views" not in _DNS:
        import packetlab.cli as cli
        from packetlab.cli import run_dns_dig, run_dns_words

        made = []
        for extra in ([], ["+multiline"], ["+yaml"], ["+short"], ["+idnout", "+nottlid"]):
            a = cli.parse(["run", "dns", *extra, "a.test"])
            run_dns_words.dig_style(a)
            a.dig_text = run_dns_dig.DigText(a)
            made.append(a)
        _DNS["views"] = made
    views: list[argparse.Namespace] = _DNS["views"]
    return views


def _dns_seeds() -> list[bytes]:
    import dns.edns
    import dns.message
    import dns.rcode
    import dns.rrset

    q = _dns_query()
    out = []
    for rtype, rdatas in (
        ("A", ["192.0.2.1", "192.0.2.2"]),
        ("AAAA", ["2001:db8::1"]),
        ("MX", ["10 mx.a.test."]),
        ("TXT", ['"hello" "world"']),
        ("SOA", ["ns.a.test. host.a.test. 1 2 3 4 5"]),
        ("CNAME", ["b.a.test."]),
        ("CNAME", ["xn--bcher-kva.xn--a-.test."]),
        ("HINFO", ['"\\255\\000" "x y"']),
        ("NAPTR", ['100 10 "S" "SIP+D2U" "!^.*$!sip:a@b!" _sip._udp.a.test.']),
    ):
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text("a.test.", 300, "IN", rtype, *rdatas))
        r.use_edns(
            0, 0, 1232, options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, bytes(16))]
        )
        out.append(b"\x00" + r.to_wire())
    nx = dns.message.make_response(q)
    nx.set_rcode(dns.rcode.NXDOMAIN)
    nx.authority.append(dns.rrset.from_text("a.test.", 60, "IN", "SOA", "n. h. 1 2 3 4 5"))
    out.append(b"\x02" + nx.to_wire())
    return out


# --------------------------------------------------------------------------------- http


def fuzz_http_head(data: bytes) -> None:
    """An HTTP/1 response head as it comes (curl's header limits, `HeadLimits`): the
    outcome (done, the status, or HeadTooLarge's exit code and size) is the same however
    the bytes are cut; lenient h11 parsing of the head (`LenientHeads`) and the codings
    named in it (`transfer_codings`, `content_codings`, `decoder`) return or raise the
    modules' declared errors."""
    from packetlab.measure.http_decode import Undecodable, decoder, transfer_codings
    from packetlab.measure.http_head import HeadLimits, HeadTooLarge

    def limits(chunks: list[bytes]) -> tuple[object, ...]:
        h, buf = HeadLimits("s"), bytearray()
        for chunk in chunks:
            buf += chunk
            try:
                h.feed(buf)
            except HeadTooLarge as e:
                return ("too_large", e.exitcode, e.size, e.status)
            if h.done:
                break
        return ("done" if h.done else "wait", h.status, h.total)

    # curl's limits from a little input: a first byte over 200 pads the last line (what
    # a server streaming a line for ever sends) by 6 KiB a step, past 300 KiB; cut in
    # reads of ~4 KiB then (a few bytes each was most of a run's time)
    big, reads = data, pieces(data)
    if data[:1] and data[0] > 200:
        big = data[1:] + b"x" * ((data[0] - 200) * 6144)
        step = 4096 + (data[1] if len(data) > 1 else 0)
        reads = [big[i : i + step] for i in range(0, len(big), step)]
    whole = limits([big])
    cut = limits(reads)
    assert whole == cut, f"{whole} at once, {cut} cut in pieces"
    try:
        d = decoder(transfer_codings(big), 1 << 16, "s")
        if d is not None:
            d.feed(b"", final=True)
    except Undecodable as e:
        assert str(e)
    except Exception as e:  # each stage's own: TooMuchDecoded is a StreamError
        from packetlab.measure.stream import StreamError

        assert isinstance(e, StreamError), repr(e)


def fuzz_http1(data: bytes) -> None:
    """A server's bytes after our GET, as http1 reads them: `LenientHeads` (curl's
    leniencies rewritten for h11) then h11, cut as reads bring them, then the close.
    The events (heads, the body's bytes joined, the end) or h11's RemoteProtocolError are
    the same however the bytes are cut; nothing else is raised; a head's version is one
    curl speaks or UnsupportedVersion."""
    import h11

    from packetlab.measure.http_lenient import LenientHeads, UnsupportedVersion, supported

    def run(chunks: list[bytes]) -> list[object]:
        h = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 16)
        h.send(h11.Request(method="GET", target="/", headers=[("Host", "a.test")]))
        h.send(h11.EndOfMessage())
        heads = LenientHeads()
        got: list[object] = []

        def drain() -> bool:
            while True:
                try:
                    ev = h.next_event()
                except h11.RemoteProtocolError as e:
                    got.append(("error", e.error_status_hint))
                    return False
                if ev is h11.NEED_DATA:
                    return True
                if ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
                    got.append(("end", type(ev).__name__ if ev is not h11.PAUSED else "paused"))
                    return False
                if isinstance(ev, h11.Response | h11.InformationalResponse):
                    try:
                        version = supported(ev.http_version)
                    except UnsupportedVersion as e:
                        version = str(e)
                    got.append(("head", ev.status_code, version, tuple(ev.headers)))
                elif isinstance(ev, h11.Data):
                    if got and isinstance(got[-1], bytes):
                        got[-1] += bytes(ev.data)
                    else:
                        got.append(bytes(ev.data))
                else:
                    got.append(type(ev).__name__)

        for chunk in chunks:
            given = heads.take(chunk)
            if given:
                h.receive_data(given)
                if not drain():
                    return got
        held = heads.flush()
        if held:
            h.receive_data(held)
        h.receive_data(b"")
        drain()
        return got

    whole = run([data])
    cut = run(pieces(data, 5))
    assert whole == cut, f"{whole!r} at once, {cut!r} cut in pieces"


def fuzz_http_body(data: bytes) -> None:
    """A response body under a Content-Encoding (the first byte picks the codings, the
    rest is the body, cut in pieces as reads bring it): the outcome (the decoded bytes,
    or the error, a stream cut short told as such) is the same however it is cut, never
    more than the limit
    (TooMuchDecoded), a bad stream is Undecodable; and a body we encode decodes to
    itself."""
    from packetlab.measure.http_decode import TooMuchDecoded, Undecodable, decoder

    if not data:
        return
    codings = _CODINGS[data[0] % len(_CODINGS)]
    body = data[1:]
    limit = 4096

    def run(chunks: list[bytes]) -> tuple[object, ...]:
        d = decoder(list(codings), limit, "s")
        assert d is not None
        out = b""
        try:
            for chunk in chunks:
                out += d.feed(chunk)
                assert len(out) <= limit, f"{len(out)} bytes decoded (limit {limit})"
            out += d.feed(b"", final=True)
        except TooMuchDecoded:
            return ("too_much",)
        except Undecodable as e:
            return ("undecodable", e.truncated)
        assert len(out) <= limit, f"{len(out)} bytes decoded (limit {limit})"
        return ("ok", out)

    whole = run([body])
    cut = run(pieces(body, 3))
    # (zstd too since session 33: its frames' ends are read, test_fuzz.py pins it.)
    # A stream both over the limit and bad later may be either, by its reads: zstd meets
    # the bad block before it writes out the output that was over the limit (one read),
    # or after (reads cut before the bad block). Both refuse it: a refusal is compared
    # as such, but a stream cut short (`truncated`) is one however read (session 34).
    same = whole == cut or ("ok" not in (whole[0], cut[0]) and whole[0] != cut[0])
    assert same, f"{whole!r} at once, {cut!r} cut in pieces"
    if len(codings) == 1 and codings[0] in ("gzip", "deflate"):
        plain = body[: limit // 2]
        packed = _compress(codings[0], plain)
        assert run(pieces(packed)) == ("ok", plain), "decode(encode(x)) != x"


_CODINGS = (("gzip",), ("deflate",), ("br",), ("zstd",), ("deflate", "gzip"), ("x-gzip",))


def _compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
    else:
        c = zlib.compressobj(6, zlib.DEFLATED, 15)
    return c.compress(data) + c.flush()


def _http_seeds() -> list[bytes]:
    return [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
        b"HTTP/1.0 301 Moved\nLocation: /b\n\n",
    ]


def _http1_seeds() -> list[bytes]:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    return [
        *_http_seeds(),
        chunked,
        b"http/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2, 3\r\n\r\nhi",
        b"HTTP/2 200\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1  200OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1;ext=1\r\nx\r\n0\r\n"
        b"Trailer: t\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the close",
    ]


def _body_seeds() -> list[bytes]:
    text = b"the quick brown fox " * 20
    out = [b"\x00" + _compress("gzip", text), b"\x01" + _compress("deflate", text)]
    out.append(b"\x01" + zlib.compress(text)[2:-4])  # raw deflate, as some servers send
    try:
        import brotli

        out.append(b"\x02" + brotli.compress(text))
    except ImportError:  # pragma: no cover (a project dependency)
        pass
    try:
        import zstandard

        out.append(b"\x03" + zstandard.ZstdCompressor().compress(text))
    except ImportError:  # pragma: no cover
        pass
    out.append(b"\x04" + _compress("gzip", _compress("deflate", text)))
    return out


def fuzz_http2(data: bytes) -> None:
    """Any bytes from an HTTP/2 server after our request (cut as reads bring them; for a
    first byte of 1 mod 4, a server's response whose header list is the rest of the
    input, NUL-separated: `:status`'s value, then names and values, framed and HPACK-
    encoded by h2): `receive` takes them or raises H2Error, `take` hands Head/Body/End
    events or raises H2Error, nothing else; an incomplete frame held is at most a frame,
    and every stream's queue is emptied by `take`."""
    from packetlab.measure.http2 import Body, End, H2Error, H2Framing, Head

    f = H2Framing("s", max_headers=4096)
    request = f.request("GET", "https", "a.test", "/", [("accept", "*/*")], None)
    stream = data[1:]
    if data[:1] and data[0] % 4 == 1:
        stream = _h2_response(request, data[1:])
    sid = f.stream_id
    for piece in pieces(stream):
        try:
            f.receive(piece)
        except H2Error as e:
            assert str(e)
            return
        assert len(f.partial) <= f.h2.max_inbound_frame_size + 9, "a frame held unbounded"
        f.data_to_send()
        try:
            for _, ev in f.take(sid):
                assert isinstance(ev, Head | Body | End), ev
        except H2Error as e:
            assert str(e)
            return
        assert not f.queued(sid)


def _h2_response(request: bytes, fields: bytes) -> bytes:
    """A server's frames answering `request` with the header list `fields` (NUL-
    separated: the status, then names and values), unchecked, then a body."""
    import h2.config
    import h2.connection

    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    server = h2.connection.H2Connection(config)
    server.initiate_connection()
    server.receive_data(request)
    parts = fields.split(b"\0")
    status = parts[0]  # (any bytes: "²²²" was a ValueError out of `receive`, session 27)
    pairs = list(zip(parts[1::2], parts[2::2], strict=False))
    server.send_headers(1, [(b":status", status), *pairs])
    server.send_data(1, b"body", end_stream=True)
    return server.data_to_send()


def _h2_seeds() -> list[bytes]:
    import h2.config
    import h2.connection

    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = _h2_client_preface()
    server.initiate_connection()
    server.receive_data(client)
    server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    server.send_data(1, b"hello", end_stream=True)
    whole = server.data_to_send()
    server2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server2.initiate_connection()
    server2.receive_data(client)
    server2.send_headers(1, [(":status", "103"), ("link", "</a>")])
    server2.send_headers(1, [(":status", "404")], end_stream=False)
    server2.ping(b"12345678")
    server2.reset_stream(1)
    return [
        b"\x00" + whole,
        b"\x00" + server2.data_to_send(),
        b"\x01200\0content-type\0text/plain\0content-length\x004",
        b"\x01103\0link\0</a>",
    ]


def _h2_client_preface() -> bytes:
    from packetlab.measure.http2 import H2Framing

    f = H2Framing("s", max_headers=4096)
    return f.request("GET", "https", "a.test", "/", [], None)


# -------------------------------------------------------------------------------- iperf3


def fuzz_iperf3(data: bytes) -> None:
    """What an iperf3 server sends on the control connection: a state byte
    (`parse_state`: a State or Iperf3Error), a u32 length (`json_length`: within
    MAX_JSON or Iperf3Error), that many bytes of JSON (`decode_json`), read as results
    (`stream_result`, `server_streams`, `server_output`, `remote`): each returns a
    value of its type or raises Iperf3Error, nothing else; a server's JSON output prints
    (--get-server-output); encode_json's message decodes to the object it encoded."""
    from packetlab.measure import iperf3
    from packetlab.measure.iperf3 import Iperf3Error

    if not data:
        return
    try:
        iperf3.parse_state(data[:1])
    except Iperf3Error:
        pass
    body = data[1:]
    if len(body) >= 4 and data[0] % 2:
        try:
            n = iperf3.json_length(body[:4])
        except Iperf3Error:
            return
        assert 0 < n <= iperf3.MAX_JSON
        body = body[4 : 4 + n]
    try:
        obj = iperf3.decode_json(body)
    except Iperf3Error as e:
        assert str(e)
        return
    assert isinstance(obj, dict)
    for read in (iperf3.stream_result, iperf3.server_streams):
        try:
            read(obj)
        except Iperf3Error as e:
            assert str(e)
    out = iperf3.server_output(obj)
    assert out is None or isinstance(out, str | dict)
    if isinstance(out, dict):  # (nested past decode_json's MAX_NESTING: refused above)
        from packetlab.measure.throughput_cjson import dumps

        assert isinstance(dumps(out), str)
    assert isinstance(iperf3.remote(obj), dict)
    if not _finite(obj):
        return  # (cJSON writes an infinity or NaN as null, as iperf3: not ours to send)
    try:
        again = iperf3.encode_json(obj)
    except RecursionError:
        return  # (nested deeper than the writer goes: not ours to send either)
    (n,) = struct.unpack(">I", again[:4])
    assert n == len(again) - 4
    assert _same_json(iperf3.decode_json(again[4:]), obj), "decode(encode(x)) != x"


def _finite(v: object) -> bool:
    """No infinity or NaN anywhere in a JSON value (json.loads reads `1E999` as inf)."""
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if isinstance(x, dict):
            todo += x.values()
        elif isinstance(x, list):
            todo += x
    return True


def _same_json(a: object, b: object) -> bool:
    # cJSON prints a float with %.17g (or %1.15g when that reads back the same):
    # equal as numbers, an int that was a float may come back an int
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (a != a and b != b)
    return a == b


def _iperf3_seeds() -> list[bytes]:
    from packetlab.measure import iperf3

    results = iperf3.timed_client_results(
        [(1, 10_000_000, 3, 10.0), (3, 5, 0, 0.5)], has_retransmits=1
    )
    results["server_output_text"] = "Accepted connection\n"
    results["congestion_used"] = "cubic"
    params = iperf3.parameters(1 << 20, reverse=True)
    return [
        b"\x01" + iperf3.encode_json(results),
        b"\x01" + iperf3.encode_json(params),
        b"\x0e" + json.dumps({"streams": [{"id": 1, "bytes": 1, "start_time": 0}]}).encode(),
    ]


# ------------------------------------------------------------------------------- replies


def fuzz_replies(data: bytes) -> None:
    """Any captured packet (`parse_reply`, checksums checked for an odd first byte):
    a Reply or ParseError (NotAReply included), nothing else."""
    from packetlab.measure.replies import ParseError, Reply, parse_reply

    if not data:
        return
    try:
        got = parse_reply(data[1:], verify_checksums=bool(data[0] % 2))
    except ParseError as e:
        assert str(e)
        return
    assert isinstance(got, Reply)


def _replies_seeds() -> list[bytes]:
    v4 = bytes.fromhex("450000380000000040017c3cc000020a c0000201".replace(" ", ""))
    te = bytes.fromhex("0b00f4ff00000000")  # time exceeded, quoting:
    quoted = bytes.fromhex("4500001c0001000001110000c0000201c6336401") + bytes.fromhex(
        "829a829b00080000"
    )
    echo = bytes.fromhex("0000ffff12340001") + b"abcdefgh"
    v6 = bytes.fromhex("6000000000103a40") + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    return [b"\x00" + v4 + te + quoted, b"\x00" + v4[:-8] + v4[-8:] + echo, b"\x00" + v6 + echo]
