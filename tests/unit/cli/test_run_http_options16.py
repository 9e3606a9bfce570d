"""`pktlab run http`'s curl options of session 16: --data-urlencode, --data-ascii,
--url-query (and -G through curl's URL API), -A, -e (;auto), -r, -D, -m,
--connect-timeout and --retry: each argument read as curl 7.88 reads it, the bytes it
makes (pinned from what curl 7.88.1 sent to a capturing server), and whole runs over
the scripted endpoint (what the server saw, what went to stdout, -D and stderr)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from test_http_redirects import response
from test_run_http_curl import parse, run
from web_pki import make_pki

from packetlab.cli import (
    run_http,
    run_http_body,
    run_http_data,
    run_http_experiment,
    run_http_opts,
    run_http_retry,
)
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress


def _no_file(name: str) -> bytes | None:
    return {"f1": b"a b&c\n\x01", "empty": b""}.get(name)


def test_urlencode_as_curl_7_88() -> None:
    # each pinned from curl 7.88.1's body for the same --data-urlencode
    warned: list[str] = []

    def enc(arg: str) -> bytes:
        return run_http_data.urlencode(arg, _no_file, warned.append)

    assert enc("a b=c d&e/~._-*") == b"a b=c+d%26e%2F~._-%2A"  # only the content
    assert enc("=x y") == b"x+y" and enc("plain é") == b"plain+%C3%A9"
    assert enc("@f1") == b"a+b%26c%0A%01" and enc("n@f1") == b"n=a+b%26c%0A%01"
    assert enc("q=") == b"q=" and enc("a@b=c") == b"a@b=c"  # the first = wins over @
    assert enc("e@empty") == b"" and warned == []  # an empty file: not even the name
    assert enc("m@missing") == b""  # curl: a warning, an empty part
    assert warned == ['Couldn\'t read data from file "m@missing", this makes an empty POST.']
    assert run_http_data.reads_stdin("a@-") and run_http_data.reads_stdin("@-")
    assert not run_http_data.reads_stdin("a=@-") and not run_http_data.reads_stdin("-")


def test_data_urlencode_joins_with_the_other_data_in_order(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x y\r\n")
    a = parse("-d", "a=1", "--data-urlencode", f"n@{f}", "--data-ascii", f"@{f}",
              "--data-raw", "@r", "--data-urlencode", "m@missing", "u")  # fmt: skip
    assert run_http_body.request_body(a.data) == b"a=1&n=x+y%0D%0A&x y&@r&"
    with pytest.raises(RunError, match=r"--data-urlencode @.*error encountered when reading"):
        run_http_body.request_body(parse("--data-urlencode", f"@{tmp_path}", "u").data)


def test_stdin_read_once_by_its_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    # curl 7.88.1: `echo 'in put' | curl --data-urlencode a@- --data-urlencode b@- -d @-`
    # sends a=in+put%0A&& (stdin read by the first, the others get nothing)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"in put\n")))
    a = parse("--data-urlencode", "a@-", "--data-urlencode", "b@-", "-d", "@-", "u")
    owner = run_http_body.stdin_owner(a, None, [])
    assert owner == ("data", 0)
    assert run_http_body.request_body(a.data, owner[1]) == b"a=in+put%0A&&"
    # --url-query's @- first: the query has it, the body's @- nothing
    a = parse("-d", "x", "--url-query", "a@-", "--data-urlencode", "b@-", "u")
    assert run_http_body.stdin_owner(a, None, []) == ("query", 0)
    assert run_http_body.request_body(a.data, None) == b"x&"


def test_url_query_and_get_through_curls_url_api() -> None:
    q = run_http_data.url_query(["c=d e", "+x=%41", "@f1"], lambda i, n: _no_file(n), print)
    assert q == "c=d+e&x=%41&a+b%26c%0A%01"
    assert run_http_data.url_query([], lambda i, n: None, print) is None

    def app(url: str, query: str) -> str:
        return run_http_data.append_query(url, query, "--url-query")

    # each pinned from curl 7.88.1's %{url_effective} and request line
    assert app("http://h:1/p#frag", q) == "http://h:1/p?c=d+e&x=%41&a+b%26c%0a%01#frag"
    assert app("http://h:1/q?w#g", "c=d") == "http://h:1/q?w&c=d#g"
    assert app("http://h:1", "c=d") == "http://h:1/?c=d"
    assert (
        app("http://h/b?", "a") == "http://h/b?a" and app("http://h/b?x&", "a") == "http://h/b?x&a"
    )
    assert run_http_body.with_query("http://h/g", b"b=x%2Fy") == "http://h/g?b=x%2fy"
    with pytest.raises(RunError, match=r"--url-query: the query 'f g' has a space.*curl: 3"):
        app("http://h/", "f g")


def test_get_wins_over_url_query_as_curl_7_88() -> None:
    # curl 7.88.1: -G's data is appended and --url-query is not (one or the other)
    _, _, _, _, records = run("-G", "-d", "a=1", "--url-query", "c=d", "-w", "",
                              "http://192.0.2.80/g?z")  # fmt: skip
    assert records[0]["url_effective"] == "http://192.0.2.80/g?z&a=1"
    _, _, _, _, records = run("--url-query", "c=d e", "-d", "b", "-w", "", "http://192.0.2.80/p")
    assert records[0]["url_effective"] == "http://192.0.2.80/p?c=d+e"
    assert records[0]["method"] == "POST"


def test_range_and_referer_arguments_as_curl() -> None:
    warned: list[str] = []
    assert run_http_opts.byte_range("0-5", warned.append) == "0-5" and warned == []
    assert run_http_opts.byte_range("5", warned.append) == "5-"
    assert warned[-1].startswith("A specified range MUST include at least one dash (-).")
    assert run_http_opts.byte_range("x-1", warned.append) == "x-1"  # warned, sent as is
    assert warned[-1].startswith("Invalid character is found in given range.")
    with pytest.raises(RunError, match="unsupported range point"):
        run_http_opts.byte_range("99999999999999999999", warned.append)
    assert run_http_opts.referer("http://r/;auto") == ("http://r/", True)
    assert run_http_opts.referer(";autox") == (None, True)  # after ;auto: dropped
    assert run_http_opts.referer("http://r/") == ("http://r/", False)
    assert run_http_opts.referer("") == (None, False) == run_http_opts.referer(None)


def _seen(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request's header fields in order, as the body; /r: a redirect to /x."""
    if target.startswith("/r"):
        return response(302, b"", Location="/x#f")
    text = "".join(f"{k}: {v}\n" for k, v in headers.items()) + f"{method} {target}\n"
    return response(200, text.encode() + body)


