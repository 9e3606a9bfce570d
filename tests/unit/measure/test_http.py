"""HTTP(S) GET through the scripted endpoint: TLS at the controller against a real
pyOpenSSL server on memory BIOs (verification, SNI, wrong CA, wrong name), HTTP framing
(Content-Length, chunked, close-delimited, 204, slow), timings from endpoint stamps,
and bad servers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from http_fake import TlsPeer
from stream_fakes import StreamRig
from web_pki import make_pki

from packetlab.measure.certname import host_match
from packetlab.measure.http import HttpError, http_get, parse_url

BODY = bytes(range(256)) * 40
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


class Http(TlsPeer):
    """Answers the first complete request with `response` in `pieces`, `gap` s apart,
    then closes (or not); over TLS with `pki` (a close_notify before the close)."""

    def __init__(
        self,
        response: bytes,
        pieces: int = 1,
        gap: float = 0.0,
        close: bool = True,
        pki: dict[str, Path] | None = None,
    ) -> None:
        super().__init__(pki)
        self.response, self.pieces, self.gap, self.closes = response, pieces, gap, close
        self.requests: list[bytes] = []

    def arrived(self) -> None:
        if b"\r\n\r\n" not in self.got or self.requests:
            return
        self.requests.append(bytes(self.got))
        self.answer()

    def answer(self) -> None:
        n = len(self.response)
        step = -(-n // self.pieces)
        for i in range(self.pieces):
            self.send(self.response[i * step : (i + 1) * step], self.gap * i)
        if self.closes:
            self.shutdown(self.gap * self.pieces)
            self.close(self.gap * self.pieces)


def Https(pki: dict[str, Path], response: bytes, **kw: Any) -> Http:
    """The same over TLS."""
    return Http(response, pki=pki, **kw)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def rig_with(peer: object, port: int = 80) -> StreamRig:
    rig = StreamRig()
    rig.endpoint.peers[("192.0.2.80", port)] = lambda: peer  # type: ignore[assignment,return-value]
    return rig


def test_plain_get_with_content_length() -> None:
    peer = Http(OK, pieces=3, gap=0.01)
    rig = rig_with(peer)
    r = rig.run(http_get(rig.session, "http://192.0.2.80/a/b?c=d"))
    assert (r.status, r.reason, r.body_len, r.error) == (200, "OK", len(BODY), None)
    assert r.body_sha256 == hashlib.sha256(BODY).hexdigest()
    request = peer.requests[0]
    assert request.startswith(b"GET /a/b?c=d HTTP/1.1\r\n")
    assert b"\r\nhost: 192.0.2.80\r\n" in request.lower()
    assert b"connection:" not in request.lower()  # curl 7.88 sends none: HTTP/1.1 keep-alive
    # endpoint stamps: three pieces 10 ms apart; the last body byte came 20 ms after the first
    assert r.first_byte_us is not None and r.total_us is not None
    assert r.total_us - r.first_byte_us == pytest.approx(20_000, abs=1500)
    assert r.connect_us is not None and r.tls_us is None
    d = r.to_dict()
    assert d["type"] == "http" and d["status"] == 200 and "body" not in d


@pytest.mark.parametrize(
    ("response", "body"),
    [
        (CHUNKED, b"hello world"),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"until the end"),  # close-delimited
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    ],
    ids=["chunked", "close-delimited", "204", "100-continue"],
)
def test_http_framing(response: bytes, body: bytes) -> None:
    rig = rig_with(Http(response, pieces=4, gap=0.005))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", keep_body=True))
    assert r.error is None and r.body == body and r.body_len == len(body)
    assert r.body_sha256 == hashlib.sha256(body).hexdigest()


def test_https_verified_with_sni(pki: dict[str, Path]) -> None:
    peer = Https(pki, CHUNKED, pieces=2, gap=0.02)
    rig = rig_with(peer, 443)
    r = rig.run(
        http_get(rig.session, "https://www.test/x", connect_to="192.0.2.80", cafile=str(pki["ca"]))
    )
    assert (r.error, r.status, r.body_len) == (None, 200, 11)
    assert peer.sni == [b"www.test"]
    assert r.tls_version in ("TLSv1.3", "TLSv1.2")
    assert r.connect_us is not None and r.tls_us is not None and r.first_byte_us is not None
    assert r.connect_us <= r.tls_us <= r.first_byte_us <= (r.total_us or 0)
    assert b"GET /x HTTP/1.1" in peer.requests[0]


def test_https_to_an_address_checks_the_ip_san(pki: dict[str, Path]) -> None:
    rig = StreamRig()
    rig.endpoint.peers[("127.0.0.1", 443)] = lambda: Https(pki, OK)
    r = rig.run(http_get(rig.session, "https://127.0.0.1/", cafile=str(pki["ca"])))
    assert (r.error, r.status) == (None, 200)


def test_https_untrusted_ca_is_an_error_without_status(pki: dict[str, Path]) -> None:
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://www.test/", connect_to="192.0.2.80",
                 cafile=str(pki["other-ca"]))
    )  # fmt: skip
    assert r.status is None and r.error == (  # which check failed, on what, trusting what
        "TLS: certificate verify failed: unable to get local issuer certificate (the "
        f"server's certificate, CN=localhost; trusted: {pki['other-ca']})"
    )
    assert "status" not in r.to_dict() and r.to_dict()["error"] == r.error


def test_https_wrong_name(pki: dict[str, Path]) -> None:
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://other.example/", connect_to="192.0.2.80",
                 cafile=str(pki["ca"]))
    )  # fmt: skip
    assert r.error == "TLS: the certificate is not valid for other.example"


@pytest.fixture(scope="module")
def cn_only_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki-cn"), ("cn.example",), san=False)


def test_https_certificate_named_only_by_its_common_name(cn_only_pki: dict[str, Path]) -> None:
    """curl checks the common name when there is no subjectAltName (service_identity
    raised a CertificateError for it: an internal error)."""
    rig = rig_with(Https(cn_only_pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://CN.example./", connect_to="192.0.2.80",
                 cafile=str(cn_only_pki["ca"]))
    )  # fmt: skip
    assert (r.status, r.error) == (200, None)
    rig = rig_with(Https(cn_only_pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://other.example/", connect_to="192.0.2.80",
                 cafile=str(cn_only_pki["ca"]))
    )  # fmt: skip
    assert r.status is None and r.error == "TLS: the certificate is not valid for other.example"


def test_an_internationalised_name_is_checked_in_its_ascii_form(tmp_path: Path) -> None:
    """The certificate names xn--bcher-kva.example; the URL says bücher.example, which
    goes on the wire (Host, SNI) and to the name check in its ASCII form, as curl with
    libidn2 sends it (h11 refused the Unicode Host field: UnicodeEncodeError)."""
    pki = make_pki(tmp_path, ("xn--bcher-kva.example",))
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://bücher.example/", connect_to="192.0.2.80",
                 cafile=str(pki["ca"]))
    )  # fmt: skip
    assert (r.status, r.error) == (200, None)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://bücher.example/", "xn--bcher-kva.example"),
        ("https://straße.de:8443/x", "xn--strae-oqa.de"),  # IDNA 2008, non-transitional
        ("http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://WWW.Example.ORG/", "WWW.Example.ORG"),  # ASCII: as written
    ],
)
def test_a_url_host_is_kept_in_its_ascii_form(url: str, host: str) -> None:
    assert parse_url(url).host == host


def test_a_name_idna_refuses_is_curls_ace_error() -> None:
    with pytest.raises(HttpError, match=re.escape("Failed to convert a\u200db.example to ACE")):
        parse_url("https://a\u200db.example/")


@pytest.mark.parametrize(
    ("pattern", "host", "match"),
    [
        ("www.test", "WWW.test.", True),
        ("*.example.org", "a.example.org", True),
        ("*.example.org", "example.org", False),
        ("*.example.org", "a.b.example.org", False),
        ("*.org", "example.org", False),  # a wildcard needs three labels
        ("*.2.3.4", "1.2.3.4", False),  # never for an address (curl's hostcheck)
        ("1.2.3.4", "1.2.3.4", True),
    ],
)
def test_host_match_is_curls(pattern: str, host: str, match: bool) -> None:
    assert host_match(pattern, host) is match


def test_https_insecure_skips_verification(pki: dict[str, Path]) -> None:
    rig = rig_with(Https(pki, OK), 443)
    r = rig.run(
        http_get(rig.session, "https://other.example/", connect_to="192.0.2.80", insecure=True)
    )
    assert (r.error, r.status, r.body_len) == (None, 200, len(BODY))


class Blurt(Http):
    """Answers whatever arrives with plain HTTP (a plain server on the HTTPS port)."""

    def received(self, data: bytes) -> None:
        self.requests.append(data)
        self.answer()


def test_plain_http_to_a_tls_port_is_a_handshake_error(pki: dict[str, Path]) -> None:
    rig = rig_with(Blurt(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), 443)
    r = rig.run(http_get(rig.session, "https://192.0.2.80/", cafile=str(pki["ca"])))
    assert r.status is None and (r.error or "").startswith("TLS: ")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "transfer closed with 5 bytes remaining to read",
        ),
        (b"garbage\r\n\r\n", "RemoteProtocolError"),
        (b"", "closed the connection without a response"),
    ],
    ids=["short-body", "garbage", "empty"],
)
def test_bad_servers(response: bytes, message: str) -> None:
    rig = rig_with(Http(response))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/"))
    # curl 7.88.1 keeps the status of a body cut short (18); none for the others
    assert r.status == (200 if "transfer closed" in message else None)
    assert message in (r.error or "")


def test_silent_server_times_out() -> None:
    rig = rig_with(Http(b"", close=False))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", timeout=2.0))
    assert r.error == (
        "timed out: no response from 192.0.2.80:80 within 2 s of the connect "
        "(0 body bytes received)"
    )
    # a body that stops half way (curl: "Operation timed out ... with N bytes received")
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    rig = rig_with(Http(head + b"x" * 40, close=False))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", timeout=2.0))
    assert r.error == (
        "timed out: no complete response from 192.0.2.80:80 within 2 s of the connect "
        "(40 body bytes received)"
    )


def test_body_limit() -> None:
    rig = rig_with(Http(OK))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", max_body=100))
    assert r.error is not None and r.error == "body from 192.0.2.80:80 larger than 100 bytes"


def test_refused() -> None:
    rig = StreamRig()
    r = rig.run(http_get(rig.session, "http://192.0.2.81:8080/"))
    assert r.error == (  # curl: "Failed to connect to ... port 8080: Connection refused"
        "connect to 192.0.2.81:8080: connection refused (the host answered the SYN with a "
        "reset: nothing listens on that port)"
    )


def test_urls() -> None:
    u = parse_url("https://[2001:db8::1]:8443/p?q")
    assert (u.scheme, u.host, u.port, u.target, u.authority) == (
        "https", "2001:db8::1", 8443, "/p?q", "[2001:db8::1]:8443",
    )  # fmt: skip
    assert parse_url("http://x.test").target == "/"
    assert parse_url("http://x.test:80").authority == "x.test"
    # no scheme: http, as curl (`curl 10.0.0.1:8080/x`)
    u = parse_url("10.0.0.1:8080/x")
    assert (u.scheme, u.host, u.port, u.target) == ("http", "10.0.0.1", 8080, "/x")
    for bad in ("ftp://x/", "http:///p", "http://x:99999/"):
        with pytest.raises(HttpError):
            parse_url(bad)


def test_dot_segments_are_removed_from_the_target_as_curl() -> None:
    """curl 7.88 fetches `/a/b/../c/./d?x=..` as `GET /a/c/d?x=..` (RFC 3986's
    remove_dot_segments on the path only; %2e%2e is not a dot segment)."""
    assert parse_url("http://h/a/b/../c/./d?x=..").target == "/a/c/d?x=.."
    assert parse_url("http://h/..").target == "/"
    assert parse_url("http://h/a/..").target == "/"
    assert parse_url("http://h/a/.").target == "/a/"
    assert parse_url("http://h/a/%2e%2e/b").target == "/a/%2e%2e/b"


def test_connect_failures_read_as_curl_and_dig_put_them() -> None:
    from packetlab.controller import ConnectFailed, ControllerError
    from packetlab.measure.stream import connect_failure

    for state in ("REFUSED", "RESET"):  # the reference endpoint's STAT, ours's nstat
        assert "connection refused" in connect_failure(ConnectFailed(0, state), "10.0.0.1", 80)
    assert connect_failure(ConnectFailed(0, "TIMEDOUT"), "2001:db8::1", 443) == (
        "connect to [2001:db8::1]:443: connection timed out (the SYN was never answered)"
    )
    assert "unreachable" in connect_failure(ConnectFailed(0, "UNREACH"), "10.0.0.1", 80)
    late = connect_failure(ConnectFailed(0, "not established within 10 s"), "10.0.0.1", 80)
    assert late.startswith("connect to 10.0.0.1:80: no answer to the SYN: not established")
    other = connect_failure(ControllerError("session closed"), "10.0.0.1", 80)
    assert other == "connect to 10.0.0.1:80: session closed"


def test_a_name_that_does_not_resolve_is_the_urls_error_not_the_runs() -> None:
    # as curl (exit 6 for that URL): the other URLs of `pktlab run http` still go
    import dns.message
    import dns.rcode

    from packetlab.endpoint.config import parse_config
    from packetlab.endpoint.memory import system_image

    def nxdomain(query: bytes) -> list[bytes]:
        r = dns.message.make_response(dns.message.from_wire(query))
        r.set_rcode(dns.rcode.NXDOMAIN)
        return [r.to_wire()]

    rig = rig_with(Http(OK))
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    rig.endpoint.udp_servers[("192.0.2.53", 53)] = nxdomain
    r = rig.run(http_get(rig.session, "http://nosuch.test/page"))
    assert r.error == "could not resolve host nosuch.test: no such name (NXDOMAIN from 192.0.2.53)"
    assert r.to_dict()["error"] == r.error and r.status is None
    rig.endpoint.memory = system_image(parse_config([]))  # no DNS server at all
    r = rig.run(http_get(rig.session, "http://nosuch.test/page"))
    assert r.error is not None and r.error.startswith("could not resolve host nosuch.test: ")
    assert "no DNS server configured" in r.error


def test_unreachable_is_told_apart_from_unknown_by_the_sockets_stat() -> None:
    # Our endpoint reports a connect that met EHOSTUNREACH (no ARP answer, an ICMP
    # unreachable) as nstat UNKNOWN with STAT UNREACH; the error read "failed: UNKNOWN".
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
    from ctl_fakes import FakeEndpoint, Rig
    from twisted.internet.task import Clock

    from packetlab.wire import Nopen, Nstat, NstatCode, Proto, SocketState

    class Unreachable(FakeEndpoint):
        def nopen(self, msg: Nopen) -> None:
            super().nopen(msg)
            if msg.proto == Proto.TCP and msg.raddr is not None:
                self.sockets[msg.sktid]["state"] = SocketState.UNREACH
                nstat = Nstat(msg.sktid, msg.family, msg.proto, 0, NstatCode.UNKNOWN)
                self.clock.callLater(0.01, self.late_nstat, nstat)

    def endpoint(clock: Clock) -> FakeEndpoint:
        return Unreachable(clock)

    rig = Rig(endpoint=endpoint)
    r = rig.run(http_get(rig.session, "http://192.0.2.99/"))
    assert r.error == (
        "connect to 192.0.2.99:80: host or network unreachable from the endpoint (no route, "
        "no ARP/ND answer, or an ICMP unreachable in answer to the SYN)"
    )
