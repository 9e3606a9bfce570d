"""curl 7.88's -r/--range, -e/--referer, --resolve, --connect-to and -D/--dump-header for
`pktlab run http`: each argument read as curl's tool_getparam.c (and url.c) reads it, and
-D's file written as curl writes it."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import IO

from packetlab.cli.run import RunError

_OFF_T_MAX = (1 << 63) - 1


def curl_warning(text: str, prefix: str = "Warning: ") -> str:
    """`text` as curl 7.88's warnf prints it (tool_msgs.c's voutf): "Warning: " before
    each piece of at most 70 characters (its line end counted), a piece cut after the
    last blank that fits (kept at its end), else at 70. notef's: prefix "Note: " (73)."""
    msg, width, out = text + "\n", 79 - len(prefix), []
    while msg:
        if len(msg) <= width:
            out.append(prefix + msg)
            break
        cut = width - 1
        while cut and msg[cut] not in " \t":
            cut -= 1
        cut = cut or width - 1
        out.append(prefix + msg[: cut + 1] + "\n")
        msg = msg[cut + 1 :]
    return "".join(out)


def custom_request_note(method: str | None, inferred: str) -> tuple[str, str] | None:
    """curl 7.88's customrequest_helper, before each transfer: -X naming the method curl
    would use anyway (`inferred`: GET, HEAD for -I, POST for -d/-F, PUT for -T) is a
    note (told with -v/--trace only), -X HEAD otherwise a warning: (prefix, text)."""
    if method is None:
        return None
    if method.lower() == inferred.lower():
        return "Note: ", f"Unnecessary use of -X or --request, {inferred} is already inferred."
    if method.lower() == "head":
        why = "may not work the way you want. Consider using -I/--head instead."
        return "Warning: ", f"Setting custom HTTP method to HEAD with -X/--request {why}"
    return None


def byte_range(text: str, warn: Callable[[str], object]) -> str:
    """-r RANGE as curl 7.88 takes it: digits without a dash get one appended (warned:
    N is N-), a byte that is not a digit, - or , is warned about and sent as is; a
    number past curl_off_t is curl's error (2)."""
    if text[:1].isdigit() and "-" not in text:
        digits = re.match(r"\d+", text)
        assert digits is not None
        if int(digits.group()) > _OFF_T_MAX:
            raise RunError(f"-r/--range {text!r}: unsupported range point (curl: 2)")
        warn("A specified range MUST include at least one dash (-). Appending one for you!")
        return f"{int(digits.group())}-"
    if re.search(r"[^0-9,-]", text):
        warn("Invalid character is found in given range. A specified range MUST have "
             "only digits in 'start'-'stop'. The server's response to this request is "
             "uncertain.")  # fmt: skip
    return text


def resolve_entries(items: list[str], family: int | None = None) -> tuple[
    tuple[str, int, str], ...
]:  # fmt: skip
    """--resolve [+]HOST:PORT:ADDR[,ADDR...] (and -HOST:PORT, dropping an earlier one)
    as curl 7.88 takes them: (host in lower case, port, the addresses without their
    brackets joined by ",", tried in turn; with -4/-6 `family` those of that family, as
    curl's), the latest for a host and port first. One that is not so: exit 2 (curl
    ignores it, its words in -v only)."""
    entries: dict[tuple[str, int], str] = {}
    for item in items:
        drop = item.startswith("-")
        m = re.fullmatch(r"[-+]?([^:]+):(\d+)" + ("" if drop else r":(.+)"), item)
        if m is None or int(m.group(2)) > 65535:
            raise RunError(f"--resolve {item!r}: Couldn't parse CURLOPT_RESOLVE entry "
                           "(HOST:PORT:ADDR, or -HOST:PORT)")  # fmt: skip
        key = (m.group(1).lower(), int(m.group(2)))
        entries.pop(key, None)
        if not drop:
            addrs = []
            for text in m.group(3).split(","):
                text = text.strip()
                text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
                try:
                    addrs.append(ipaddress.ip_address(text))
                except ValueError:
                    if not addrs:  # (the first must be one; curl skips a bad later one)
                        raise RunError(f"--resolve {item!r}: {text!r} is no IP address") from None
            mine = [a for a in addrs if family in (None, a.version)]
            entries[key] = ",".join(str(a) for a in mine or addrs)
    return tuple((h, p, a) for (h, p), a in reversed(entries.items()))


ConnectTo = tuple[str, int | None, str, int | None]  # HOST1 ("": any), PORT1, HOST2, PORT2
_HOST = r"(\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._~%-]+)?\]|[^:\[\]]*)"  # a name, or [v6] in brackets


def _port(text: str, item: str) -> int | None:
    if text == "":
        return None
    if not text.isdigit() or int(text) > 65535:
        raise RunError(f"--connect-to {item!r}: No valid port number in connect to host "
                       f"string ({text})")  # fmt: skip
    return int(text)