def test_curl_fields_in_curls_order() -> None:
    # curl 7.88.1 sent these fields in this order for the same options (but its own
    # User-Agent)
    code, _, raw, _, _ = run(
        "-r", "0-1", "-d", "abc", "-u", "a:b", "--compressed", "-b", "c=d", "-H", "X-A: 1",
        "-A", "ua", "-e", "ref", "-o", "-", "http://192.0.2.80/p", handler=_seen,
    )  # fmt: skip
    assert code == 0
    assert raw.decode().splitlines() == [
        "host: 192.0.2.80", "authorization: Basic YTpi", "content-range: bytes 0-1/3",
        "user-agent: ua", "accept: */*", "accept-encoding: deflate, gzip, br, zstd", "referer: ref",
        "cookie: c=d", "x-a: 1", "content-length: 3",
        "content-type: application/x-www-form-urlencoded", "POST /p", "abc",
    ]  # fmt: skip
    # -A '' and -e '': none; -H replaces (in the -H place), -H 'NAME:' sends nothing
    _, _, raw, _, _ = run("-A", "", "-e", "", "-r", "5", "-H", "Referer: b", "-H", "X-Gone:",
                          "-o", "-", "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert raw.decode().splitlines() == [
        "host: 192.0.2.80", "range: bytes=5-", "accept: */*", "referer: b", "GET /p",
    ]  # fmt: skip
    # -e ';auto' -L: the redirect hop's Referer is the URL it came from (no fragment)
    _, _, raw, _, _ = run("-L", "-e", "http://s/;auto", "-o", "-",
                          "http://192.0.2.80/r?q#z", handler=_seen)  # fmt: skip
    assert "referer: http://192.0.2.80/r?q" in raw.decode().splitlines()
    _, _, raw, _, _ = run("-L", "-e", "http://s/", "-o", "-", "http://192.0.2.80/r",
                          handler=_seen)  # fmt: skip
    assert "referer: http://s/" in raw.decode().splitlines()


