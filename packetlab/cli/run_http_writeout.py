"""curl 7.88's -w/--write-out for `pktlab run http`: the format (`@FILE`), each
variable's value from a result, the output with curl's escapes and warnings."""

from __future__ import annotations

import re
from typing import Any

from packetlab.cli.run_http_body import _read
from packetlab.measure.http_fields import received_text


def write_out_format(text: str, stdin: bool = True) -> str:
    """-w's argument: FORMAT, or @FILE's text (@- stdin; empty without `stdin`: another
    use read it), as curl."""
    if text == "@-" and not stdin:
        return ""
    if text.startswith("@"):
        return file2string(_read("--write-out", text[1:])).decode("utf-8", "replace")
    return text


def file2string(data: bytes) -> bytes:
    """A file's text as curl 7.88's file2string takes it (-w @FILE): read in fgets()
    pieces of up to 255 bytes (a line's end ends one), each cut at its first CR or LF
    (and, a C string, at a NUL): the line ends gone, and what follows a CR in its piece."""
    out, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + 255) + 1 or min(pos + 255, len(data))
        out.append(re.split(b"[\r\n\0]", data[pos:end], maxsplit=1)[0])
        pos = end
    return b"".join(out)


def _sec(us: float | None) -> float:
    return round((us or 0.0) / 1e6, 6)


def write_out_values(r: Any, url: str, filename: str | None, exitcode: int,
                     error: str | None, urlnum: int = 0) -> dict[str, Any]:  # fmt: skip
    """curl's --write-out variables of one fetch (an HttpResult), typed as %{json} has
    them; `urlnum` the URL's place among the command's (0 first; a glob's URLs share it)."""
    total = _sec(r.total_us)
    scheme = (r.url_effective or url).split("://", 1)[0].upper()
    if hasattr(r, "scheme"):  # curl's: the last connection's, null when none was made
        scheme = None if r.scheme is None else r.scheme.upper()
    return {
        # (a received field: its bytes as they came, as the ones given on the command line)
        "content_type": None if r.content_type is None else received_text(r.content_type),
        "errormsg": (getattr(r, "said", None) or error) if error else error,  # curl's words
        "exitcode": exitcode,
        "filename_effective": filename,
        "ftp_entry_path": None,
        "http_code": r.status or 0,
        "http_connect": 0,
        "http_version": _curl_version(r.http_version) if r.status is not None else "0",
        "local_ip": r.local_ip,
        "local_port": r.local_port,
        "method": r.method,
        "num_certs": getattr(r, "num_certs", 0),
        "num_connects": r.connects,
        "num_headers": _header_lines(r) if r.status is not None else 0,
        "num_redirects": r.num_redirects,
        "proxy_ssl_verify_result": 0,
        "redirect_url": r.redirect_url,
        "referer": r.referer,
        "remote_ip": r.remote_ip,
        "remote_port": r.remote_port,
        "response_code": r.status or 0,
        "scheme": scheme,
        "size_download": r.body_len if r.status is not None else 0,
        "size_header": r.header_size,
        "size_request": r.request_size,
        "size_upload": r.upload_size,
        "speed_download": int(r.body_len / total) if total and r.status else 0,
        "speed_upload": int(r.upload_size / total) if total else 0,
        "ssl_verify_result": r.ssl_verify_result,
        "time_appconnect": _sec(r.tls_us),
        "time_connect": _sec(r.connect_us),
        "time_namelookup": _sec(r.namelookup_us),
        "time_pretransfer": _sec(r.pretransfer_us),
        "time_redirect": _sec(r.redirect_us),
        "time_starttransfer": _sec(r.first_byte_us),
        "time_total": total,
        "url": url,
        "url_effective": r.url_effective or url,
        "urlnum": urlnum,
    }


def _curl_version(version: str) -> str:
    return "1" if version == "1.0" else version  # curl's words: HTTP/1.0 is "1"


def _header_lines(r: Any) -> int:
    """curl's num_headers: the last response's fields as they came (a name given twice
    twice; h11 keeps one of two equal Content-Lengths), a folded one once."""
    if not r.raw_headers:
        return len(r.headers)
    # the final answer's block (a 1xx block before it is not counted), after its status
    block = [b for b in r.raw_headers[-1].split(b"\r\n\r\n") if b.strip()][-1:] or [b""]
    lines = block[0].split(b"\n")[1:]
    return sum(1 for line in lines if line.strip(b"\r") and line[:1] not in b" \t")


def curl_json(values: dict[str, Any]) -> str:
    """%{json} as curl 7.88.1 writes it: one line, no spaces, the names in order, times
    with 6 decimals, null for a string it has not (its curl_version not there: ours is
    no libcurl)."""
    out = []
    for name in sorted(values):
        v = values[name]
        if name.startswith("time_"):
            text = f"{v:.6f}"
        elif v is None:
            text = "null"
        elif isinstance(v, str):
            text = json_string(v)
        else:
            text = str(int(v))
        out.append(f'"{name}":{text}')
    return "{" + ",".join(out) + "}"


_JSON_ESCAPES = {0x5C: "\\\\", 0x22: '\\"', 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n",
                 0x0D: "\\r", 0x09: "\\t"}  # fmt: skip


