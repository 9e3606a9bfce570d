"""`pktlab run http -O/--remote-name`, `--remote-name-all` and `--output-dir` as curl
7.88: the file name curl takes from a URL (no query, undecoded, . and .. removed, a URL
ending in / refused), -o and -O paired with the URLs in order, --remote-name-all for the
URLs after it only, DIR/FILE (with --create-dirs), over URL globs. Each expected name and
pairing checked against /usr/bin/curl 7.88.1 (and side by side in tests/integration)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_run_http_curl import parse, run

from packetlab.cli import parse as cli_parse
from packetlab.cli import run_http, run_http_files
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress

U = "http://192.0.2.80"


@pytest.mark.parametrize(
    ("url", "name"),
    [  # curl 7.88.1 -O: the file it wrote (or "": "Remote file name has no length!", 23)
        (f"{U}/a.txt?x=1", "a.txt"),
        (f"{U}/a?b/c", "a"),  # the query is no path, even with a / in it
        (f"{U}?x/y", ""),
        (f"{U}/x#frag", "x"),
        (f"{U}/p\\q", "q"),  # after a \ too
        (f"{U}/a\\..", ".."),  # not a dot segment for curl's parser, then after the \
        (f"{U}/a\\", ""),
        (f"{U}/a%2F..%2Fb", "a%2F..%2Fb"),  # as written: not decoded, no directory
        (f"{U}/a/..%2F..", "..%2F.."),
        (f"{U}/a/%2e%2e", "%2e%2e"),
        (f"{U}/a/b/../c/./d", "d"),  # curl's URL parser removes . and ..
        (f"{U}/a/..", ""),
        (f"{U}/a/.", ""),
        (f"{U}/..", ""),
        (f"{U}/d/", ""),
        (f"{U}/", ""),
        (U, ""),
        ("192.0.2.80:8080/nos", "nos"),  # no scheme
    ],
)
def test_the_remote_name_is_curls(url: str, name: str) -> None:
    assert run_http_files.remote_name(url) == name


def outputs(*argv: str) -> list[str | None]:
    return run_http_files.transfers(cli_parse(["run", "http", *argv]), [])[1]


def test_o_and_O_pair_with_the_urls_in_order_as_curl() -> None:
    assert outputs("-O", "-o", "two", f"{U}/one", f"{U}/two2") == ["one", "two"]
    assert outputs("-o", "first", "-O", f"{U}/one", f"{U}/two2") == ["first", "two2"]
    assert outputs("-O", f"{U}/one", f"{U}/two2") == ["one", None]  # the second: stdout
    assert outputs("-O", f"{U}/b", "-o", "x", "-O", f"{U}/c", f"{U}/d") == ["b", "x", "d"]
    assert outputs("-O", "--no-remote-name", f"{U}/u1", f"{U}/u2") == ["u1", None]
    assert outputs("--remote-name-all", "--no-remote-name", f"{U}/u1", f"{U}/u2") == [None, "u2"]
    # a URL glob: each of its URLs its own name
    assert outputs("-O", f"{U}/f[1-2].txt", f"{U}/{{a,b}}") == ["f1.txt", "f2.txt", None, None]
    assert outputs("-O", "-O", f"{U}/f[1-2].txt", f"{U}/{{a,b}}") == [
        "f1.txt", "f2.txt", "a", "b",
    ]  # fmt: skip


def test_remote_name_all_is_for_the_urls_after_it_as_curl() -> None:
    assert outputs("--remote-name-all", f"{U}/one", f"{U}/two2") == ["one", "two2"]
    assert outputs(f"{U}/u1", "--remote-name-all", f"{U}/u2") == [None, "u2"]
    assert outputs("--remote-name-all", "-o", "x", f"{U}/one", f"{U}/two2") == ["x", "two2"]
    assert outputs("--remote-name-all", f"{U}/u1", "-o", "x", f"{U}/u2") == ["x", "u2"]
    assert outputs("--remote-name-all", "--no-remote-name-all", f"{U}/one") == [None]
    assert outputs("--remote-name-all", f"{U}/a", "--no-remote-name-all", f"{U}/b") == [
        "a", None,
    ]  # fmt: skip


def test_output_dir_as_curl() -> None:
    assert outputs("--output-dir", "d", "-O", f"{U}/b", "-o", "x", f"{U}/c") == ["d/b", "d/x"]
    assert outputs("--output-dir", "d/", "-O", f"{U}/b") == ["d//b"]  # curl's %{filename_effective}
    assert outputs("--output-dir", "d", "-o", "/tmp/abs", f"{U}/b") == ["d//tmp/abs"]
    assert outputs("--output-dir", "d", "-o", "-", f"{U}/b", f"{U}/c") == ["-", None]
    assert outputs("--output-dir", "", "-O", f"{U}/b") == ["b"]  # empty: none, as curl
    assert outputs("--output-dir", "d", "-o", "o#1", f"{U}/[1-2]") == ["d/o1", "d/o2"]


def test_O_writes_the_remote_file_overwriting_as_curl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("old and longer than the new body" * 100)
    code, _, raw, _, records = run("-O", "-w", "%{filename_effective}\\n",
                                   f"{U}/a.txt?x=1", f"{U}/a%2F..%2Fb")  # fmt: skip
    assert code == 0 and sorted(os.listdir(tmp_path)) == ["a.txt"]
    assert json.loads((tmp_path / "a.txt").read_bytes())["target"] == "/a.txt?x=1"
    assert raw.startswith(b"a.txt\n")  # then the second URL's body on stdout
    assert [r.get("output") for r in records if r["type"] == "http"] == ["a.txt", None]
    code, _, _, _, _ = run("--remote-name-all", f"{U}/x", f"{U}/a%2F..%2Fb")
    assert code == 0 and sorted(os.listdir(tmp_path)) == ["a%2F..%2Fb", "a.txt", "x"]
    # -i: the headers go where the body goes, the -O file (before: "add -o FILE")
    code, _, _, _, _ = run("-i", "-O", f"{U}/h")
    assert code == 0 and (tmp_path / "h").read_bytes().startswith(b"HTTP/1.1 200 ")


def test_output_dir_with_create_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _, _, _ = run("--output-dir", "d/e", "--create-dirs", "-O", "-o", "f/g",
                           f"{U}/f[1-2]", f"{U}/x")  # fmt: skip
    assert code == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "d/e/f/g", "d/e/f1", "d/e/f2",
    ]  # fmt: skip
    assert json.loads((tmp_path / "d/e/f/g").read_bytes())["target"] == "/x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-O", f"{U}/"], r"^-O/--remote-name: http://192.0.2.80/ has no file name "),
        (["-O", U], "has no file name"),
        (["-O", "-O", f"{U}/ok", f"{U}/{{a,b/}}"], r"http://192.0.2.80/b/ has no file name"),
        (["--remote-name-all", f"{U}/a/.."], "has no file name"),
        (["-O", f"{U}/a\\.."], r"^--output \.\.: is a directory$"),  # curl: 23
        (["--output-dir", "/nonexistent/d", "-O", f"{U}/a"],
         r"^--output-dir /nonexistent/d: no such directory \(--create-dirs makes it"),
    ],
)  # fmt: skip
def test_bad_remote_names_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


def test_help_tells_of_remote_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    for words in ("-O http://10.77.3.2/data/run1.tar", "--remote-name-all", "--output-dir DIR",
                  "the URL's last path segment"):  # fmt: skip
        assert words in text, words