def test_dump_header_every_block_as_received(tmp_path: Path) -> None:
    d = tmp_path / "h"
    d.write_bytes(b"old")
    null = ("-o", "/dev/null")
    code, _, raw, _, _ = run("-L", "-D", str(d), "-w", "", *null, *null, "http://192.0.2.80/r",
                             "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    blocks = d.read_bytes().split(b"\r\n\r\n")
    assert code == 0 and raw == b"" and len(blocks) == 4 and blocks[-1] == b""
    assert blocks[0].startswith(b"HTTP/1.1 302 X\r\n") and b"Location: /x#f" in blocks[0]
    assert blocks[1].startswith(b"HTTP/1.1 200 X\r\n") and blocks[2].startswith(b"HTTP/1.1 200")
    # - is stdout, before the body (-I: the headers once to each)
    _, _, raw, _, _ = run("-D", "-", "-o", "-", "http://192.0.2.80/p", handler=_seen)
    assert raw.startswith(b"HTTP/1.1 200 X\r\n") and raw.endswith(b"GET /p\n")
    _, _, raw, _, _ = run("-I", "-D", "-", "-o", "-", "http://192.0.2.80/p", handler=_seen)
    assert raw.count(b"HTTP/1.1 200 X\r\n") == 2
    # the file is made when the first transfer starts, even when nothing comes
    e = tmp_path / "e"
    code, _, _, _, _ = run("-D", str(e), "-w", "", "http://192.0.2.81/")
    assert code == 1 and e.read_bytes() == b""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-D", "/nonexistent/dir/h", "http://a.test/"], "--dump-header /nonexistent/dir/h: no"),
        (["-r", "123456789012345678901", "http://a.test/"], "unsupported range point"),
        (["--url-query", "+a b", "http://a.test/"], "has a space or control byte"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--retry", "x"], "expected a proper numerical parameter"),
        (["--retry=-1"], "expected a positive numerical parameter"),
        (["--retry-delay", "0.5"], "expected a proper numerical parameter"),
        (["--connect-timeout=-1"], "expected a proper numerical parameter"),
    ],
)
def test_bad_numbers_are_usage_errors(argv: list[str], words: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as e:
        parse(*argv, "u")
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_m_is_max_time_and_connect_timeout_is_passed() -> None:
    a = parse("-m", "2.5", "--connect-timeout", "0.5", "u")
    assert (a.max_time, a.connect_timeout) == (2.5, 0.5)
    assert parse("u").connect_timeout is None


def test_transient_outcomes_as_curl() -> None:
    t = run_http_retry.transient
    assert t(28, None, "timed out", False, False) == "timeout" == t(6, None, "x", False, False)
    assert t(7, None, "connect to a: connection refused (...)", False, False) is None
    assert t(7, None, "connect to a: connection refused (...)", True, False) == "refused"
    assert t(7, None, "connect to a: no route", True, False) is None
    assert t(7, None, "connect to a: no route", True, True) == "all"
    for status in (408, 429, 500, 502, 503, 504):
        assert t(0, status, None, False, False) == "http" == t(22, status, "x", False, False)
    assert t(0, 404, None, False, True) is None  # a 404 without -f is no failure
    assert t(22, 404, "x", False, True) == "all" and t(22, 404, "x", False, False) is None
    assert t(56, None, "x", True, False) is None


def test_retry_waits_and_words_as_curl() -> None:
    r = run_http_retry.Retry(3, 0, 0, started=100.0)
    got = [r.next("http", 0, 100.0 + i) for i in range(4)]
    assert got == [
        (1.0, "Problem : HTTP error. Will retry in 1 seconds. 3 retries left."),
        (2.0, "Problem : HTTP error. Will retry in 2 seconds. 2 retries left."),
        (4.0, "Problem : HTTP error. Will retry in 4 seconds. 1 retries left."),
        (None, None),
    ]
    r = run_http_retry.Retry(2, 3, 0, started=0.0)  # --retry-delay: the same each time
    assert [r.next("timeout", 0, 0)[0], r.next("all", 0, 0)] == [
        3.0, (3.0, "Problem (retrying all errors). Will retry in 3 seconds. 1 retries left."),
    ]  # fmt: skip
    r = run_http_retry.Retry(9, 0, 10, started=0.0)  # --retry-max-time from the first try
    assert r.next("timeout", 0, 9.9)[0] == 1.0 and r.next("timeout", 0, 10.0) == (None, None)
    r = run_http_retry.Retry(9, 0, 10, started=0.0)  # a Retry-After past it: curl's words
    assert r.next("http", 8, 5.0) == (
        None,
        "The Retry-After: time would make this command "
        "line exceed the maximum allowed time for retries.",
    )
    assert run_http_retry.Retry(9, 0, 0, 0.0).next("http", 7, 0.0)[0] == 7.0
    assert run_http_retry.Retry(9, 0, 0, 0.0).next("timeout", 7, 0.0)[0] == 1.0  # HTTP only
    r = run_http_retry.Retry(20, 0, 0, 0.0)
    assert max(r.next("timeout", 0, 0.0)[0] or 0 for _ in range(20)) == 600.0  # capped


def test_retry_after_seconds_or_date() -> None:
    ra = run_http_retry.retry_after
    assert ra([("Retry-After", "12")], 0.0) == 12.0 and ra([], 0.0) == 0.0
    assert ra([("retry-after", "Thu, 01 Jan 1970 00:01:40 GMT")], 40.5) == 59.0
    assert ra([("Retry-After", "Thu, 01 Jan 1970 00:00:10 GMT")], 40.0) == 0.0  # past
    assert ra([("Retry-After", "soon")], 0.0) == 0.0


class _Flaky:
    """Answers 503 (then 200) `fails` times, each on a closed connection."""

    def __init__(self, fails: int, status: int = 503, **headers: str) -> None:
        self.fails, self.status, self.headers, self.n = fails, status, headers, 0

    def __call__(self, method: str, target: str, headers: Any, body: bytes) -> bytes:
        self.n += 1
        if self.n <= self.fails:
            return response(self.status, f"fail {self.n}\n".encode(), Connection="close",
                            **self.headers)  # fmt: skip
        return response(200, f"ok {self.n}\n".encode(), Connection="close")


def test_retry_a_transient_status_as_curl(tmp_path: Path) -> None:
    out = tmp_path / "o"
    flaky = _Flaky(2)
    code, _, raw, err, records = run("--retry", "3", "-o", str(out), "-w", "%{http_code}\\n",
                                     "http://192.0.2.80/", handler=flaky)  # fmt: skip
    assert code == 0 and raw == b"200\n" and out.read_bytes() == b"ok 3\n" and flaky.n == 3
    assert err.splitlines() == [
        "Warning: Problem : HTTP error. Will retry in 1 seconds. 3 retries left.",
        "Throwing away 7 bytes",
        "Warning: Problem : HTTP error. Will retry in 2 seconds. 2 retries left.",
        "Throwing away 7 bytes",
    ]
    assert len(records) == 1  # one row for the URL: its last try
    # -f: each try a failure (22), all of them, no body written (as curl's); -s: no
    # warnings
    flaky = _Flaky(9, 502)
    code, _, raw, err, records = run("-s", "-f", "--retry", "2", "-o", "-", "-w", "|",
                                     "http://192.0.2.80/", handler=flaky)  # fmt: skip
    assert code == 1 and records[0]["exitcode"] == 22 and flaky.n == 3 and err == ""
    assert raw == b"|"
    # not transient: no retry
    flaky = _Flaky(1, 404)
    code, _, _, err, _ = run("--retry", "2", "-w", "", "http://192.0.2.80/", handler=flaky)
    assert code == 0 and flaky.n == 1 and err == ""


def test_retry_after_and_a_refused_connect() -> None:
    flaky = _Flaky(1, 429, Retry_After="3")
    _, _, _, err, _ = run("--retry", "1", "-w", "", "http://192.0.2.80/", handler=flaky)
    assert err.splitlines() == [
        "Warning: Problem : HTTP error. Will retry in 3 seconds. 1 retries left."
    ]  # fmt: skip
    code, _, _, err, records = run("--retry", "1", "--retry-connrefused", "-s", "-w", "",
                                   "http://192.0.2.81/")  # fmt: skip
    assert code == 1 and records[0]["exitcode"] == 7 and err == ""
    code, _, _, err, _ = run("--retry", "1", "--retry-connrefused", "-w", "",
                             "http://192.0.2.81/")  # fmt: skip
    refused = ("pktlab run http: http://192.0.2.81/: connect to 192.0.2.81:80: connection "
               "refused (the host answered the SYN with a reset: nothing listens on that "
               "port)")  # fmt: skip
    assert err.splitlines() == [  # cut at 79 columns as curl's
        refused,  # (each try's error first, as curl's `curl: (7) ...`: since session 28)
        "Warning: Problem : connection refused. Will retry in 1 seconds. 1 retries ",
        "Warning: left.",
        refused,
    ]


def test_warnings_cut_as_curls() -> None:
    # each as curl 7.88.1 printed it
    assert run_http_opts.curl_warning(
        "A specified range MUST include at least one dash (-). Appending one for you!"
    ) == ("Warning: A specified range MUST include at least one dash (-). Appending one \n"
          "Warning: for you!\n")  # fmt: skip
    assert run_http_opts.curl_warning("x" * 75) == f"Warning: {'x' * 70}\nWarning: xxxxx\n"
    assert run_http_opts.curl_warning("Problem : HTTP error. Will retry in 1 seconds. 3 "
                                      "retries left.").count("Warning") == 1  # fmt: skip


def test_budget_counts_the_retries() -> None:
    base = run_http.budget(parse("u"))
    assert run_http.budget(parse("--retry", "3", "u")) == 4 * base + 1 + 2 + 4
    assert run_http.budget(parse("--retry", "3", "--retry-delay", "5", "u")) == 4 * base + 15
    assert run_http.budget(parse("--retry", "3", "--retry-max-time", "2", "u")) == 4 * base + 2
    assert run_http.budget(parse("--retry", "12", "u")) == 13 * base + 1023 + 1200
    assert run_http.budget(parse("--retry", "10000000000", "u")) > 6e12  # at once


def test_help_documents_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in ("--data-urlencode", "--data-ascii", "--url-query", "-A NAME, --user-agent",
                   "-e URL, --referer", "-r RANGE, --range", "-D FILE, --dump-header",
                   "-m S, --max-time",
                   "--connect-timeout", "--retry N", "--retry-delay", "--retry-max-time",
                   "--retry-connrefused", "--retry-all-errors", "-C OFFSET, --continue-at",
                   "-S, --show-error", "--fail-with-body", "--max-filesize",
                   "--resolve", "--location-trusted", "--expect100-timeout",
                   "-E FILE[:PASSWORD], --cert FILE[:PASSWORD]", "--key FILE", "--pass PHRASE",
                   "-z TIME, --time-cond"):  # fmt: skip
        assert option in text, option


def test_fail_writes_the_headers_not_the_body(tmp_path: Path) -> None:
    # curl 7.88.1 -f: the transfer ends after a >= 400 status's headers: -i and -D have
    # them, the body is not written, -o makes no file (with -i: the headers alone),
    # %{size_download} 0 (ours wrote the body, made the file, counted its bytes)
    out, dump = tmp_path / "o", tmp_path / "d"
    block = b"HTTP/1.1 404 X\r\nContent-Length: 7\r\nConnection: close\r\n\r\n"
    code, _, raw, _, records = run(
        "-f", "-i", "-D", str(dump), "-w", "%{http_code} %{size_download}", "-o", "-",
        "-o", str(out), "http://192.0.2.80/", "http://192.0.2.80/", handler=_Flaky(9, 404),
    )  # fmt: skip
    assert code == 1 and [r["exitcode"] for r in records] == [22, 22]
    assert raw == block + b"404 0404 0" and out.read_bytes() == block
    assert dump.read_bytes() == block * 2
    out.unlink()
    code, _, raw, _, _ = run("-f", "-o", str(out), "-w", "%{size_download}",
                             "http://192.0.2.80/", handler=_Flaky(9, 404))  # fmt: skip
    assert code == 1 and raw == b"0" and not out.exists()
    code, _, raw, _, _ = run("-f", "-o", "-", "-w", "", "http://192.0.2.80/", handler=_Flaky(0))
    assert code == 0 and raw == b"ok 1\n"


def test_url_effective_keeps_the_fragment_as_curl() -> None:
    # curl 7.88.1: %{url_effective} http://h/p#frag (ours dropped the #frag), also a
    # redirect's (Location: /x#f); the Referer of ;auto has none
    _, _, raw, _, _ = run("-w", "%{url_effective} ", "http://192.0.2.80/p#frag",
                          "http://192.0.2.80/p?q#f", handler=_seen)  # fmt: skip
    assert raw.endswith(b"GET /p?q\nhttp://192.0.2.80/p?q#f ")
    assert b"GET /p\nhttp://192.0.2.80/p#frag " in raw
    _, _, raw, _, _ = run("-L", "-w", "|%{url_effective}", "http://192.0.2.80/r#z",
                          handler=_seen)  # fmt: skip
    assert raw.endswith(b"|http://192.0.2.80/x#f") and b"GET /x\n" in raw


def test_retry_into_a_file_that_cannot_be_truncated_is_23() -> None:
    # curl 7.88.1 --retry -o /dev/null: "Throwing away 7 bytes", "curl: (23) Failed to
    # truncate file", no more tries (ours: [Errno 22] Invalid argument, exit 2)
    flaky = _Flaky(2)
    code, _, raw, err, records = run("--retry", "3", "-o", "/dev/null", "-w", "X",
                                     "http://192.0.2.80/", handler=flaky)  # fmt: skip
    assert code == 1 and flaky.n == 1 and records[0]["exitcode"] == 23
    assert raw == b""  # curl 7.88.1: no write-out for it (session 17; ours printed X)
    assert records[0]["error"] == "Failed to truncate file /dev/null: Invalid argument"
    assert err.splitlines()[:2] == [
        "Warning: Problem : HTTP error. Will retry in 1 seconds. 3 retries left.",
        "Throwing away 7 bytes",
    ]


def test_show_error_and_fail_with_body_as_curl() -> None:
    # curl -fsSL (ours: `unrecognized arguments: -S`): the error line on stderr despite -s
    code, _, raw, err, records = run("-fsSL", "-w", "[%{http_code}]", "http://192.0.2.80/",
                                     handler=_Flaky(1, 404))  # fmt: skip
    assert code == 1 and raw == b"[404]" and records[0]["exitcode"] == 22
    assert err.count("\n") == 1 and "the server answered 404 X (--fail)" in err
    _, _, _, err, _ = run("-fs", "-w", "", "http://192.0.2.80/", handler=_Flaky(1, 404))
    assert err == ""
    # --fail-with-body: 22, the body written
    code, _, raw, _, records = run("-s", "--fail-with-body", "-w", "[%{http_code}]",
                                   "http://192.0.2.80/", handler=_Flaky(1, 404))  # fmt: skip
    assert code == 1 and raw == b"fail 1\n[404]" and records[0]["exitcode"] == 22
    with pytest.raises(RunError, match="You must select either --fail or --fail-with-body"):
        run_http.experiment(parse("-f", "--fail-with-body", "u"), lambda r: None, Progress())


DATA = bytes(range(48, 58)) * 10  # 100 bytes


def _ranged(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """/file: Range bytes=N- answered (206, or 416 past the end); /wrong: 206 from 0;
    /norange: 200 whole."""
    start = headers.get("range", "").removeprefix("bytes=").removesuffix("-")
    if target == "/file" and start.isdigit() and int(start) >= len(DATA):
        return response(416, b"range not satisfiable\n", Content_Range=f"bytes */{len(DATA)}")
    if target in ("/file", "/wrong") and start.isdigit():
        n = int(start) if target == "/file" else 0
        return response(206, DATA[n:], Content_Range=f"bytes {n}-99/100")
    return response(200, DATA)


def test_continue_at_as_curl(tmp_path: Path) -> None:
    # each outcome as curl 7.88.1 had it against the same answers (ours: unrecognized -C)
    part = tmp_path / "part"
    w = ("-w", "%{http_code} %{size_download} %{exitcode}")

    def go(*argv: str) -> tuple[int, bytes, bytes]:
        code, _, raw, _, _ = run("-s", *w, *argv, handler=_ranged)
        return code, raw, part.read_bytes() if part.exists() else b""

    part.write_bytes(DATA[:10])
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/file") == (0, b"206 90 0", DATA)
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/file") == (0, b"416 22 0", DATA)
    part.write_bytes(DATA[:10])  # a 200, or a 206 from elsewhere: 33, the file kept
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/norange") == (
        1, b"200 0 33", DATA[:10],
    )  # fmt: skip
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/wrong") == (
        1, b"206 0 33", DATA[:10],
    )  # fmt: skip
    part.write_bytes(DATA)  # the whole document already there: no error, nothing read
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/norange") == (0, b"200 0 0", DATA)
    part.unlink()  # no file: from 0, no Range
    assert go("-C", "-", "-o", str(part), "http://192.0.2.80/file") == (0, b"200 100 0", DATA)
    part.unlink()
    assert go("-C", "95", "-o", "-", "http://192.0.2.80/file") == (0, b"56789206 5 0", b"")


