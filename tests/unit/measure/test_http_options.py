"""`http_get` with curl's -u (Basic authorization, only to the first URL's scheme, host and
port over redirects), --compressed (Accept-Encoding as curl 7.88.1 with brotli and zstd sends
it, gzip and deflate decoded, other codings refused by name as curl's 61, a body that
inflates past the limit refused) and -i (every header block handed out before the body)."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

from test_http_redirects import response, serving

from packetlab.measure.http import http_get

TEXT = b"hello hello hello hello\n" * 40


def encoded(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """/gzip, /deflate, /rawdeflate, /br, /xz, /bomb (1 KiB of gzip that inflates to 8 MiB);
    what the client asked for in the X-Asked header."""
    kind = target.strip("/")
    data = {
        "gzip": gzip.compress(TEXT, mtime=0),
        "deflate": zlib.compress(TEXT),
        "rawdeflate": zlib.compress(TEXT)[2:-4],
        "br": b"\x0b\x02\x80hello",  # (a br stream cut short: curl writes "hello")
        "xz": b"\xfd7zXZ\x00",
        "bomb": gzip.compress(bytes(8 << 20)),
        "plain": TEXT,
    }[kind]
    coding = {"rawdeflate": "deflate", "plain": "identity", "bomb": "gzip"}.get(kind, kind)
    return response(200, data, Content_Encoding=coding,
                    X_Asked=headers.get("accept-encoding", "-"))  # fmt: skip


def test_basic_auth_goes_to_the_first_origin_only() -> None:
    rig, made = serving()
    rig.endpoint.peers[("192.0.2.80", 8080)] = rig.endpoint.peers[("192.0.2.80", 80)]
    token = base64.b64encode(b"us:p:w").decode()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", auth=("us", "p:w"),
                         keep_body=True))  # fmt: skip
    assert json.loads(r.body or b"{}")["auth"] == f"Basic {token}"
    # a redirect to another port drops it, and back to the first origin sends it again
    to = "http://192.0.2.80:8080/r/302?to=http://192.0.2.80/echo"
    r = rig.run(http_get(rig.session, f"http://192.0.2.80/r/302?to={to}", follow=True,
                         auth=("us", "pw"), keep_body=True))  # fmt: skip
    assert r.num_redirects == 2 and json.loads(r.body or b"{}")["auth"] is not None
    hops = [bytes(m.got).lower() for m in made[-3:]]
    assert [b"authorization:" in h for h in hops] == [True, False, True]
    # an -H Authorization wins over -u (curl sends the custom header)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", auth=("us", "pw"),
                         headers=[("Authorization", "Bearer t")], keep_body=True))  # fmt: skip
    assert json.loads(r.body or b"{}")["auth"] == "Bearer t"


def test_compressed_asks_as_curl_and_decodes_gzip_and_deflate() -> None:
    rig, _ = serving(encoded)
    for kind in ("gzip", "deflate", "rawdeflate", "plain"):
        out: list[bytes] = []
        r = rig.run(http_get(rig.session, f"http://192.0.2.80/{kind}", compressed=True,
                             keep_body=True, on_body=out.append))  # fmt: skip
        assert (r.error, r.body, b"".join(out)) == (None, TEXT, TEXT), kind
        assert dict(r.headers)["X-Asked"] == "deflate, gzip, br, zstd"  # curl 7.88.1's
        wire = int(dict(r.headers)["Content-Length"])
        assert r.body_len == wire  # curl's size_download: the bytes received
    # without --compressed nothing is asked and nothing decoded (as curl)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/gzip", keep_body=True))
    assert dict(r.headers)["X-Asked"] == "-" and r.body == gzip.compress(TEXT, mtime=0)


def test_compressed_refuses_what_it_cannot_decode() -> None:
    rig, _ = serving(encoded)
    # (session 25: br is decoded, as curl 7.88.1 with brotli; a coding curl does not know)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/xz", compressed=True))
    assert r.exitcode == 61 and r.status == 200  # curl 7.88.1: http_code 200 with its 61
    assert r.error is not None and r.error.startswith("Unrecognized content encoding type xz")
    # no body, nothing to decode: a HEAD answered with xz is no error (as curl)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/xz", compressed=True, head=True))
    assert (r.error, r.status) == (None, 200)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/bomb", compressed=True,
                         max_body=1 << 20))  # fmt: skip
    assert r.error == f"decoded body from 192.0.2.80:80 larger than {1 << 20} bytes"
    assert r.status == 200  # (curl: its http_code kept with the 56)


def test_include_hands_out_every_header_block_before_the_body() -> None:
    rig, _ = serving()
    out: list[bytes] = []
    r = rig.run(http_get(rig.session, "http://192.0.2.80/r/301?to=/echo", follow=True,
                         on_headers=out.append, on_body=out.append))  # fmt: skip
    assert r.status == 200 and len(out) == 3
    assert out[0].startswith(b"HTTP/1.1 301 ") and out[0] == r.raw_headers[0]
    assert out[1].startswith(b"HTTP/1.1 200 ") and out[2].startswith(b'{"method": "GET"')


def test_url_effective_keeps_the_credentials_as_curl() -> None:
    """curl 7.88.1's %{url_effective}: the URL's USER:PASSWORD@ as written, kept over a
    relative redirect, none after an absolute Location (-u's password is kept out of it:
    curl writes it in after a redirect). Before: never any."""
    rig, _ = serving()
    r = rig.run(http_get(rig.session, "http://u%40x:p%3Aw@192.0.2.80/echo#f"))
    assert r.url_effective == "http://u%40x:p%3Aw@192.0.2.80/echo#f"
    r = rig.run(http_get(rig.session, "http://u:p@192.0.2.80/r/302?to=/echo", follow=True))
    assert (r.num_redirects, r.url_effective) == (1, "http://u:p@192.0.2.80/echo")
    r = rig.run(http_get(rig.session, "http://192.0.2.80/r/302?to=/echo", follow=True,
                         auth=("a@", "b c")))  # fmt: skip
    assert r.url_effective == "http://192.0.2.80/echo"  # (curl: http://a%40:b%20c@...)
    r = rig.run(http_get(rig.session, "http://u:p@192.0.2.80/r/302?to=http://192.0.2.80/echo",
                         follow=True))  # fmt: skip
    assert r.url_effective == "http://192.0.2.80/echo"


def test_localhost_is_the_endpoints_loopback_without_dns() -> None:
    """curl 7.85+ never asks DNS for localhost or NAME.localhost: loopback (-6: ::1).
    Before: asked through the endpoint's DNS server, NXDOMAIN (exit 6)."""
    rig, made = serving()
    for family, addr, server in ((None, "127.0.0.1", "127.0.0.1"), (6, "::1", "[::1]")):
        rig.endpoint.peers[(addr, 8080)] = rig.endpoint.peers[("192.0.2.80", 80)]
        for host in ("localhost", "a.LocalHost"):
            r = rig.run(http_get(rig.session, f"http://{host}:8080/echo", family=family))
            assert (r.status, r.server, r.namelookup_us) == (200, f"{server}:8080", 0), host
    assert len(made) == 4  # (the rig's endpoint has no DNS server: a query would fail)
