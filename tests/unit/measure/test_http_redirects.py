"""`http_get` as curl -L, -X, -d, -I: redirects followed on new connections (the method
rules of curl 7.88 for 301/302/303/307/308, --max-redirs, relative and cross-host/scheme
Locations with TLS verified again, garbage Locations), request methods and bodies, and
the fields curl's --write-out reads (header size, pretransfer, accumulated times)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from http_fake import TlsPeer, serve
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure.http import (
    HttpError,
    WriteError,
    http_get,
    next_method,
    parse_url,
    redirect_target,
)

Handler = Callable[[str, str, dict[str, str], bytes], bytes]


def response(status: int, body: bytes = b"", **headers: str) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def echo(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request as JSON (what the server saw), or a redirect for /r/CODE?to=WHERE."""
    if target.startswith("/r/"):
        code, _, where = target[3:].partition("?to=")
        return response(int(code), b"moved", Location=where)
    seen = {"method": method, "target": target, "body": body.decode(),
            "ct": headers.get("content-type"), "auth": headers.get("authorization")}  # fmt: skip
    return response(200, json.dumps(seen).encode(), Content_Type="application/json")


class Server(TlsPeer):
    """An HTTP/1.1 server for one request (plain, or TLS with `pki`): `handler` answers."""

    def __init__(
        self, handler: Handler, pki: dict[str, Path] | None = None, delay: float = 0.0
    ) -> None:
        super().__init__(pki)
        self.handler, self.delay = handler, delay
        self.done = False

    def arrived(self) -> None:
        head, sep, body = bytes(self.got).partition(b"\r\n\r\n")
        if not sep or self.done:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if len(body) < int(headers.get("content-length", 0)):
            return
        self.done = True
        self.send(self.handler(method, target, headers, body), self.delay)
        self.shutdown(self.delay)
        self.close(self.delay)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serving(
    handler: Handler = echo, port: int = 80, delay: float = 0.0
) -> tuple[StreamRig, list[Server]]:
    return serve(lambda _: Server(handler, delay=delay), (port,))


def seen(r: object) -> dict[str, object]:
    body = getattr(r, "body", None)
    assert body is not None
    return json.loads(body)


def test_without_location_a_redirect_is_reported_not_followed() -> None:
    rig, made = serving()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/r/302?to=../x/y"))
    assert (r.status, r.num_redirects, len(made), r.error) == (302, 0, 1, None)
    # curl's %{redirect_url}: where it would go, resolved against the URL
    assert r.redirect_url == "http://192.0.2.80/x/y"
    assert r.to_dict()["redirect_url"] == "http://192.0.2.80/x/y"


@pytest.mark.parametrize(
    ("code", "method", "body", "ct"),
    [
        (301, "GET", "", None),
        (302, "GET", "", None),
        (303, "GET", "", None),
        (307, "POST", "a=1", "application/x-www-form-urlencoded"),
        (308, "POST", "a=1", "application/x-www-form-urlencoded"),
    ],
)
def test_post_through_each_redirect_as_curl(code: int, method: str, body: str, ct: str) -> None:
    # measured with curl 7.88.1: `curl -L -d a=1 URL` through each status
    rig, made = serving()
    r = rig.run(
        http_get(rig.session, f"http://192.0.2.80/r/{code}?to=/echo", data=b"a=1", follow=True,
                 keep_body=True)
    )  # fmt: skip
    assert (r.error, r.status, r.num_redirects, len(made)) == (None, 200, 1, 2)
    assert seen(r) == {"method": method, "target": "/echo", "body": body, "ct": ct, "auth": None}
    assert r.method == method and r.url_effective == "http://192.0.2.80/echo"


def test_method_rules() -> None:
    # --post30x keeps the POST; 303 turns a PUT kind into a GET; HEAD stays HEAD
    assert next_method(302, "POST", None, frozenset({302})) == "POST"
    assert next_method(301, "POST", None, frozenset({302})) == "GET"
    assert next_method(303, "POST", None, frozenset({303})) == "POST"
    assert next_method(303, "HEAD", None, frozenset()) == "HEAD"
    assert next_method(307, "POST", None, frozenset()) == "POST"
    assert next_method(302, "GET", None, frozenset()) == "GET"


def test_custom_method_sticks_and_the_body_goes_as_curl() -> None:
    # `curl -L -X PUT -d a=1` through a 303: PUT, no body; through a 307: PUT with it
    for code, body in ((303, ""), (307, "a=1")):
        rig, _ = serving()
        r = rig.run(
            http_get(rig.session, f"http://192.0.2.80/r/{code}?to=/echo", method="PUT",
                     data=b"a=1", follow=True, keep_body=True)
        )  # fmt: skip
        assert seen(r)["method"] == "PUT" and seen(r)["body"] == body, code