def test_continue_at_arguments() -> None:
    assert (
        run_http_experiment._resume_offset(None, "f") == 0
        and run_http_experiment._resume_offset("7", None) == 7
    )
    assert (
        run_http_experiment._resume_offset("-", None)
        == 0
        == run_http_experiment._resume_offset("-", "-")
    )
    with pytest.raises(SystemExit):
        parse("-C", "x", "u")
    # -C with -d: built (session 17, curl17b; test_run_http_resume_upload.py)
    with pytest.raises(RunError, match="-C/--continue-at with -T -"):
        run_http.experiment(parse("-C", "5", "-T", "-", "u"), lambda r: None, Progress())


def test_max_filesize_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1 --max-filesize 50 on a 100-byte body: 63 after the headers (-i has
    # them), the status kept, no file; 1k and 100: fetched; a bad unit: curl's words
    out = tmp_path / "o"
    code, _, raw, _, records = run("-s", "-i", "--max-filesize", "50", "-w", "[%{http_code} "
                                   "%{size_download} %{exitcode}]", "-o", "-", "-o", str(out),
                                   "http://192.0.2.80/", "http://192.0.2.80/",
                                   handler=_ranged)  # fmt: skip
    assert code == 1 and [r["exitcode"] for r in records] == [63, 63]
    # (curl stops before the block's last line end: -i, -D and size_header lack it)
    assert raw.startswith(b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n[200 0 63]")
    assert records[0]["error"].startswith("Maximum file size exceeded (100 bytes from ")
    assert out.read_bytes() == b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n"  # -i's
    for size in ("1k", "100"):
        code, _, raw, _, _ = run("--max-filesize", size, "-o", "-", "-w", "", "http://192.0.2.80/",
                                 handler=_ranged)  # fmt: skip
        assert code == 0 and raw == DATA
    assert parse("--max-filesize", "2G", "u").max_filesize == 2 << 30
    with pytest.raises(SystemExit):
        parse("--max-filesize", "1x", "u")


def test_resolve_as_curl() -> None:
    entries = run_http_opts.resolve_entries(
        ["A.test:80:192.0.2.80", "+b.test:443:[2001:db8::1],192.0.2.9", "c.test:80:192.0.2.1",
         "-c.test:80", "*:8080:192.0.2.7", "a.test:80:192.0.2.81"]
    )  # fmt: skip
    assert entries == (
        ("a.test", 80, "192.0.2.81"),
        ("*", 8080, "192.0.2.7"),
        ("b.test", 443, "2001:db8::1,192.0.2.9"),
    )  # fmt: skip (each: s26)
    for bad in ("a.test:80", "a.test:x:1.2.3.4", "a.test:80:host.test", "a:70000:1.2.3.4"):
        with pytest.raises(RunError, match="--resolve"):
            run_http_opts.resolve_entries([bad])
    # the endpoint connects to the address given, no DNS; Host stays the name
    code, _, raw, _, records = run("--resolve", "a.test:80:192.0.2.80", "-o", "-",
                                   "http://a.test/p", handler=_seen)  # fmt: skip
    assert code == 0 and raw.startswith(b"host: a.test\n") and records[0]["status"] == 200


def test_location_trusted_as_curl() -> None:
    # ours had no --location-trusted: the credentials never left the first host
    def hop(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        return response(302, b"", Location="http://192.0.2.80:8080/there")

    rig_peers = {("192.0.2.80", 80): hop, ("192.0.2.80", 8080): _seen}
    for trusted in ([], ["--location-trusted"]):
        code, _, raw, _, _ = run("-u", "a:b", "-H", "Cookie: c=1", "-L", *trusted, "-o", "-",
                                 "http://192.0.2.80/", handler=hop, peers=rig_peers)  # fmt: skip
        lines = raw.decode().splitlines()
        assert code == 0 and lines[-1] == "GET /there"
        assert ("authorization: Basic YTpi" in lines) == ("cookie: c=1" in lines) == bool(trusted)


def test_expect100_timeout_is_the_wait_before_the_body(tmp_path: Path) -> None:
    # a server that sends no 100 Continue: the body goes after the wait (curl's
    # --expect100-timeout, default 1 s; ours had the 1 s fixed); the scripted clock
    f = tmp_path / "up"
    f.write_bytes(b"hi\n")
    took = []
    for wait in ([], ["--expect100-timeout", "0.25"], ["--expect100-timeout", "2"]):
        code, _, raw, _, _ = run("-T", str(f), *wait, "-w", "|%{time_total}", "-o", "-",
                                 "http://192.0.2.80/up", handler=_seen)  # fmt: skip
        assert code == 0 and b"expect: 100-continue\n" in raw and b"hi\n|" in raw
        took.append(float(raw.rsplit(b"|", 1)[1]))
    assert 1.0 <= took[0] < 1.2 and 0.25 <= took[1] < 0.45 and 2.0 <= took[2] < 2.2


def test_client_certificate_arguments(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    cert, key = str(pki["client"]), str(pki["client_key"])
    assert run_http_experiment._client_cert(parse("--cert", cert, "--key", key, "u")) == (
        cert,
        key,
        None,
    )
    assert run_http_experiment._client_cert(parse("u")) is None
    for argv, words in (
        (["-E", cert], f"unable to set private key file '{cert}'"),  # no key in it
        (["-E", cert, "--key", str(pki["key"])], "unable to set private key file"),  # another
        (["-E", str(tmp_path / "nope")], "could not load PEM client certificate .*No such"),
        (["--key", key], "--key without --cert"),
    ):
        with pytest.raises(RunError, match=words):
            run_http_experiment._client_cert(parse(*argv, "u"))


T = 1709528767  # Mon, 04 Mar 2024 05:06:07 GMT


def test_time_cond_arguments_as_curl(tmp_path: Path) -> None:
    warned: list[str] = []
    tc = run_http_opts.time_cond
    assert tc("Mon, 04 Mar 2024 05:06:07 GMT", warned.append) == ("If-Modified-Since", T)
    assert tc("-Mon, 04 Mar 2024 05:06:07 GMT", warned.append) == ("If-Unmodified-Since", T)
    assert tc("=20240304", warned.append) == ("Last-Modified", T - 5 * 3600 - 367)
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.utime(f, (T, T))
    assert tc(f"+{f}", warned.append) == ("If-Modified-Since", T) and warned == []
    assert tc("garbage", warned.append) is None
    assert warned == [
        "Illegal date format for -z, --time-cond (and not a file name). "
        "Disabling time condition. See curl_getdate(3) for valid date syntax."
    ]


def _dated(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """A 200 with Last-Modified T + the number after /, and the condition it was sent."""
    seen = [f"{k}: {v}" for k, v in headers.items() if k.endswith(("since", "modified"))]
    from email.utils import formatdate

    when = formatdate(T + int(target.strip("/") or 0), usegmt=True)
    return response(200, ("\n".join(seen) + "\n").encode(), Last_Modified=when)


def test_time_cond_as_curl() -> None:
    # curl 7.88.1 against the same answers: the field after the Cookie; a 2xx whose
    # Last-Modified fails the condition is its simulated 304, the body not written
    w = ("-w", "[%{http_code} %{size_download}]", "-o", "-")
    z = "Mon, 04 Mar 2024 05:06:07 GMT"
    for argv, out in (
        (["-z", z, "http://192.0.2.80/0"], b"[304 0]"),
        (["-z", z, "http://192.0.2.80/1"],
         b"if-modified-since: Mon, 04 Mar 2024 05:06:07 GMT\n[200 49]"),
        (["-z", f"-{z}", "http://192.0.2.80/0"], b"[304 0]"),
        (["-z", f"-{z}", "http://192.0.2.80/-1"],
         b"if-unmodified-since: Mon, 04 Mar 2024 05:06:07 GMT\n[200 51]"),
        (["-z", z, "-r", "0-", "http://192.0.2.80/0"],  # a range: no check, as curl
         b"if-modified-since: Mon, 04 Mar 2024 05:06:07 GMT\n[200 49]"),
    ):  # fmt: skip
        code, _, raw, _, _ = run(*w, *argv, handler=_dated)
        assert (code, raw) == (0, out), argv
    _, _, raw, _, _ = run("-b", "c=d", "-H", "X-A: 1", "-z", z, "-o", "-", "http://192.0.2.80/1",
                          handler=_seen)  # fmt: skip
    assert raw.decode().splitlines()[3:6] == [
        "cookie: c=d", "if-modified-since: Mon, 04 Mar 2024 05:06:07 GMT", "x-a: 1",
    ]  # fmt: skip
