"""URLs as curl reads them for `packetlab.measure.http`: parsing, dot segments,
redirect targets and the method a redirect keeps (curl -L's rules)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from packetlab.controller import (
    ControllerError,
)
from packetlab.hostport import is_address
from packetlab.measure.http_fields import received_text


class HttpError(ControllerError):
    """The URL cannot be fetched as given (bad URL). A host name that does not resolve is
    the result's `error`, as a refused connect: the other URLs of a run still go."""


@dataclass(frozen=True, slots=True)
class Url:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    fragment: str = ""  # never sent; curl's url_effective keeps it
    userinfo: str = ""  # USER:PASSWORD@ as written (sent as Authorization); url_effective's
    # An internationalised host as written (`host` is its ASCII form, the one sent):
    # curl's url_effective, redirect_url and relative Locations keep the written one.
    written_host: str = ""
    port_written: bool = False  # `:80` in http://a.example:80/ (url_effective keeps it)

    @property
    def effective(self) -> str:
        """curl's %{url_effective}: the URL as fetched, its USER:PASSWORD@ and #fragment."""
        return self.written + (f"#{self.fragment}" if self.fragment else "")

    @property
    def written(self) -> str:
        """The URL as fetched with its USER:PASSWORD@ (what a relative Location is
        resolved against: curl's next URL keeps them, another host's drops them)."""
        if not self.userinfo:
            return self.text
        return f"{self.scheme}://{self.userinfo}@{self._authority(True)}{self.target}"

    @property
    def text(self) -> str:
        """The URL as fetched (curl's url_effective): scheme, authority, target."""
        return f"{self.scheme}://{self._authority(True)}{self.target}"

    @property
    def host_is_address(self) -> bool:
        return is_address(self.host)

    @property
    def authority(self) -> str:
        """host[:port] as sent (the Host field, HTTP/2's :authority)."""
        return self._authority(False)

    def _authority(self, written: bool) -> str:
        host = (written and self.written_host) or self.host
        host = f"[{host}]" if ":" in host else host
        default = 443 if self.scheme == "https" else 80
        shown = self.port != default or (written and self.port_written)
        return f"{host}:{self.port}" if shown else host


def remove_dot_segments(path: str) -> str:
    """RFC 3986's remove_dot_segments, as curl's URL parser does to a URL's path
    (`/a/b/../c/./d` is fetched as `/a/c/d`, and is -O's `d`)."""
    out: list[str] = []
    segments = path.split("/")
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out)


def parse_url(url: str, as_is: bool = False, spaces: bool = False) -> Url:
    """An http:// or https:// URL; without a scheme, http:// as curl assumes. Its path's
    dot segments removed, as curl's, unless `as_is` (--path-as-is). `spaces`: taken
    (a Location told, not followed, as curl's)."""
    junk = (c for c in url if c != " " or not spaces)  # curl 7.88's junkscan: its (3)
    if any(c <= " " or c == "\x7f" for c in junk):
        raise HttpError(f"{url!r}: URL using bad/illegal format (a space or a control "
                        "character; %20 is a space)")  # fmt: skip
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise HttpError(f"{url!r}: only http:// and https:// URLs")
    if not parts.hostname:
        raise HttpError(f"{url!r}: no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpError(f"{url!r}: bad port") from None
    target = (parts.path if as_is else remove_dot_segments(parts.path)) or "/"
    if parts.query:
        target += "?" + parts.query
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = _host(parts.hostname, hostport)
    written = "" if parts.hostname.isascii() else _as_written(parts.hostname, hostport)
    return Url(parts.scheme, host, port, target, parts.fragment, userinfo, written,
               parts.port is not None)  # fmt: skip


def _host(host: str, hostport: str) -> str:
    """The URL's host as curl 7.88 takes it: a name as written (its case kept: the Host
    field and %{url_effective} have it so; the comparisons are case-blind), an IPv4
    address in any of the numbers forms curl's ipv4_normalize reads (`127.1`,
    `0x7f000001`, `2130706433`, `0177.0.0.1`) as the dotted quad."""
    if hostport.startswith("["):
        return host
    host = _as_written(host, hostport)
    if not host.isascii():
        host = _ace(host)
    return _ipv4(host) or host


def _as_written(host: str, hostport: str) -> str:
    """`host` (urlsplit's, lowercased) in the case it was written in."""
    written = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return written if written.lower() == host else host


def _ace(host: str) -> str:
    """An internationalised name in the ASCII form that goes on the wire (Host field,
    SNI, the certificate's names, the lookup), as curl 7.88 with libidn2 converts it
    (IDNA 2008 with UTS #46, non-transitional: `straße.de` is `xn--strae-oqa.de`)."""
    import idna

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise HttpError(f"Failed to convert {host} to ACE; {e}") from None


def _ipv4(host: str) -> str | None:
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    try:  # each part C's strtoul(base 0): 0x hex, a leading 0 octal, else decimal
        nums = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if p[:1] == "0" and
                len(p) > 1 else int(p, 10) for p in parts]  # fmt: skip
    except ValueError:
        return None
    if any(not p or p[:1] in "+-" or p.lower() == "0x" for p in parts):
        return None
    *lead, last = nums
    if any(n > 255 for n in lead) or last >= 256 ** (5 - len(parts)):
        return None
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(lead)) + last
    return str(ipaddress.IPv4Address(value))


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRS = 50  # curl's default --max-redirs


