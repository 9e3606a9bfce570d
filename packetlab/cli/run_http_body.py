"""What each `pktlab run http` request sends: -d/--data* bodies, -G and --url-query
queries, -H fields, -u, cookies (-b/-c), the one reader of standard input, -T's files."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from packetlab.cli.run import RunError
from packetlab.cli.run_http_files import _check_output


def _read(what: str, name: str) -> bytes:
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        with open(name, "rb") as f:
            return f.read()
    except OSError as e:
        raise RunError(f"{what} @{name}: {e.strerror or e}") from None


def _takes_stdin(kind: str, value: str) -> bool:
    """A -d/--data-binary @- or a --data-urlencode [NAME]@- (read as curl parses it)."""
    from packetlab.cli.run_http_data import reads_stdin

    return reads_stdin(value) if kind == "urlencode" else kind != "raw" and value == "@-"


def _ignore(_: str) -> None:
    pass


def request_body(items: list[tuple[str, str]] | None, stdin: int | None = -1,
                 warn: Any = _ignore) -> bytes | None:  # fmt: skip
    """The POST body of -d/--data-binary/--data-raw/--data-urlencode/--json as curl builds
    it: each one's bytes (@FILE read; for -d with CR and LF removed; --data-urlencode as
    run_http_data.urlencode, its warnings to `warn`), joined with & (a --json joined
    to what is before it without one, as curl's). Stdin is read once,
    as curl's: by the item numbered `stdin` (-1: the first @-; None: none, another use
    read it), the other @- empty."""
    from packetlab.cli.run_http_data import urlencode

    if not items:
        return None
    if stdin == -1:
        stdin = next((i for i, (k, v) in enumerate(items) if _takes_stdin(k, v)), None)
    body = b""
    for i, (kind, value) in enumerate(items):
        if kind == "json-bad":
            from packetlab.cli.run_http_json import bad_json

            raise RunError(bad_json(value))
        if kind == "urlencode":
            data = urlencode(value, _reader("--data-urlencode", i == stdin), warn)
        elif kind != "raw" and value == "@-" and i != stdin:
            data = b""
        elif kind != "raw" and value.startswith("@"):
            data = _post_file(value[1:], warn)
            if kind == "data":
                data = data.replace(b"\r", b"").replace(b"\n", b"")
        else:
            data = value.encode("utf-8", "surrogateescape")
        # curl 7.88 joins with & but puts a --json right after what is before it
        body += data if not i or kind == "json" else b"&" + data
    return body


def _post_file(name: str, warn: Any) -> bytes:
    """-d/--data-binary/--json @FILE as curl 7.88 reads it: "-" stdin; a file that cannot
    be opened is its warning and nothing (an empty POST; this refused the run until
    session 24); a directory, which C's fopen opens and cannot read, nothing at all."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as f:
            return f.read()
    except IsADirectoryError:
        return b""
    except OSError:
        warn(f'Couldn\'t read data from file "{name}", this makes an empty POST.')
        return b""


def is_json(items: list[tuple[str, str]] | None) -> bool:
    """curl's --json among the -d options: the request says it is JSON and wants JSON."""
    return any(kind == "json" for kind, _ in items or [])


