"""curl 7.88.1's --etag-save, --etag-compare and -R/--remote-time in `pktlab run http`
(session 27, http27): each pinned from what curl did against a raw loopback server
(tests/integration/test_http_curl27.py compares the two side by side). Before, ours
did not know these options (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_http_redirects import response
from test_run_http_curl import run

from packetlab.cli.run import RunError
from packetlab.cli.run_http_etag import EtagSave, RemoteTime, check, compare_field

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"  # 1445412480


def _tagged(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """/r: a 302 with its own ETag to /e; /e: ETag "abc" and a Last-Modified; /none:
    neither; the If-None-Match fields that came are the body."""
    if target == "/r":
        return response(302, b"", ETag='"red"', Location="/e")
    came = "".join(f"{v}\n" for k, v in headers.items() if k.lower() == "if-none-match")
    if target == "/none":
        return response(200, came.encode())
    return response(200, came.encode(), ETag='"abc"', **{"Last-Modified": LAST_MODIFIED})


def test_etag_save_writes_each_etag_line_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1 --etag-save: every ETag of the transfer (a redirect's too), then the
    # next URL's replaces the file; ours: "unrecognized arguments" (2)
    saved = tmp_path / "et"
    code, _, _, err, _ = run("-s", "-L", "--etag-save", str(saved), "-w", "",
                             "http://192.0.2.80/r", handler=_tagged)  # fmt: skip
    assert code == 0, err
    assert saved.read_bytes() == b'"red"\n"abc"\n'
    _, _, _, _, _ = run("-s", "--etag-save", str(saved), "-w", "", "http://192.0.2.80/e",
                        "http://192.0.2.80/none", handler=_tagged)  # fmt: skip
    assert saved.read_bytes() == b""  # the last URL's: none
    _, _, out, _, _ = run("-s", "--etag-save", "-", "-o", os.devnull, "-w", "",
                          "http://192.0.2.80/e", handler=_tagged)  # fmt: skip
    assert out == b'"abc"\n'


def test_etag_save_line_as_curls_header_callback(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with open(out, "wb") as f:
        save = EtagSave(str(out), f)
    save.headers(b'HTTP/1.1 200 OK\r\nETag:   W/"x y"  \r\netag:\r\nETAG: \t\r\nX: 1\r\n\r\n')
    save.headers(b'etag: "no-newline"')  # (a line curl is given whole: none such)
    save.close()
    assert out.read_bytes() == b'W/"x y"\n'


def test_etag_compare_sends_if_none_match_as_curl(tmp_path: Path) -> None:
    tag = tmp_path / "tag"
    tag.write_bytes(b'"abc"\n')
    code, _, raw, err, _ = run("-v", "--etag-compare", str(tag), "-o", "-", "-w", "",
                               "http://192.0.2.80/e", "http://192.0.2.80/none",
                               handler=_tagged)  # fmt: skip
    assert code == 0, err
    assert raw == b'"abc"\n"abc"\n'  # (the fake's fields are a dict: one of each name)
    # curl 7.88.1 adds each URL's field to its -H list: the second sends it twice
    sent = [line for line in err.splitlines() if line.startswith("> If-None-Match:")]
    assert sent == ['> If-None-Match: "abc"'] * 3
    # missing, with --etag-save naming it: `If-None-Match: ""`, then the file saved
    fresh = tmp_path / "fresh"
    code, _, raw, _, _ = run("-s", "--etag-compare", str(fresh), "--etag-save", str(fresh),
                             "-o", "-", "-w", "", "http://192.0.2.80/e",
                             handler=_tagged)  # fmt: skip
    assert (code, raw, fresh.read_bytes()) == (0, b'""\n', b'"abc"\n')


def test_etag_compare_file_read_as_curls_file2string(tmp_path: Path) -> None:
    f = tmp_path / "f"
    for data, field in [
        (b'"abc"\n"x"\n', 'If-None-Match: "abc""x"'),  # lines joined
        (b"", 'If-None-Match: ""'),
        (b'  "sp" \r\n', 'If-None-Match:   "sp" '),  # blanks kept, CR LF cut
        (b'W/"q"', 'If-None-Match: W/"q"'),
        (b"\n", "If-None-Match: "),  # (curl's field removal: nothing sent)
        (b"a\rb\n", "If-None-Match: a"),  # cut at the CR
        (b"a\0b\nc\n", "If-None-Match: ac"),  # and at a NUL (ours sent it: 56)
        (b"x" * 300 + b"\ry\n", "If-None-Match: " + "x" * 300),
        (b"a\r" + b"b" * 253 + b"cd\n", "If-None-Match: acd"),  # fgets' 255 bytes a piece
    ]:
        f.write_bytes(data)
        assert compare_field(str(f)) == field, data
    assert compare_field(str(tmp_path / "missing")) == 'If-None-Match: ""'


def test_etag_files_that_cannot_be_used_are_refused(tmp_path: Path) -> None:
    # curl: `Failed to open FILE` (26) and `Failed creating file for saving etags`
    # (each transfer skipped, 26): nothing sent, one line here
    with pytest.raises(RunError, match="Failed to open"):
        check(str(tmp_path / "missing"), None)
    check(str(tmp_path / "missing"), str(tmp_path / "missing"))  # --etag-save makes it
    with pytest.raises(RunError, match="Failed creating file for saving etags"):
        check(None, str(tmp_path / "no" / "dir"))
    with pytest.raises(RunError, match="curl: 26, no transfer"):
        run("--etag-compare", str(tmp_path / "missing"), "http://192.0.2.80/e", handler=_tagged)


def test_remote_time_sets_the_files_time_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1 -R: the -o file's access and change times are the Last-Modified's
    out = tmp_path / "o"
    code, _, _, err, _ = run("-s", "-R", "-o", str(out), "-w", "", "http://192.0.2.80/e",
                             handler=_tagged)  # fmt: skip
    assert code == 0, err
    assert (os.stat(out).st_mtime, os.stat(out).st_atime) == (1445412480, 1445412480)
    # -I: the headers are the file, its time set too (as curl's)
    head = tmp_path / "h"
    run("-s", "-R", "-I", "-o", str(head), "-w", "", "http://192.0.2.80/e", handler=_tagged)
    assert os.stat(head).st_mtime == 1445412480
    # none: the file's own time
    plain = tmp_path / "p"
    run("-s", "-R", "-o", str(plain), "-w", "", "http://192.0.2.80/none", handler=_tagged)
    assert os.stat(plain).st_mtime > 1445412480


def test_remote_time_takes_the_last_date_of_the_transfer() -> None:
    stamp = RemoteTime()
    stamp.headers(b"HTTP/1.1 302 Found\r\nLast-Modified: " + LAST_MODIFIED.encode() + b"\r\n\r\n")
    stamp.headers(b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n")
    assert stamp.when == 1445412480  # a redirect's, as libcurl's one filetime
    stamp.headers(b"HTTP/1.1 200 OK\r\nlast-modified: garbage\r\n\r\n")
    assert stamp.when is None
    assert stamp.apply("/nonexistent") is None


def _not_modified(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    if target == "/304":
        return response(304, b"", ETag='"abc"')
    return response(200, b"new", **{"Last-Modified": LAST_MODIFIED})  # (-z's date after it)


def test_a_304_leaves_the_output_file_as_it_was(tmp_path: Path) -> None:
    # curl 7.88.1 opens -o's file at the first body byte, and makes an empty one at the
    # end of an empty body but never for a 304 (nor a -z condition unmet, its simulated
    # 304): `-z page -o page URL` keeps the page. Ours emptied it.
    page = tmp_path / "page"
    for argv in (["http://192.0.2.80/304"], ["-z", "20200101", "http://192.0.2.80/lm"]):
        page.write_bytes(b"kept")
        code, _, out, err, _ = run("-s", "-R", "-o", str(page), "-w", "%{http_code}", *argv,
                                   handler=_not_modified)  # fmt: skip
        assert (code, out) == (0, b"304"), err
        assert page.read_bytes() == b"kept"
        assert os.stat(page).st_mtime > 1445412480  # (-R: no file written, no time set)
    new = tmp_path / "new"  # no file before: none made
    run("-s", "-o", str(new), "-w", "", "http://192.0.2.80/304", handler=_not_modified)
    assert not new.exists()


def test_netrc_options_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1's --netrc-file, --netrc (-n: $HOME/.netrc), --netrc-optional; ours:
    # "unrecognized arguments" (2)
    from test_run_http_options16 import _seen

    nf = tmp_path / "nf"
    nf.write_text("machine 192.0.2.80 login a password p\n")
    code, _, raw, err, _ = run("--netrc-file", str(nf), "-o", "-", "-w", "",
                               "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert code == 0, err
    assert b"authorization: Basic YTpw\n" in raw  # a:p
    # -u wins; --netrc-optional: a URL's password wins
    _, _, raw, _, _ = run("--netrc-file", str(nf), "-u", "x:y", "-o", "-", "-w", "",
                          "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert b"authorization: Basic eDp5\n" in raw
    _, _, raw, _, _ = run("--netrc-optional", "--netrc-file", str(nf), "-o", "-", "-w", "",
                          "http://a:pw@192.0.2.80/p", handler=_seen)  # fmt: skip
    assert b"authorization: Basic YTpwdw==\n" in raw  # a:pw
    nf.write_text('machine 192.0.2.80 login "a\n')  # curl: (26) .netrc parser error
    code, _, out, _, records = run("--netrc-file", str(nf), "-w", "%{http_code} %{errormsg}",
                                   "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert (code, out) == (1, b"000 .netrc parser error")
    assert records[0]["exitcode"] == 26


def test_netrc_without_the_host_said_in_verbose_as_curl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_run_http_options16 import _seen

    missing = str(tmp_path / "missing")
    code, _, _, err, _ = run("-v", "--netrc-file", missing, "-o", os.devnull, "-w", "",
                             "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert code == 0, err
    assert f"* Couldn't find host 192.0.2.80 in the {missing} file; using defaults" in err
    # --netrc's own file: curl 7.88.1 names it "(nil)"
    monkeypatch.setenv("HOME", str(tmp_path))
    _, _, _, err, _ = run("-v", "-n", "-o", os.devnull, "-w", "", "http://192.0.2.80/p",
                          handler=_seen)  # fmt: skip
    assert "* Couldn't find host 192.0.2.80 in the (nil) file; using defaults" in err


def _takes(option: str) -> bool:
    return option in {"-A", "--user-agent", "-e", "--referer", "-K", "--url", "-o"}


def test_config_lines_curl_passes_over() -> None:
    # curl 7.88.1's tool_parsecfg.c: a line whose first character (after blanks) is #,
    # / or * is no option; ours read `*x` and `/x` as options --*x, --/x (exit 2)
    from packetlab.cli.run_http_words import config_words

    text = "*star line\n  /slash line\n# hash\n-A a\n"
    assert config_words(text, _takes) == ["-A", "a"]


def test_config_unquoted_whitespace_warned_as_curl(capsys: pytest.CaptureFixture[str]) -> None:
    # curl 7.88.1: `FILE:LINE: warning: 'OPTION' uses unquoted whitespace in the line
    # that may cause side-effects!` (the option as written), none after a -s
    from packetlab.cli.run_http_words import expand

    files = {"cfgF": '# c\n\nuser-agent a b\n--referer r s\n  -e x y # z\n-e "q r" s\n'}
    words = expand(["-o", "o", "-K", "cfgF"], _takes, files.__getitem__)
    assert words == ["-o", "o", "--user-agent", "a", "--referer", "r", "-e", "x", "-e", "q r"]
    assert capsys.readouterr().err == (
        "Warning: cfgF:3: warning: 'user-agent' uses unquoted whitespace in the line \n"
        "Warning: that may cause side-effects!\n"
        "Warning: cfgF:4: warning: '--referer' uses unquoted whitespace in the line \n"
        "Warning: that may cause side-effects!\n"
        "Warning: cfgF:5: warning: '-e' uses unquoted whitespace in the line that may \n"
        "Warning: cause side-effects!\n"
    )
    for before in (["-s"], ["-fsS"], ["--silent"]):
        expand([*before, "-K", "cfgF"], _takes, files.__getitem__)
        assert capsys.readouterr().err == "", before
    files["g"] = "silent\nuser-agent a b\n"  # (-s in the file first: muted too)
    expand(["-K", "g"], _takes, files.__getitem__)
    assert capsys.readouterr().err == ""
    expand(["-A", "-s", "-K", "cfgF"], _takes, files.__getitem__)  # (-s a value: not -s)
    assert capsys.readouterr().err.count("Warning: cfgF:") == 3


def test_etag_compare_with_parallel_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1 -Z makes its transfers (2 x --parallel-max at first, then one as each
    # ends) before they send, each adding its If-None-Match to the one -H list: two URLs
    # send two fields each (ours: 1 and 2), -Z --parallel-max 1 with three: 2, 3, 3
    tag = tmp_path / "tag"
    tag.write_bytes(b'"abc"\n')
    for extra, urls, want in (([], 2, 4), (["--parallel-max", "1"], 3, 8)):
        code, _, _, err, _ = run("-v", "-Z", *extra, "--etag-compare", str(tag), "-w", "",
                                 *["-o", os.devnull] * urls,
                                 *[f"http://192.0.2.80/u{n}" for n in range(urls)],
                                 handler=_tagged)  # fmt: skip
        assert code == 0, err
        assert err.count('> If-None-Match: "abc"') == want, extra


def test_header_file_cut_as_curls_strtok(tmp_path: Path) -> None:
    # curl 7.88.1 -H @FILE: strtok(text, "\r\n") over the file as a C string: a bare CR
    # ends a line too, and the file ends at its first NUL. Ours failed the URL on both
    # (56: `Illegal header value`)
    from packetlab.cli.run_http_body import _headers

    f = tmp_path / "h"
    f.write_bytes(b"X-A: a\rX-B: b\r\n\rX-C;\n")
    assert [(k, str(v)) for k, v in _headers([f"@{f}"])] == [
        ("X-A", "a"), ("X-B", "b"), ("X-C", str(_headers(["X-C;"])[0][1]))]  # fmt: skip
    f.write_bytes(b"X-A: a\0b\nX-B: 1\n")
    assert [(k, str(v)) for k, v in _headers([f"@{f}"])] == [("X-A", "a")]