def redirect_target(base: Url, location: str, followed: bool = True) -> Url:
    """`location` (a Location header) against `base`, as curl follows it: relative
    references resolved, spaces and non-ASCII bytes percent-encoded. HttpError when the
    result is not an http(s) URL one can fetch. Not `followed` (curl's %{redirect_url}
    without -L, or past --max-redirs), an absolute one is taken as it is, as curl's."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in location):
        raise HttpError(f"Location {location!r}: control characters")
    text = received_text(location)
    absolute = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text) is not None
    told = absolute and not followed  # curl: as it is, spaces too
    encoded = text if told else _curl_urlencode(text)
    try:
        target = urljoin(base.written, encoded)
    except ValueError as e:
        raise HttpError(f"Location {location!r}: {e}") from None
    try:
        return parse_url(target, spaces=told)
    except HttpError as e:
        raise HttpError(f"Location {location!r}: {str(e).split(': ', 1)[-1]}") from None


# curl 7.88.1's schemes (Debian 12's build; `run_http_opts.CURL_PROTOCOLS`, --proto's):
# a redirect to one but http(s) is curl's (1) `Protocol "X" not supported or disabled`
# when --proto/--proto-redir leave it out (its redirect default: ftp and ftps besides),
# else curl speaks it; a scheme it does not know is its (1) "Unsupported URL scheme"
CURL_SCHEMES = frozenset(
    {"dict", "file", "ftp", "ftps", "gopher", "gophers", "http", "https", "imap", "imaps",
     "ldap", "ldaps", "mqtt", "pop3", "pop3s", "rtmp", "rtsp", "scp", "sftp", "smb", "smbs",
     "smtp", "smtps", "telnet", "tftp"}
)  # fmt: skip


def foreign_target(location: str) -> tuple[str, str] | None:
    """(scheme, the URL as curl writes it) for a Location naming a scheme other than
    http(s) (`ftp://...`), else None. curl's %{redirect_url}/%{url_effective}: a known
    scheme lower-cased and the fragment dropped (its URL parser's); an unknown one's
    Location as it came."""
    text = received_text(location).strip()
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if found is None or found[1].lower() in ("http", "https"):
        return None
    scheme = found[1].lower()
    if scheme not in CURL_SCHEMES:
        return scheme, text
    return scheme, scheme + text[len(found[1]) :].split("#", 1)[0]


# each scheme's port when the URL names none (curl 7.88's handlers; file:// none, 0)
_PORTS = {"dict": 2628, "file": 0, "ftp": 21, "ftps": 990, "gopher": 70, "gophers": 70,
          "http": 80, "https": 443, "imap": 143, "imaps": 993, "ldap": 389, "ldaps": 636,
          "mqtt": 1883, "pop3": 110, "pop3s": 995, "rtmp": 1935, "rtsp": 554, "scp": 22,
          "sftp": 22, "smb": 445, "smbs": 445, "smtp": 25, "smtps": 465, "telnet": 23,
          "tftp": 69}  # fmt: skip


def clear_auth_note(current: Url, scheme: str, text: str) -> str | None:
    """curl 7.88's -v line when -L follows a Location (scheme, the URL as `text`) from
    `current` without --location-trusted (transfer.c's Curl_follow): another port than
    the connection's (the scheme's own when the URL names none), else another scheme.
    Said whether or not there are credentials to clear (measured, session 30)."""
    authority = text.partition("://")[2]
    authority = re.split(r"[/?#]", authority, maxsplit=1)[0].rpartition("@")[2]
    given = re.search(r":(\d+)$", authority.rpartition("]")[2])
    port = int(given[1]) if given and scheme != "file" else _PORTS.get(scheme, 0)
    if port != current.port:
        return f"Clear auth, redirects to port from {current.port} to {port}"
    if scheme != current.scheme:
        return f"Clear auth, redirects scheme from {current.scheme.upper()} to {scheme}"
    return None


def _curl_urlencode(url: str) -> str:
    """A Location as curl 7.88 follows it (urlapi.c's urlencode_str with CURLU_URLENCODE):
    the scheme and host as they are, then each byte above 127 as %xx (lower-case hex), a
    space as %20 before the first `?` and `+` after it, every other byte unchanged."""
    start = 0
    if "//" in url:  # absolute (or scheme-relative): up to the path or query as it is
        after = url.index("//") + 2
        ends = [i for i in (url.find("/", after), url.find("?", after)) if i >= 0]
        start = min(ends) if ends else len(url)
    out = [url[:start]]
    query = False
    for byte in url[start:].encode("utf-8", "surrogateescape"):
        if byte == 0x20:
            out.append("+" if query else "%20")
        elif byte > 0x7F:
            out.append(f"%{byte:02x}")
        else:
            query = query or byte == 0x3F
            out.append(chr(byte))
    return "".join(out)


def next_method(status: int, kind: str, custom: str | None, post30x: frozenset[int]) -> str:
    """curl 7.88's method after a `status` redirect of a `kind` request (GET, HEAD or
    POST: what -d/-I made it): 301 and 302 turn a POST into a GET unless --post301/302,
    303 turns anything but a GET or HEAD into a GET (a POST kept with --post303), 307
    and 308 keep it. -X's `custom` method is sent whatever the kind (as curl does)."""
    if status in (301, 302) and kind == "POST" and status not in post30x:
        return "GET"
    if status == 303 and kind not in ("GET", "HEAD") and not (kind == "POST" and 303 in post30x):
        return "GET"
    return kind