def connect_to_entries(items: list[str]) -> tuple[ConnectTo, ...]:
    """--connect-to as curl 7.88 takes it, HOST1:PORT1:HOST2:PORT2 (a request to HOST1
    and PORT1 connects to HOST2 and PORT2: HOST1 or PORT1 empty matches any, HOST2 or
    PORT2 empty keeps the URL's; [v6] in brackets; the first entry that matches and names
    a host or a port wins), or ours, an IP address alone: the same as curl's `::ADDR:`
    (every request to ADDR, its port kept). A value that is an IP address is ours
    (`::1` included), anything else is read as curl's; one that is neither: exit 2 (curl
    ignores an entry it cannot match and fails a bad PORT2 with 49 when used)."""
    entries: list[ConnectTo] = []
    for item in items:
        try:
            addr = ipaddress.ip_address(item)
        except ValueError:
            pass
        else:
            entries.append(("", None, str(addr), None))
            continue
        m = re.fullmatch(_HOST + ":([^:]*):" + _HOST + "(?::([^:]*))?", item)
        if m is None:
            raise RunError(f"--connect-to {item!r}: neither HOST1:PORT1:HOST2:PORT2 (curl's) "
                           "nor an IP address")  # fmt: skip
        h1, h2 = (h[1:-1] if h.startswith("[") else h for h in (m.group(1), m.group(3)))
        entries.append((h1.lower(), _port(m.group(2), item), h2, _port(m.group(4) or "", item)))
    return tuple(entries)


_CONDITIONS = {"-": "If-Unmodified-Since", "=": "Last-Modified"}


def time_cond(text: str, warn: Callable[[str], object]) -> tuple[str, int] | None:
    """-z [+-=]TIME as curl 7.88 reads it: (the request field: If-Modified-Since, with -
    If-Unmodified-Since, with = Last-Modified; the time in s). TIME is a date as curl's
    curl_getdate reads one (`20 Jan 2024`, `Jan 20 2024 10:11 CET`, RFC 1123, RFC 850,
    asctime, YYYYMMDD: measure/curldate.py) or else a file whose time of last change is
    taken; neither: curl's warning, no condition (None)."""
    from packetlab.measure.curldate import getdate

    field = _CONDITIONS.get(text[:1], "If-Modified-Since")
    rest = text[1:] if text[:1] in "+-=" and text else text
    when: float | None = getdate(rest)
    if when is None:
        try:
            when = os.stat(rest).st_mtime
        except OSError:
            warn("Illegal date format for -z, --time-cond (and not a file name). Disabling "
                 "time condition. See curl_getdate(3) for valid date syntax.")  # fmt: skip
            return None
    return field, int(when)


# curl 7.88.1's protocols (Debian 12's build, `curl --version`): the names --proto and
# --proto-redir know; the redirect default is libcurl's (CURLOPT_REDIR_PROTOCOLS)
CURL_PROTOCOLS = frozenset(
    {"dict", "file", "ftp", "ftps", "gopher", "gophers", "http", "https", "imap", "imaps",
     "ldap", "ldaps", "mqtt", "pop3", "pop3s", "rtmp", "rtsp", "scp", "sftp", "smb", "smbs",
     "smtp", "smtps", "telnet", "tftp"}
)  # fmt: skip
REDIR_PROTOCOLS = frozenset({"http", "https", "ftp", "ftps"})


def protocols(text: str, start: frozenset[str], warn: Callable[[str], object],
              option: str = "--proto") -> frozenset[str]:  # fmt: skip
    """--proto / --proto-redir PROTOCOLS as curl 7.88.1's proto2num reads it, from
    `start` (all of curl's, or the redirect default): comma-separated names (no case,
    empty ones skipped), each after modifiers + (allow), - (deny), = (only this; the
    last modifier counts), `all` for every one; an unknown name warned about (and with =
    it still empties the set, as curl's). A token of modifiers only: curl's 2."""
    allowed = set(start)
    for token in (t for t in text.split(",") if t):
        action = "+"
        while token[:1] and not _alnum(token[:1]):
            if token[0] not in "+-=":
                break
            action, token = token[0], token[1:]
        if not token or not _alnum(token[:1]):  # curl: PARAM_BAD_USE
            raise RunError(f"option {option}: is badly used here (curl's words)")
        name = token.lower()
        if name == "all":
            allowed = set() if action == "-" else set(CURL_PROTOCOLS)
            continue
        if action == "=":
            allowed = set()
        if name not in CURL_PROTOCOLS:
            warn(f"unrecognized protocol '{token}'")
        elif action == "-":
            allowed.discard(name)
        else:
            allowed.add(name)
    return frozenset(allowed)


def _alnum(char: str) -> bool:
    """curl's ISALNUM: ASCII only (`isalnum` took `é` and `²`, warned as unknown names
    where curl's --proto is badly used, exit 2; fuzz28's http_opts target)."""
    return char.isascii() and char.isalnum()


def referer(text: str | None) -> tuple[str | None, bool]:
    """-e URL, -e 'URL;auto', -e ';auto' as curl reads it: (the Referer to send or None,
    whether each redirect hop sends the URL it came from). What follows ;auto is
    dropped, as curl's."""
    if text is None:
        return None, False
    at = text.find(";auto")
    auto = at >= 0
    text = text[:at] if auto else text
    return text or None, auto


class HeaderDump:
    """-D FILE: every response header block (1xx, each redirect hop's, each URL's and
    each retry's) in the order they come, as curl writes them: FILE made empty when
    the first transfer starts, then appended to; "-" stdout."""

    def __init__(self, path: str, stdout: IO[bytes]) -> None:
        self.path, self.stdout = path, stdout
        self.file: IO[bytes] | None = None

    def start(self) -> None:
        """A transfer starts: the file made (empty) for the first, as curl's."""
        if self.path != "-" and self.file is None:
            self.file = open(self.path, "wb")  # noqa: SIM115 (closed by close())

    def write(self, raw: bytes) -> None:
        if self.path == "-":
            self.stdout.write(raw)
            self.stdout.flush()
            return
        self.start()
        assert self.file is not None
        self.file.write(raw)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
