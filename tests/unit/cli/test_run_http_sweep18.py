"""curl 7.88 command lines `pktlab run http` refused or sent otherwise before session 18
(`-K`, `--url`, `-q`, `-N`, `-#`, `--ipv4`, `--stderr`, `-H @FILE`, `--http1.0`/`-0`,
`--path-as-is`): the words read (run_http_words), the requests sent over the scripted
endpoint (pinned from what curl 7.88.1 sent to a capturing server), stdout and files."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from test_run_http_curl import parse, run
from test_run_http_options16 import _seen

from packetlab.cli import run_http_body
from packetlab.cli.run import RunError
from packetlab.cli.run_http_words import config_words, expand
from packetlab.measure.http_message import _Fields, _request
from packetlab.measure.http_url import parse_url

VALUED = {"-A", "--user-agent", "-o", "-d", "--data", "-H", "-K", "--config", "--url", "-w"}


def cli(*argv: str) -> Any:
    """`pktlab run http ARGV` as the command reads it (operands after options too)."""
    from packetlab.cli import parse as parse_cli

    return parse_cli(["run", "http", *argv])


def _takes(option: str) -> bool:
    return option in VALUED


def test_config_file_read_as_curl() -> None:
    text = ('# a comment\n\n  url = "http://h/a"\n-A "my \\"agent\\"\\t1"\nsilent\n'
            "user-agent: x y\n--data=a=1\n-o out\n")  # fmt: skip
    assert config_words(text, _takes) == [
        "--url", "http://h/a", "-A", 'my "agent"\t1', "--silent", "--user-agent", "x",
        "--data=a=1", "-o", "out",  # (argparse: --data a=1; curl: unknown, ignored)
    ]  # fmt: skip


def test_words_expanded_in_place() -> None:
    files = {"c": 'url = "http://h/c"\n-K d\n', "d": "-A inner\n"}
    assert expand(["-A", "-K", "http://h/", "-K", "c", "--url", "http://h/u", "-q", "x"],
                  _takes, files.__getitem__) == [
        "-A", "-K", "http://h/", "http://h/c", "-A", "inner", "http://h/u", "x",
    ]  # fmt: skip
    assert expand(["--url=http://h/", "--config=d"], _takes, files.__getitem__) == [
        "http://h/", "-A", "inner"]  # fmt: skip
    assert expand(["--", "-K", "c"], _takes, files.__getitem__) == ["--", "-K", "c"]
    with pytest.raises(RunError, match="over 10 config files"):
        expand(["-K", "e"], _takes, lambda _: "-K e\n")


def test_parsed_with_the_other_options(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text('url = "http://h/c"\n-A "cfgagent"\n--json\n')
    a = cli("-K", str(cfg), "--url", "http://h/u", "-o", "f", "-q", "-N", "-#", "--ipv4")
    assert a.urls == ["http://h/c", "http://h/u"] and a.user_agent == "cfgagent" and a.json
    assert a.family == 4 and a.output == ["f"]
    assert parse("--ipv6", "-0", "u").family == 6 and parse("-0", "u").http_version == "1.0"
    assert parse("--http1.0", "--path-as-is", "u").path_as_is


def test_a_missing_config_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse("-K", "/nonexistent/cfg", "u")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "-K/--config /nonexistent/cfg" in err


def test_header_file_as_curl(tmp_path: Path) -> None:
    # curl 7.88.1 -H @FILE: each line a field, CR dropped, `X;` empty, a line with no
    # field (empty, "bad") not sent
    f = tmp_path / "h"
    f.write_bytes(b"X-A: 1\r\n\nX-B;\nbad\n")
    assert run_http_body._headers([f"@{f}", "X-C: 2"]) == [
        ("X-A", "1"), ("X-B", "\0"), ("X-C", "2")]  # fmt: skip
    with pytest.raises(RunError, match="--header @nope"):
        run_http_body._headers(["@nope"])
    _, _, raw, _, _ = run("-H", f"@{f}", "-A", "", "-o", "-", "http://192.0.2.80/p",
                          handler=_seen)  # fmt: skip
    assert raw.decode().splitlines() == ["host: 192.0.2.80", "accept: */*", "x-a: 1", "x-b: ",
                                         "GET /p"]  # fmt: skip


def test_http1_0_request_line_as_curl() -> None:
    # curl 7.88.1 --http1.0: "GET /a HTTP/1.0", no Expect; a body of unknown length: 25
    from packetlab.measure.upload_body import SourceFile, Upload

    _, head, _ = _request(parse_url("http://h/a"), "GET", None, _Fields([], [], []),
                          version="1.0")  # fmt: skip
    assert head == b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n"
    import h11

    with pytest.raises(h11.LocalProtocolError, match="Chunky upload"):
        _request(parse_url("http://h/a"), "PUT", Upload([SourceFile("-", None)], "PUT"),
                 _Fields([], [], []), version="1.0")  # fmt: skip


def test_http1_0_and_path_as_is_runs() -> None:
    code, _, raw, _, _ = run("-0", "-w", "%{num_connects}\\n", "-o", "-", "-o", "-",
                             "--path-as-is", "http://192.0.2.80/a/../b", "http://192.0.2.80/c",
                             handler=_seen)  # fmt: skip
    assert code == 0
    # --path-as-is: the path as written; HTTP/1.0: no connection kept (curl's)
    assert "GET /a/../b\n" in raw.decode() and raw.decode().count("\n1\n") == 2
    _, _, raw, _, _ = run("-o", "-", "http://192.0.2.80/a/../b", handler=_seen)
    assert "GET /b\n" in raw.decode()


def test_stderr_to_a_file(tmp_path: Path) -> None:
    # --stderr FILE: the warnings and error lines there (made empty first), - stdout
    from packetlab.cli.run_http_experiment import _redirect_stderr

    e = tmp_path / "e.txt"
    e.write_text("old")
    a = parse("--stderr", str(e), "u")
    a._stderr = io.StringIO()
    _redirect_stderr(a)
    assert a._stderr.name == str(e) and e.read_text() == ""
    a._stderr.close()
    a = parse("--stderr", "-", "u")
    a._stderr = io.StringIO()
    _redirect_stderr(a)
    assert a._stderr is sys.stdout
    with pytest.raises(RunError, match="--stderr /nonexistent/e"):
        _redirect_stderr(parse("--stderr", "/nonexistent/e", "u"))


def test_help_documents_the_new_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in ("-K FILE, --config FILE", "--url URL", "-q, --disable", "-N, --no-buffer",
                   "-#, --progress-bar", "--stderr FILE", "--path-as-is", "-0, --http1.0",
                   "-4, --ipv4"):  # fmt: skip
        assert option in text


def test_stdin_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('-A "from stdin"\n'))
    assert parse("-K", "-", "u").user_agent == "from stdin"


def test_fail_early_as_curl() -> None:
    # curl 7.88.1 --fail-early: no URL after the first that failed (its -w printed)
    w = "%{url} %{exitcode}\\n"
    for parallel in ([], ["-Z", "--parallel-max", "1"]):
        code, _, raw, _, records = run(*parallel, "--fail-early", "-s", "-w", w, "-o",
                                       "/dev/null", "http://192.0.2.9/", "http://192.0.2.80/b",
                                       handler=_seen)  # fmt: skip
        assert code == 1 and raw.decode().splitlines() == ["http://192.0.2.9/ 7"], records
    code, _, raw, _, _ = run("-s", "-w", w, "-o", "/dev/null", "http://192.0.2.9/",
                             "http://192.0.2.80/b", handler=_seen)  # fmt: skip
    lines = [x for x in raw.decode().splitlines() if x.startswith("http://")]
    assert lines == ["http://192.0.2.9/ 7", "http://192.0.2.80/b 0"]  # without it: both


def test_options_without_effect_are_taken() -> None:
    a = parse("--basic", "--no-keepalive", "--tcp-nodelay", "-N", "-#", "-q", "u")
    assert a.no_keepalive and a.tcp_nodelay and a.no_buffer and a.progress_bar
    assert a.auth_schemes == ["basic"]  # (session 25: --digest --basic is either, as curl)


def test_json_in_a_config_file() -> None:
    # curl's config `json = "{...}"` is its --json DATA; `json` alone: our output flag
    text = 'json = "{\\"a\\": 1}"\njson\n'
    assert config_words(text, _takes) == ['--json={"a": 1}', "--json"]
