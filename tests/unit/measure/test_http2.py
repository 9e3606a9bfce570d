"""`http_get` speaks HTTP/2 as curl 7.88 with nghttp2 does: ALPN `h2,http/1.1` on
https:// (HTTP/2 when the server picks h2, `http1.1` offers http/1.1 alone), h2c with
prior knowledge or through an `Upgrade: h2c` on http://; header blocks as curl prints
HTTP/2 ones, one connection reused for the next request to the origin (the scripted
endpoint, an h2 server on memory BIOs)."""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from http_fake import Answer, H2Server, serve
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure.http import Connections, HttpError, HttpResult, http_get


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def get(rig: StreamRig, url: str, **kw: Any) -> HttpResult:
    return rig.run(http_get(rig.session, url, **kw))


def test_https_offers_h2_and_speaks_it_when_the_server_picks_it(pki: dict[str, Path]) -> None:
    rig, made = serve(lambda _: H2Server(pki=pki), (443,))
    blocks: list[bytes] = []
    url = "https://www.test/x?y=1"
    r = rig.run(http_get(rig.session, url, connect_to="192.0.2.80", cafile=str(pki["ca"]),
                         keep_body=True, on_headers=blocks.append))  # fmt: skip
    assert (r.error, r.status, r.http_version, r.body) == (None, 200, "2", b"ok GET /x?y=1 0")
    assert made[0].offered == [b"h2", b"http/1.1"]
    # curl -i's header block of an HTTP/2 response, and curl's size_header of it
    block = b"HTTP/2 200 \r\ncontent-type: text/plain\r\ncontent-length: 15\r\n\r\n"
    assert blocks == [block] and r.raw_headers == [block] and r.header_size == len(block)
    assert r.reason == "" and r.to_dict()["http_version"] == "2"
    fields, _ = made[0].requests[0]
    assert fields == {":method": "GET", ":path": "/x?y=1", ":scheme": "https",
                      ":authority": "www.test", "user-agent": "pktlab-http/1",
                      "accept": "*/*"}  # fmt: skip
    # curl's size_request: the request as HTTP/1.1 text with "HTTP/2" in its request line
    sent = (
        b"GET /x?y=1 HTTP/2\r\nHost: www.test\r\nUser-Agent: pktlab-http/1\r\nAccept: */*\r\n\r\n"
    )
    assert r.request_size == len(sent)
    assert r.tls_us is not None and r.first_byte_us is not None and r.total_us is not None


def make_alpn(pki: dict[str, Path], alpn: tuple[bytes, ...], port: int) -> H2Server:
    return H2Server(pki=pki, alpn=alpn)


def test_http1_1_offers_only_http1_1_and_a_server_without_h2_gets_http1_1(
    pki: dict[str, Path],
) -> None:
    for alpn, version, offered in (
        ((b"h2", b"http/1.1"), "1.1", [b"http/1.1"]),  # --http1.1
        ((b"http/1.1",), None, [b"h2", b"http/1.1"]),  # the server declines h2
    ):
        rig, made = serve(partial(make_alpn, pki, alpn), (443,))
        r = get(rig, "https://www.test/", connect_to="192.0.2.80", cafile=str(pki["ca"]),
                http_version=version)  # fmt: skip
        assert (r.status, r.http_version) == (200, "1.1")
        assert made[0].offered == offered
    with pytest.raises(HttpError, match="http_version '3'"):
        get(rig, "https://www.test/", http_version="3")


def test_the_next_url_and_a_redirect_reuse_the_h2_connection(pki: dict[str, Path]) -> None:
    rig, made = serve(lambda _: H2Server(pki=pki), (443,))
    pool = Connections()
    kw: dict[str, Any] = dict(
        connect_to="192.0.2.80", cafile=str(pki["ca"]), connections=pool, follow=True
    )
    first = get(rig, "https://www.test/a", **kw)
    second = get(rig, "https://www.test/r?to=/b", keep_body=True, **kw)
    rig.run(pool.close())
    assert len(made) == 1 and made[0].handshakes == 1
    assert [f[":path"] for f, _ in made[0].requests] == ["/a", "/r?to=/b", "/b"]
    assert (first.connects, first.reused) == (1, False)
    assert (second.connects, second.reused, second.num_redirects) == (0, True, 1)
    assert (second.body, second.http_version) == (b"ok GET /b 0", "2")
    assert second.connect_us == 0 and second.tls_us == 0