def test_post30x_keeps_the_post() -> None:
    rig, _ = serving()
    r = rig.run(
        http_get(rig.session, "http://192.0.2.80/r/302?to=/echo", data=b"a=1", follow=True,
                 post30x=frozenset({302}), keep_body=True)
    )  # fmt: skip
    assert (seen(r)["method"], seen(r)["body"]) == ("POST", "a=1")


def test_max_redirs_and_loops() -> None:
    def loop(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        return response(302, b"moved", Location="/loop")

    rig, made = serving(loop)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/loop", follow=True, max_redirs=3))
    # curl: "(47) Maximum (3) redirects followed", http_code 302, num_redirects 3
    assert r.error == "maximum (3) redirects followed (the next to http://192.0.2.80/loop)"
    assert (r.exitcode, r.status, r.num_redirects, len(made)) == (47, 302, 3, 4)
    d = r.to_dict()
    assert d["status"] == 302 and d["exitcode"] == 47 and d["num_redirects"] == 3
    assert r.redirect_url == "http://192.0.2.80/loop"  # curl's %{redirect_url}: the next
    rig, made = serving(loop)
    out: list[bytes] = []
    r = rig.run(http_get(rig.session, "http://192.0.2.80/loop", follow=True, on_body=out.append))
    assert out == []  # a redirect's body is never output, the last one's neither
    assert (r.num_redirects, len(made), r.exitcode) == (50, 51, 47)  # curl's default 50
    rig, made = serving(loop)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/loop", follow=True, max_redirs=0))
    assert (r.num_redirects, len(made), r.exitcode) == (0, 1, 47)


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://[::1/x", "Invalid IPv6 URL"),
        ("http://:80/x", "no host"),
        ("http://192.0.2.80:99999/", "bad port"),
    ],
)
def test_garbage_location_is_the_urls_error(location: str, why: str) -> None:
    # (an ftp:// Location was one until session 29: curl's is no (3) but its (1) or
    # FTP's own outcome, test_run_http_curl29.py)
    def bad(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        return response(302, Location=location)

    rig, _ = serving(bad)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", follow=True))
    # curl: "(3) The redirect target URL could not be parsed", http_code 302
    assert r.error == f"redirect: Location {location!r}: {why}"
    assert (r.exitcode, r.status, r.to_dict()["status"]) == (3, 302, 302)
    assert r.num_redirects == 1  # curl 7.88 counts it as followed


def test_redirect_targets() -> None:
    base = parse_url("http://a.test:8080/d/p?q")
    assert redirect_target(base, "x").text == "http://a.test:8080/d/x"
    assert redirect_target(base, "../x?y").text == "http://a.test:8080/x?y"
    assert redirect_target(base, "//b.test/z").text == "http://b.test/z"
    assert redirect_target(base, "https://b.test/").text == "https://b.test/"
    # curl 7.88's urlencode_str: lower-case hex (session 24: was upper), a space + after `?`
    assert redirect_target(base, "/a b\xe9").text == "http://a.test:8080/a%20b%e9"
    assert redirect_target(base, "/a?b c\xc3\xbc").text == "http://a.test:8080/a?b+c%c3%bc"
    assert redirect_target(base, '/{|}"<>^`').text == 'http://a.test:8080/{|}"<>^`'
    assert redirect_target(base, "/p#frag").target == "/p"
    with pytest.raises(HttpError, match="control characters"):
        redirect_target(base, "/a\x00b")


def test_redirect_to_another_host_and_scheme_verifies_tls_again(pki: dict[str, Path]) -> None:
    rig, made = serve(lambda port: Server(echo, pki if port == 443 else None), (80, 443))
    tls = rig.endpoint.peers[("192.0.2.80", 443)]
    url = "http://192.0.2.80/r/301?to=https://www.test/echo"
    r = rig.run(
        http_get(rig.session, url, connect_to="192.0.2.80", cafile=str(pki["ca"]), follow=True,
                 keep_body=True, headers=[("Authorization", "Basic eA==")])
    )  # fmt: skip
    assert (r.error, r.status, r.num_redirects, r.connects) == (None, 200, 1, 2)
    assert made[1].sni == [b"www.test"] and r.tls_version is not None
    assert r.url_effective == "https://www.test/echo" and r.server == "192.0.2.80:443"
    assert seen(r)["auth"] is None  # not sent on to another host, as curl
    # an untrusted chain on the second hop: that is the error, the status the redirect's
    rig.endpoint.peers[("192.0.2.80", 443)] = tls
    r = rig.run(
        http_get(rig.session, url, connect_to="192.0.2.80", cafile=str(pki["other-ca"]),
                 follow=True)
    )  # fmt: skip
    assert r.error is not None and r.error.startswith("TLS: certificate verify failed")
    assert (r.exitcode, r.status, r.num_redirects) == (60, 301, 1)
    assert r.body_len == 0  # curl resets the sizes when it follows


def test_request_methods_and_bodies() -> None:
    rig, made = serving()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", data=b"x=1&y=2", keep_body=True))
    assert seen(r) == {"method": "POST", "target": "/echo", "body": "x=1&y=2",
                       "ct": "application/x-www-form-urlencoded", "auth": None}  # fmt: skip
    assert b"\r\ncontent-length: 7\r\n" in made[0].got.lower()
    assert r.upload_size == 7 and r.request_size == len(made[0].got)
    rig, made = serving()
    r = rig.run(
        http_get(rig.session, "http://192.0.2.80/echo", data=b"{}", keep_body=True,
                 headers=[("Content-Type", "application/json")], method="PATCH")
    )  # fmt: skip
    assert (seen(r)["method"], seen(r)["ct"], seen(r)["body"]) == (
        "PATCH",
        "application/json",
        "{}",
    )
    assert made[0].got.lower().count(b"content-type") == 1  # -H replaces ours
    rig, made = serving()
    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", method="DELETE", keep_body=True))
    assert seen(r)["method"] == "DELETE" and b"content-length" not in made[0].got.lower()


def test_head_reads_no_body() -> None:
    def head(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        assert method == "HEAD"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/html\r\n\r\n"

    rig, _ = serving(head)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", head=True))
    assert (r.error, r.status, r.body_len, r.method, r.content_type) == (
        None, 200, 0, "HEAD", "text/html",
    )  # fmt: skip
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/html\r\n\r\n"
    assert r.raw_headers == [raw] and r.header_size == len(raw)


def test_write_out_fields_over_a_redirect() -> None:
    rig, made = serving(delay=0.01)  # each answer 10 ms after its request
    body: list[bytes] = []
    r = rig.run(
        http_get(rig.session, "http://192.0.2.80/r/302?to=/echo", follow=True,
                 on_body=body.append)
    )  # fmt: skip
    first = response(302, b"moved", Location="/echo")
    # size_header as curl's: every response's header block; only the last body is output
    assert r.header_size == len(first) - len(b"moved") + len(r.raw_headers[1])
    assert b"".join(body).startswith(b'{"method": "GET"') and r.body_len == len(b"".join(body))
    assert r.content_type == "application/json"
    # this server closes after each answer: its close, come with the answer, is seen
    # before the connection would be reused, so the second request goes on a new one
    # (curl's "seems to be dead"; until session 24 it went over the dead one first and
    # again after its end, curl's "Connection died")
    first_request = made[0].got[: made[0].got.index(b"\r\n\r\n") + 4]
    assert made[0].got.count(b"GET /echo") == 0 and not r.reused
    assert (r.remote_ip, r.remote_port, r.connects, r.request_size) == (
        "192.0.2.80", 80, 2, len(first_request) + len(made[1].got),
    )  # fmt: skip
    # times: each hop's from its own start, summed (curl's time_*); total from the first
    assert r.namelookup_us == 0 and r.connect_us is not None and r.pretransfer_us is not None
    assert r.first_byte_us is not None and r.total_us is not None and r.redirect_us is not None
    assert 0 <= r.connect_us <= r.pretransfer_us < 1000  # the fake connects at once
    assert r.first_byte_us == pytest.approx(20_000, abs=2000)  # 10 ms + 10 ms
    assert r.redirect_us == pytest.approx(10_000, abs=1000)  # the end of the first hop
    assert r.total_us == pytest.approx(20_000, abs=2000)
    d = r.to_dict()
    assert (d["num_redirects"], d["url_effective"], d["header_size"]) == (
        1, "http://192.0.2.80/echo", r.header_size,
    )  # fmt: skip


def test_a_body_writer_that_fails_is_the_urls_error() -> None:
    rig, _ = serving()

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", on_body=full))
    assert r.error == "writing the body: No space left on device" and r.exitcode == 23


def test_exit_codes_of_failures() -> None:
    rig = StreamRig()
    r = rig.run(http_get(rig.session, "http://192.0.2.81:8080/"))
    assert r.exitcode == 7 and r.to_dict()["exitcode"] == 7
    rig, _ = serving(lambda *a: b"")
    r = rig.run(http_get(rig.session, "http://192.0.2.80/"))
    assert r.exitcode == 52  # curl: Empty reply from server


def test_a_name_resolved_through_the_endpoint_is_time_namelookup() -> None:
    import dataclasses

    import dns.message
    import dns.rrset
    from stream_fakes import StreamFakeEndpoint

    from packetlab.endpoint.config import parse_config
    from packetlab.endpoint.memory import system_image
    from packetlab.wire import Message, Ndata, Proto

    class SlowDns(StreamFakeEndpoint):
        """DNS answers arrive 5 ms after the query (stamped then)."""

        def send(self, msg: Message) -> None:
            if isinstance(msg, Ndata) and msg.proto == Proto.UDP:
                late = lambda: super(SlowDns, self).send(  # noqa: E731
                    dataclasses.replace(msg, time=self.now())
                )
                self.clock.callLater(0.005, late)
                return
            super().send(msg)

    def answer(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        if q.question[0].rdtype == 1:  # A
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.80"))
        return [r.to_wire()]

    rig = StreamRig(SlowDns)
    rig.endpoint.peers[("192.0.2.80", 80)] = lambda: Server(echo, delay=0.01)
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    rig.endpoint.udp_servers[("192.0.2.53", 53)] = answer
    r = rig.run(http_get(rig.session, "http://www.test/echo"))
    assert (r.error, r.status, r.server) == (None, 200, "192.0.2.80:80")
    # the start is the TIME read before the query: the lookup is inside every time
    assert r.namelookup_us is not None and r.connect_us is not None
    assert r.first_byte_us is not None and r.total_us is not None
    assert r.namelookup_us == pytest.approx(5_000, abs=1000)
    assert r.namelookup_us <= r.connect_us
    assert r.first_byte_us - r.connect_us == pytest.approx(10_000, abs=1000)
    # an address: no lookup
    rig = StreamRig(SlowDns)
    rig.endpoint.peers[("192.0.2.80", 80)] = lambda: Server(echo)
    assert rig.run(http_get(rig.session, "http://192.0.2.80/")).namelookup_us == 0


def test_no_redirect_limit_keeps_memory_bounded() -> None:
    # --max-redirs -1 (curl: no limit): 150 hops, then a page; the header blocks kept for
    # -I are the last 100
    hops = iter(range(151))

    def chain(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        n = next(hops)
        return response(200, b"end") if n == 150 else response(302, Location=f"/{n + 1}")

    rig, made = serving(chain, delay=0.001)  # not all in one iosim pump
    r = rig.run(http_get(rig.session, "http://192.0.2.80/0", follow=True, max_redirs=-1))
    assert (r.error, r.status, r.num_redirects, len(made)) == (None, 200, 150, 151)
    assert len(r.raw_headers) == 100 and r.raw_headers[-1].startswith(b"HTTP/1.1 200")
    assert r.url_effective == "http://192.0.2.80/150"


def test_a_header_writer_that_refuses_ends_the_fetch_with_23() -> None:
    rig, _ = serving()

    def refuse(block: bytes) -> None:
        raise WriteError("Failed to open the file a: File exists")

    r = rig.run(http_get(rig.session, "http://192.0.2.80/echo", on_headers=refuse))
    assert (r.error, r.exitcode) == ("Failed to open the file a: File exists", 23)
    assert (r.status, r.body_len) == (200, 0)  # curl's %{http_code}: the response came


def test_an_idn_host_is_sent_ascii_and_shown_as_written() -> None:
    # curl 7.88: Host is the ACE form; url_effective, redirect_url and a relative
    # Location keep the host as written (session 24: they showed the ACE form)
    u = parse_url("http://BÜcher.example/ä?q=ü#frä")
    assert u.host == "xn--bcher-kva.example" and u.authority == "xn--bcher-kva.example"
    assert u.effective == "http://BÜcher.example/ä?q=ü#frä"
    assert redirect_target(u, "/next").effective == "http://BÜcher.example/next"
    assert redirect_target(u, "http://other.example/").effective == "http://other.example/"
    with_user = parse_url("http://me:pw@bücher.example/")
    assert with_user.written == "http://me:pw@bücher.example/"


def test_a_written_default_port_stays_in_url_effective_not_in_host() -> None:
    for url, shown in [("http://a.example:80/", "http://a.example:80/"),
                       ("http://a.example:0080/x", "http://a.example:80/x"),
                       ("https://a.example:443/", "https://a.example:443/"),
                       ("http://a.example/", "http://a.example/"),
                       ("http://[::1]:80/", "http://[::1]:80/")]:  # fmt: skip
        u = parse_url(url)
        assert u.effective == shown, url
        assert ":80" not in u.authority.replace("[::1]", "") and ":443" not in u.authority
    assert redirect_target(parse_url("http://a.example:80/a"), "b").effective == (
        "http://a.example:80/b")  # fmt: skip
