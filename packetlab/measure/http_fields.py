"""Request and response header fields as bytes: one rule for HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import base64
from urllib.parse import unquote_to_bytes


def field_bytes(text: str) -> bytes:
    """A request field's name or value as sent: its bytes as given (argv, a -H file, a
    cookie), as curl sends them (`-H 'X: ü'` is `X: \xc3\xbc`; h11 and h2 took str as
    ASCII or latin-1, and a non-ASCII -H, -A or -e ended the run). Received fields are
    str of their bytes one to one (latin-1): `received_text` turns one into this form."""
    return text.encode("utf-8", "surrogateescape")


class GivenValue(str):
    """A -H field's value that keeps the line as typed (`line`, its bytes), which curl
    7.88 sends over HTTP/1.1 as it is: `X:v`, `X :v`, `X:\tv` (h11 writes `NAME: VALUE`).
    Everything else (names compared, HTTP/2) reads it as the plain value it is. A str
    subclass, not a third tuple member: every filter and copy of the fields keeps it."""

    line: bytes

    def __new__(cls, value: str, line: bytes) -> GivenValue:
        self = super().__new__(cls, value)
        self.line = line
        return self


def field_line(name: str, value: str) -> bytes:
    """A request field's line as curl 7.88 writes it over HTTP/1.1 (no CRLF)."""
    if isinstance(value, GivenValue):
        return value.line
    return field_bytes(name) + b": " + field_bytes(value)


def received_text(text: str) -> str:
    """A received field's value (latin-1 str: its bytes one to one) as the text that
    `field_bytes` sends as those same bytes (a Set-Cookie's value sent back as Cookie)."""
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


def basic_auth(user: bytes, password: bytes) -> str:
    """The Authorization value of curl's Basic scheme for these bytes."""
    return "Basic " + base64.b64encode(user + b":" + password).decode("ascii")


def url_basic(userinfo: str) -> str:
    """Basic authorization from a URL's USER[:PASSWORD], each part's %XX decoded, as
    curl sends it (`http://c@h/` is `c:`); -u's and a -H Authorization win over it."""
    user, _, password = userinfo.partition(":")
    return basic_auth(unquote_to_bytes(user), unquote_to_bytes(password))


def basic_user(value: str | None) -> str:
    """The user of a Basic authorization value ("" for none)."""
    if value is None or not value.startswith("Basic "):
        return ""
    raw = base64.b64decode(value[6:]).partition(b":")[0]
    return raw.decode("utf-8", "surrogateescape")