def json_string(text: str, lowercase: bool = False) -> str:
    """A JSON string as curl 7.88.1's jsonWriteString writes it, byte for byte: its C
    `char` is signed, so a byte above 127 is below 32 too and goes as `u%04x` of the
    sign-extended value (`ü`, c3 bc: `uffffffc3uffffffbc`), as does a control byte
    (`u001f`), neither with a backslash; `lowercase` (header names): A-Z only."""
    out = ['"']
    for byte in text.encode("utf-8", "surrogateescape"):
        escaped = _JSON_ESCAPES.get(byte)
        if escaped is not None:
            out.append(escaped)
        elif byte < 0x20 or byte > 0x7F:
            out.append(f"u{byte if byte < 0x80 else byte - 0x100 & 0xFFFFFFFF:04x}")
        else:
            out.append(chr(byte | 0x20 if lowercase and 0x41 <= byte <= 0x5A else byte))
    out.append('"')
    return "".join(out)


def header_json(headers: list[tuple[str, str]]) -> str:
    """%{header_json}: the last response's fields as curl 7.88.1 writes them, one name a
    line (lower-case; a name given twice once, at its first place, with every value in
    order), the values' bytes as they came."""
    seen: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        seen.setdefault(name.lower(), (name, []))[1].append(received_text(value))
    lines = [json_string(received_text(name), lowercase=True) + ":["
             + ",".join(json_string(v) for v in values) + "]"
             for name, values in seen.values()]  # fmt: skip
    return "{" + ",\n".join(lines) + "\n}"


def _text(name: str, value: Any) -> str:
    if name.startswith("time_"):
        return f"{value:.6f}"
    if name in ("http_code", "response_code", "http_connect"):
        return f"{value:03d}"
    return "" if value is None else str(value)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a method


VARIABLES = (  # write_out_values' names
    "content_type", "errormsg", "exitcode", "filename_effective", "ftp_entry_path",
    "http_code", "http_connect", "http_version", "local_ip", "local_port", "method",
    "num_certs", "num_connects", "num_headers", "num_redirects", "proxy_ssl_verify_result",
    "redirect_url", "referer", "remote_ip",
    "remote_port", "response_code", "scheme", "size_download", "size_header",
    "size_request", "size_upload", "speed_download", "speed_upload", "ssl_verify_result",
    "time_appconnect", "time_connect", "time_namelookup", "time_pretransfer",
    "time_redirect", "time_starttransfer", "time_total", "url", "url_effective", "urlnum",
)  # fmt: skip


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


_CONTROL = ("onerror", "stdout", "stderr", "json", "header_json")


def format_warnings(fmt: str) -> list[str]:
    """What is wrong in a -w FORMAT, one line each: unknown variables (curl warns and prints
    nothing for them) and a %{ without } (printed as is, as curl)."""
    warned: list[str] = []
    dummy = {name: 0 for name in VARIABLES} | {"errormsg": "x"}  # past any %{onerror}
    write_out(fmt, dummy, [], warned.append)
    return warned


def write_out(fmt: str, values: dict[str, Any], headers: list[tuple[str, str]],
              warn: Any = None) -> list[tuple[str, str]]:  # fmt: skip
    """`fmt` rendered as curl 7.88 does: [(stream, text)], stream "stdout" or "stderr".
    %{var} (unknown: nothing, and `warn(name)`), %header{NAME}, %% , \\n \\t \\r (another
    backslash pair is printed as is), a %{ with no } printed as is; %{onerror} stops here
    unless the fetch failed; %{stderr}/%{stdout} switch the stream."""
    out: list[tuple[str, str]] = []
    stream = "stdout"
    buf: list[str] = []

    def put(text: str) -> None:
        buf.append(text)

    def switch(to: str) -> None:
        nonlocal stream
        if buf:
            out.append((stream, "".join(buf)))
            buf.clear()
        stream = to

    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%" and i + 1 < n:
            nxt = fmt[i + 1]
            if nxt == "%":
                put("%")
                i += 2
                continue
            if nxt == "{" or fmt.startswith("header{", i + 1):
                brace = fmt.index("{", i)
                end = fmt.find("}", brace)
                if end < 0:  # curl: the %{ as is, then the rest
                    if warn is not None:
                        warn(f"--write-out: {fmt[i : brace + 1]!r} without '}}' at "
                             f"character {i + 1}: printed as is")  # fmt: skip
                    put(fmt[i : brace + 1])
                    i = brace + 1
                    continue
                name = fmt[brace + 1 : end]
                i = end + 1
                if nxt != "{":  # %header{NAME}: the last response's header, its bytes
                    value = next((v for k, v in headers if k.lower() == name.lower()), "")
                    put(received_text(value))
                elif name == "onerror":
                    if not values.get("errormsg"):
                        break
                elif name in ("stdout", "stderr"):
                    switch(name)
                elif name == "json":
                    put(curl_json(values))
                elif name == "header_json":
                    put(header_json(headers))
                elif name in values:
                    put(_text(name, values[name]))
                elif warn is not None:
                    warn(f"unknown --write-out variable: {name!r}")
                continue
            put(c)
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            put(_ESCAPES.get(fmt[i + 1], fmt[i : i + 2]))
            i += 2
            continue
        put(c)
        i += 1
    switch(stream)
    return out
