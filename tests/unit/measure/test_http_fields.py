"""Request fields go as given; received ones come back byte for byte."""

from __future__ import annotations

from packetlab.measure.cookies import CookieJar
from packetlab.measure.http_fields import field_bytes, received_text


def test_a_field_given_in_utf8_is_sent_as_those_bytes() -> None:
    assert field_bytes("ü/1") == b"\xc3\xbc/1"
    argv_bytes = b"a\xffb".decode("utf-8", "surrogateescape")  # argv that is not UTF-8
    assert field_bytes(argv_bytes) == b"a\xffb"


def test_a_received_value_round_trips() -> None:
    for raw in (b"a=\xc3\xbc\xff", b"plain", bytes(range(0x20, 0x100))):
        assert field_bytes(received_text(raw.decode("latin-1"))) == raw


def test_a_set_cookie_is_sent_back_as_it_came() -> None:
    jar = CookieJar()
    jar.receive("http", "a.example", "/", [("Set-Cookie", b"a=\xc3\xbc\xff".decode("latin-1"))])
    value = jar.header("http", "a.example", "/")
    assert value is not None and field_bytes(value) == b"a=\xc3\xbc\xff"


def test_url_credentials_as_curl_encodes_them() -> None:
    from packetlab.measure.http_fields import basic_auth, url_basic

    assert url_basic("user:pw") == "Basic dXNlcjpwdw=="
    assert url_basic("us%C3%BCer:p%20w") == "Basic dXPDvGVyOnAgdw=="  # curl's bytes
    assert url_basic("c") == "Basic Yzo=" and url_basic(":d") == "Basic OmQ="
    assert basic_auth(b"a", b"b:c") == "Basic YTpiOmM="