def test_a_post_larger_than_the_windows_goes_as_they_open(pki: dict[str, Path]) -> None:
    rig, made = serve(lambda _: H2Server(pki=pki), (443,))
    data = bytes(range(256)) * 1000  # 256000 bytes: past the 65535-byte initial windows
    r = get(rig, "https://www.test/up", connect_to="192.0.2.80", cafile=str(pki["ca"]),
            data=data, keep_body=True)  # fmt: skip
    assert (r.error, r.body, r.upload_size) == (None, b"ok POST /up 256000", 256000)
    fields, body = made[0].requests[0]
    assert body == data and fields["content-length"] == "256000"
    head = (
        b"POST /up HTTP/2\r\nHost: www.test\r\nUser-Agent: pktlab-http/1\r\nAccept: */*\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 256000\r\n\r\n"
    )
    assert r.request_size == len(head)  # curl's size_request over HTTP/2: no body
    assert fields["content-type"] == "application/x-www-form-urlencoded"


def test_head_include_and_compressed_over_h2(pki: dict[str, Path]) -> None:
    packed = gzip.compress(b"x" * 5000)

    def gz(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        return 200, [("content-encoding", "gzip"), ("content-length", str(len(packed)))], packed

    rig, made = serve(lambda _: H2Server(gz, pki=pki), (443,))
    kw: dict[str, Any] = dict(connect_to="192.0.2.80", cafile=str(pki["ca"]))
    r = get(rig, "https://www.test/", compressed=True, keep_body=True, **kw)
    assert (r.body, r.body_len) == (b"x" * 5000, len(packed))
    assert made[0].requests[0][0]["accept-encoding"] == "deflate, gzip, br, zstd"
    r = get(rig, "https://www.test/", head=True, **kw)
    assert (r.status, r.body_len, r.method) == (200, 0, "HEAD")
    assert made[1].requests[0][0][":method"] == "HEAD"


def test_h2c_with_prior_knowledge() -> None:
    rig, made = serve(lambda _: H2Server())
    r = get(rig, "http://192.0.2.80/p", http_version="2-prior", keep_body=True)
    assert (r.error, r.http_version, r.body) == (None, "2", b"ok GET /p 0")
    assert made[0].requests[0][0][":scheme"] == "http"
    # without it, http:// is HTTP/1.1 (curl's default)
    rig, made = serve(lambda _: H2Server())
    r = get(rig, "http://192.0.2.80/p")
    assert (r.error, r.http_version) == (None, "1.1")
    # a URL's bytes above 127: the path's percent-encoded, the query's UTF-8 as they are
    # (as over HTTP/1.1; before: the query's text sent as Latin-1, one byte for ü)
    rig, made = serve(lambda _: H2Server())
    r = get(rig, "http://192.0.2.80/é?q=ü", http_version="2-prior")
    assert (r.error, r.status) == (None, 200)
    assert made[0].requests[0][0][":path"].encode("latin-1") == b"/%c3%a9?q=\xc3\xbc"


def test_http2_on_http_asks_for_an_h2c_upgrade_as_curl() -> None:
    rig, made = serve(lambda _: H2Server(upgrade=True))
    pool = Connections()
    blocks: list[bytes] = []
    r = get(rig, "http://192.0.2.80/u", http_version="2", keep_body=True, connections=pool,
            on_headers=blocks.append)  # fmt: skip
    assert (r.error, r.http_version, r.body) == (None, "2", b"ok GET /u 0")
    fields = made[0].requests[0][0]
    assert (fields["upgrade"], fields["connection"]) == ("h2c", "Upgrade, HTTP2-Settings")
    assert fields["http2-settings"]
    assert blocks == [  # curl -i: the 101 block, then the HTTP/2 response's
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"HTTP/2 200 \r\ncontent-type: text/plain\r\ncontent-length: 11\r\n\r\n"
    ]
    again = get(rig, "http://192.0.2.80/v", http_version="2", connections=pool)
    rig.run(pool.close())
    assert (again.reused, again.http_version, len(made)) == (True, "2", 1)
    assert made[0].requests[1][0][":path"] == "/v"
    # a server that ignores the Upgrade: HTTP/1.1, as curl goes on
    rig, made = serve(lambda _: H2Server(upgrade=False))
    r = get(rig, "http://192.0.2.80/u", http_version="2", keep_body=True)
    assert (r.error, r.http_version, r.body) == (None, "1.1", b"ok GET /u 0")


def test_the_json_record_names_http_2() -> None:
    rig, _ = serve(lambda _: H2Server())
    r = get(rig, "http://192.0.2.80/", http_version="2-prior")
    record = r.to_dict()
    assert record["http_version"] == "2" and json.dumps(record)
