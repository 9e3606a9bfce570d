"""curl 7.82's `--json DATA` in `pktlab run http` beside the JSON-lines `--json` flag
(`run_http_json`'s rule), and `-H 'NAME;'` (a field sent empty): the words read, the
bodies and fields sent (pinned from what curl 7.88.1 sent to a capturing server), whole
runs over the scripted endpoint."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_run_http_curl import parse, run
from test_run_http_options16 import _seen

from packetlab.cli import run_http_body
from packetlab.cli.run import RunError
from packetlab.cli.run_http_json import JSON_MARK, bad_json, data_word, is_json, rewrite


@pytest.mark.parametrize("word", ['{"a":1}', "[1,2]", '"text"', "42", "-1.5e3", "true",
                                  "false", "null", " {} ", "@f.json", "@-", "@"])  # fmt: skip
def test_data_words(word: str) -> None:
    assert data_word(word)


@pytest.mark.parametrize("word", ["http://h/", "h/x", "10.0.0.1", "{a,b}", "http://h/{a,b}",
                                  "[1-3]", "-k", "-o", "NaN", "Infinity", "", "-",
                                  "'x'"])  # fmt: skip
def test_other_words(word: str) -> None:
    # no URL is JSON, no curl URL glob either; NaN is Python's, not JSON
    assert not data_word(word)


def test_rewrite_keeps_the_flag_and_marks_curls_data() -> None:
    d = ["--data-binary", JSON_MARK + "{}"]
    assert rewrite(["--json", "http://h/"]) == ["--json", "http://h/"]
    assert rewrite(["http://h/", "--json"]) == ["http://h/", "--json"]  # the last word
    assert rewrite(["--json", "{}", "u"]) == [*d, "u"]
    assert rewrite(["--json={bad", "u"]) == ["--data-binary", JSON_MARK + "{bad", "u"]
    assert rewrite(["--json", "--json", "{}"]) == ["--json", *d]
    assert rewrite(["--json", "-k", "u"]) == ["--json", "-k", "u"]
    assert rewrite(["--", "--json", "{}"]) == ["--", "--json", "{}"]  # operands after --
    assert rewrite(["--json", "{http://a/,http://b/}"])[1] == "{http://a/,http://b/}"


def test_parsed_in_order_with_the_data_options() -> None:
    a = parse("-d", "x=1", "--json", '{"a":1}', "--json", "-1", "http://h/")
    assert a.data == [("data", "x=1"), ("json", '{"a":1}'), ("json", "-1")] and not a.json
    a = parse("--json", "http://h/", "-d", "x")
    assert a.json and a.urls == ["http://h/"] and a.data == [("data", "x")]
    a = parse("--json", "{}", "--json", "http://h/")
    assert a.json and a.data == [("json", "{}")]


def test_bodies_joined_as_curl_7_88(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # each pinned from curl 7.88.1's request body for the same options
    g = tmp_path / "g.json"
    g.write_bytes(b"[1,\r\n2]\n")

    def body(*argv: str) -> bytes | None:
        return run_http_body.request_body(parse(*argv, "u").data)

    assert body("--json", '{"a":1}', "--json", "[2]") == b'{"a":1}[2]'  # no &
    assert body("-d", "x=1", "--json", '{"a":1}') == b'x=1{"a":1}'
    assert body("--json", '{"a":1}', "-d", "x=1") == b'{"a":1}&x=1'
    assert body("--json", f"@{g}", "--json", f"@{g}") == b"[1,\r\n2]\n" * 2  # as is
    assert body("--json", "{}", "-d", f"@{g}") == b"{}&[1,2]"
    assert body("--json", "{}", "--data-urlencode", "a=b") == b"{}&a=b"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"in":1}\n')))
    assert body("--json", "@-") == b'{"in":1}\n'
    # a file that cannot be opened: curl 7.88.1's warning and an empty POST (exit 0,
    # checked with a recording server in session 24; this test held our old refusal)
    assert body("--json", "@nope") == b""


def test_a_word_like_json_that_is_not_is_refused() -> None:
    a = parse("--json", "{bad", "http://h/")
    with pytest.raises(RunError) as e:
        run_http_body.request_body(a.data)
    assert str(e.value) == bad_json("{bad")
    assert "--json={bad sends it as is" in str(e.value) and "\n" not in str(e.value)
    assert is_json('{"a": [1, null]}') and not is_json("{bad")


def test_json_fields_as_curl() -> None:
    j = run_http_body.json_fields
    assert j([("X", "1")]) == [("X", "1"), ("Content-Type", "application/json"),
                               ("Accept", "application/json")]  # fmt: skip
    assert j([("accept", "x")]) == [("accept", "x"), ("Content-Type", "application/json")]
    assert j([("Content-Type", "")]) == [("Content-Type", ""), ("Accept", "application/json")]


def test_whole_run_sends_curls_request() -> None:
    # curl 7.88.1: --json '{}' -H X:1 -b a=b -e r (its own User-Agent given as ours)
    code, _, raw, err, _ = run("--json", "{}", "-H", "X: 1", "-b", "a=b", "-e", "r", "-A", "ua",
                               "-o", "-", "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert code == 0, err
    assert raw.decode().splitlines() == [
        "host: 192.0.2.80", "user-agent: ua", "referer: r", "cookie: a=b", "x: 1",
        "content-type: application/json", "accept: application/json", "content-length: 2",
        "POST /p", "{}",
    ]  # fmt: skip
    # -G: the data is the query, the fields still sent; -H 'Accept;' an empty Accept
    _, _, raw, _, _ = run("--json", "{}", "-G", "-H", "Accept;", "-A", "", "-o", "-",
                          "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert raw.decode().splitlines() == [
        "host: 192.0.2.80", "accept: ", "content-type: application/json", "GET /p?{}",
    ]  # fmt: skip


def test_the_output_flag_still_prints_records() -> None:
    code, out, _, _, _ = run("--json", "http://192.0.2.80/p", "--json", "[1]", handler=_seen)
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and lines[0]["method"] == "POST" and lines[-1]["type"] == "summary"


def test_help_says_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "curl's --json DATA (7.82)" in text and "--json=DATA always curl's DATA" in text


def test_empty_field_as_curl() -> None:
    # curl 7.88.1: -H 'X-E;' sends "X-E:" (ours "X-E: ", h11's form); -H 'X-F; y' and
    # 'X-G:' none
    _, _, raw, _, _ = run("-H", "X-E;", "-H", "X-G:", "-A", "", "-o", "-",
                          "http://192.0.2.80/p", handler=_seen)  # fmt: skip
    assert raw.decode().splitlines() == ["host: 192.0.2.80", "accept: */*", "x-e: ", "GET /p"]
    assert run_http_body._headers(["X-F; y"]) == []  # not sent, as curl (ours: 2 until s26)


def test_no_host_field_as_curl() -> None:
    # curl 7.88.1: -H 'Host:' sends no Host (ours: h11's "Missing mandatory Host: header")
    from packetlab.measure.http_message import _Fields, _request
    from packetlab.measure.http_url import parse_url

    _, head, _ = _request(parse_url("http://h/p"), "GET", None,
                          _Fields([("Accept", "*/*")], [], [("Host", "")]))  # fmt: skip
    assert head == b"GET /p HTTP/1.1\r\nAccept: */*\r\n\r\n"