def json_fields(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """curl 7.88's --json fields after the -H ones, each unless a -H of its name (any
    case, also one that removes it: `-H 'Accept:'`) is given."""
    names = {k.lower() for k, _ in headers}
    return [*headers, *((k, "application/json") for k in ("Content-Type", "Accept")
                        if k.lower() not in names)]  # fmt: skip


def _url_query(args: argparse.Namespace, owner: tuple[str, Any] | None,
               warn: Any) -> str | None:  # fmt: skip
    """--url-query's query (run_http_data.url_query), stdin read by the one that owns it."""
    from packetlab.cli.run_http_data import url_query

    def read(i: int, name: str) -> bytes | None:
        return _reader("--url-query", owner == ("query", i))(name)

    return url_query(args.url_query, read, warn)


def _reader(option: str, stdin: bool) -> Any:
    """An @FILE reader of --data-urlencode or --url-query (run_http_data.read_file): "-"
    stdin when this use owns it, else empty."""
    from packetlab.cli.run_http_data import read_file

    def read(name: str) -> bytes | None:
        return read_file(name, option, lambda: _read(option, "-") if stdin else b"")

    return read


def with_query(url: str, data: bytes, option: str = "-G/--get") -> str:
    """curl -G (and --url-query): `data` appended to the URL's query as curl's URL API
    appends it (run_http_data.append_query)."""
    from packetlab.cli.run_http_data import append_query

    return append_query(url, data.decode("utf-8", "surrogateescape"), option)


def user_password(text: str) -> tuple[str, str]:
    """-u USER:PASSWORD (the password after the first colon)."""
    user, sep, password = text.partition(":")
    if not sep:
        raise RunError(f"-u/--user {text!r}: no password (curl would ask for it; give "
                       "USER:PASSWORD)")  # fmt: skip
    return user, password


def _headers(items: list[str], warn: Callable[[str], object] | None = None
             ) -> list[tuple[str, str]]:  # fmt: skip
    """-H's fields: (NAME, VALUE); `NAME:` (no value) removes curl's own NAME, and
    `NAME;` sends NAME empty (`EMPTY_FIELD`), as curl's. One that is no field (`X`, no
    colon; `:v`, ` :v`, `;`, no name) is not sent and the run goes on, as curl 7.88.1's
    (exit 0, not on the wire nor in -v), with one `warn` (curl says nothing: a typo is
    told, not lost). Until session 26 ours refused it (2) where curl ran."""
    from packetlab.measure.http_fields import GivenValue, field_bytes
    from packetlab.measure.http_message import EMPTY_FIELD

    out = []
    for item in _header_files(items):
        name, sep, value = item.partition(":")
        if not sep and item.endswith(";") and item[:-1].strip() and ";" not in item[:-1]:
            out.append((item[:-1].strip(), EMPTY_FIELD))
            continue
        if not sep or not name.strip():
            # (curl sends ` :v` and `;` as typed, a line no server reads as a field: a
            # continuation of the one before, or a field without a name; not copied)
            if warn is not None:
                warn(f"-H/--header {item!r}: no 'NAME: VALUE', not sent (as curl)")
            continue
        # the value as given but the one blank after the colon; blanks only: removal.
        # Over HTTP/1.1 curl sends the line as typed (`X:v`, `X :v`): GivenValue keeps it
        given = value[1:] if value.startswith(" ") else value
        kept = GivenValue(given, field_bytes(item)) if given.strip() else ""
        out.append((name.strip(), kept))
    return out


def _header_files(items: list[str]) -> list[str]:
    """-H @FILE (curl 7.55+): FILE's lines (up to its first NUL; CR and LF both end a
    line, as curl's strtok), each a -H in its place; @- stdin. A line that is no field
    (no `:`, no `NAME;`: an empty one too) is not sent, as curl's (a -H given so is
    refused: `_headers`)."""
    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        # curl: strtok(text, "\r\n") over the file as a C string: lines end at a CR or
        # an LF, and the file at its first NUL (ours failed the URL on either: 56)
        data = _read("--header", item[1:]).split(b"\0", 1)[0]
        lines = re.split(r"[\r\n]+", data.decode("utf-8", "surrogateescape"))
        out += [x for x in lines if ":" in x or (x.endswith(";") and x[:-1].strip())]
    return out


def cookie_options(items: list[str], jar_file: str | None, stdin: bool = True,
                   junk: bool = False) -> tuple[Any, str | None]:  # fmt: skip
    """-b and -c as curl reads them: (the cookie engine or None, the -b string or None).
    A -b with '=' is cookies to send as is; else a Netscape cookie file, read if it exists
    (curl: a missing one just turns the engine on; with `junk`, -j, without its session
    cookies); `-b -` stdin, read once (none without `stdin`: another use read it)."""
    from packetlab.measure.cookies import CookieJar

    strings = [item for item in items if "=" in item]
    files = [item for item in items if "=" not in item]
    jar = CookieJar() if files or jar_file is not None else None
    for name in files:
        if not name or (name != "-" and not os.path.exists(name)):
            continue
        if name != "-" and os.path.isdir(name):
            raise RunError(f"-b/--cookie {name}: is a directory")
        assert jar is not None
        if name == "-" and not stdin:
            continue
        stdin = stdin and name != "-"
        jar.load(_read("--cookie", name).decode("utf-8", "surrogateescape"), sessions=not junk)
    if jar_file is not None:
        _check_output(jar_file, "--cookie-jar")
    # curl 7.88's tool joins its -b strings with ";", each as given (tool_operate.c)
    return jar, ";".join(strings) or None


def stdin_owner(args: argparse.Namespace, form_stdin: int | None,
                uploads: list[Any]) -> tuple[str, Any] | None:  # fmt: skip
    """Which use of stdin reads it, as curl 7.88: stdin is read once, and every other use
    gets it empty (-T -: an empty chunked PUT; -F: an empty part; -d, -w, -b: nothing).
    First those curl reads as it parses its arguments, the first on the command line:
    -d/--data-binary @- (("data", its number)), -w @- (("write_out", its place among
    the -w)), a -F part of stdin when stdin is a pipe or a terminal (("form", 0));
    then -b - (("cookie", 0), read as the first transfer starts); then what is read when
    sent: a -F part of a regular file (("form", 0): the first in the first transfer's
    body), the first transfer's -T - (("upload", 0)). None: stdin unused.
    `form_stdin`: the number of the first -F with a part of stdin (`Forms.first_stdin`);
    `uploads`: each -T's (file name, Upload) list (a glob's names: `-T '{-,a}'`)."""
    from packetlab.measure.upload_body import stdin_is_regular

    regular = stdin_is_regular()
    w = 0
    for kind, key in getattr(args, "stdin_order", []):
        if kind == "data":
            if _takes_stdin(*args.data[key]):
                return ("data", key)
        elif kind == "query":
            from packetlab.cli.run_http_data import reads_stdin

            if not args.url_query[key].startswith("+") and reads_stdin(args.url_query[key]):
                return ("query", key)
        elif kind == "write_out":
            if key == "@-":
                return ("write_out", w)
            w += 1
        elif kind == "form" and key == form_stdin and not regular:
            return ("form", 0)
    if "-" in args.cookie:
        return ("cookie", 0)
    if form_stdin is not None:
        return ("form", 0)
    if any(name == "-" for files in uploads for name, _ in files):
        return ("upload", 0)
    return None


def _upload_files(arg: str, globoff: bool) -> list[tuple[str, Any]]:
    """One -T: its files (curl's globbing of the name unless -g), each (name, Upload),
    looked at now."""
    from packetlab.measure.upload_body import UploadError, file_upload
    from packetlab.measure.urlglob import GlobError, glob_names

    try:
        names = [arg] if globoff else glob_names(arg)
    except GlobError as e:
        raise RunError(f"-T/--upload-file {arg!r}: {e}") from None
    try:
        return [(name, file_upload(name)) for name in names]
    except UploadError as e:
        where = "" if names == [arg] else f" (from {arg!r})"
        raise RunError(f"-T/--upload-file {e}{where}") from None


def bodies(args: argparse.Namespace, data: bytes | None) -> tuple[list[Any], list[Any], Any]:
    """-F's parts and -T's uploads (each -T a list of (file name, Upload): curl's glob;
    files looked at now: a missing or unreadable one is a one-line error before anything
    is sent), checked against -d (`data` not None: given), -I and -G as curl; and which
    -F first has a part of stdin (`Forms.first_stdin`)."""
    from packetlab.measure.upload_body import UploadError
    from packetlab.measure.upload_form import Forms

    tree = Forms()  # NAME=( ... =): a sub-multipart, as curl's
    warnings: list[str] = []
    for literal, f in args.form:
        option = "--form-string" if literal else "-F/--form"
        try:
            tree.add(f, literal, warnings)
        except UploadError as e:  # a file part's file: the -F it came from (was -T's name)
            named = str(e).startswith(("-F", "--form-string"))
            raise RunError(str(e) if named else f"{option} {f!r}: {e}") from None
        stderr = getattr(args, "_stderr", None) or sys.stderr
        for warning in warnings if not args.silent else []:  # curl: "Warning: ..."
            print(f"pktlab run http: {option} {f!r}: {warning}", file=stderr)
        warnings.clear()
    forms: list[Any] = tree.parts
    uploads = [_upload_files(f, args.globoff) for f in args.upload_file]
    given = [o for o, v in (("-d/--data", data is not None), ("-F/--form", forms),
                            ("-T/--upload-file", uploads)) if v]  # fmt: skip
    if len(given) > 1:  # curl: "You can only select one HTTP request method!" (2)
        raise RunError(f"{' and '.join(given)}: one request body only")
    if given and args.head:
        raise RunError(f"-I/--head and {given[0]}: one request method only (HEAD or "
                       f"{'PUT' if uploads else 'POST'})")  # fmt: skip
    if args.get and (forms or uploads):
        raise RunError(f"-G/--get and {given[0]}: -G makes -d the query; no other body")
    if len(uploads) > len(args.urls):
        raise RunError(f"{len(uploads)} -T/--upload-file for {len(args.urls)} URLs")
    return forms, uploads, tree.first_stdin
