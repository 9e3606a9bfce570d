"""`pktlab run http` globs its URLs as curl 7.88 does (`{a,b}`, `[1-3]`, `[01-10:2]`):
the transfers in curl's order, each with its -o file (`#1`, `#2` filled as curl), a -T's
files to every URL of the glob, -Z over every URL, --create-dirs, -g as written, and the
errors (curl's words and column, the cap) as one line before anything is sent. Each
expected order and file name checked against /usr/bin/curl 7.88.1 (see also the side by
side test in tests/integration)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_run_http_curl import parse, run

from packetlab.cli import run_http, run_http_files
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress

U = "http://192.0.2.80"


def urls(records: list[dict[str, Any]]) -> list[str]:
    return [r["url"] for r in records if r["type"] == "http"]


def test_a_url_glob_is_a_transfer_for_each_url_in_curls_order(tmp_path: Path) -> None:
    out = tmp_path / "o_#1_#2.txt"
    code, _, raw, _, records = run("-o", str(out), "-w", "%{url} %{filename_effective}\\n",
                                   f"{U}/{{a,b}}/[1-2]", f"{U}/x")  # fmt: skip
    assert code == 0 and urls(records) == [f"{U}/a/1", f"{U}/a/2", f"{U}/b/1", f"{U}/b/2",
                                           f"{U}/x"]  # fmt: skip
    for a, n in (("a", 1), ("a", 2), ("b", 1), ("b", 2)):
        name = tmp_path / f"o_{a}_{n}.txt"
        assert json.loads(name.read_bytes())["target"] == f"/{a}/{n}"
        assert f"{U}/{a}/{n} {name}\n".encode() in raw  # %{filename_effective}: filled
    assert sorted(os.listdir(tmp_path)) == ["o_a_1.txt", "o_a_2.txt", "o_b_1.txt", "o_b_2.txt"]
    assert raw.endswith(f"{U}/x \n".encode())  # the URL without -o: its body on stdout


def test_steps_padding_and_letters(tmp_path: Path) -> None:
    code, _, _, _, records = run("--json", f"{U}/[1-100:40]/[a-e:2][08-09]")
    assert code == 0 and urls(records) == [
        f"{U}/{n}/{c}{p}" for n in (1, 41, 81) for c in "ace" for p in ("08", "09")
    ]
    # one -o without #N for a glob: every URL writes it, the last one's body stays (curl)
    same = tmp_path / "same"
    code, _, _, _, records = run("-o", str(same), f"{U}/{{a,b}}")
    assert code == 0 and json.loads(same.read_bytes())["target"] == "/b"
    assert [r.get("output") for r in records if r["type"] == "http"] == [str(same)] * 2


def test_globoff_takes_the_url_as_written(tmp_path: Path) -> None:
    code, _, _, _, records = run("--json", "-g", "-o", str(tmp_path / "o#1"), f"{U}/{{a,b}}")
    assert code == 0 and urls(records) == [f"{U}/{{a,b}}"]
    assert os.listdir(tmp_path) == ["o#1"]  # no glob: #1 as written, as curl -g
    # not -g: an IPv6 literal and [] are no globs (curl's peek_ipv6)
    assert run_http_files.transfers(parse("http://[::1]:8/a[]"), [])[0] == [
        (1, "http://[::1]:8/a[]", None)]  # fmt: skip


def test_upload_files_go_to_every_url_of_the_glob(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    # curl 7.88.1: the -T files the outer loop, the URL glob the inner
    code, _, _, _, records = run("--json", "-T", "{a,b}", f"{U}/{{x,y}}/")
    got = [(r["method"], r["url"]) for r in records if r["type"] == "http"]
    assert code == 0 and got == [("PUT", f"{U}/{u}/{f}") for f in "ab" for u in "xy"]


def test_parallel_fetches_every_url_of_the_glob() -> None:
    code, _, _, _, records = run("--json", "-Z", f"{U}/z/[1-3]", f"{U}/{{p,q}}")
    assert code == 0 and sorted(urls(records)) == sorted(
        [f"{U}/z/1", f"{U}/z/2", f"{U}/z/3", f"{U}/p", f"{U}/q"])  # fmt: skip


def test_create_dirs_makes_the_directories_as_curl(tmp_path: Path) -> None:
    out = tmp_path / "d" / "#1" / "f#2"
    with pytest.raises(RunError, match=r"--output .*/d/x/f1: no such directory"):
        run_http.experiment(parse("-o", str(out), f"{U}/{{x,y}}/[1-2]"), lambda r: None,
                            Progress())  # fmt: skip
    code, _, _, _, _ = run("--create-dirs", "-o", str(out), f"{U}/{{x,y}}/[1-2]")
    assert code == 0
    for d in ("x", "y"):
        assert sorted(os.listdir(tmp_path / "d" / d)) == ["f1", "f2"]
        assert (tmp_path / "d" / d).stat().st_mode & 0o777 == 0o750 & ~_umask()
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match=r"/file is not a directory$"):
        run_http.experiment(parse("--create-dirs", "-o", str(tmp_path / "file/x/f"), f"{U}/"),
                            lambda r: None, Progress())  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("argv", "message"),
    [  # curl 7.88.1: "curl: (3) bad range in URL position 27:" and so on, exit 3
        (
            [f"{U}/[1-"],
            r"^URL 'http://192.0.2.80/\[1-': bad range at position 22 \(curl: 3\); "
            r"-g/--globoff takes \{ \} \[ \] as written$",
        ),
        ([f"{U}/{{a,b"], "unmatched brace at position 19 "),
        ([f"{U}/a}}"], "unmatched close brace/bracket at position 20 "),
        ([f"{U}/[3-1]"], "bad range at position 24 "),
        ([f"{U}/{{}}"], "empty string within braces at position 20 "),
        ([f"{U}/ok", f"{U}/[1-3:0]"], r"URL '.*\[1-3:0\]': bad range at position 26 "),
        (
            [f"{U}/[1-100000]"],
            r"^URL '.*': over 10000 URLs \(each is listed before anything "
            r"is sent; curl has no such limit\)$",
        ),
        ([f"{U}/[1-6000]", f"{U}/[1-6000]"], r"^over 10000 transfers \(URL globs and -T"),
        (["-o", "#1", f"{U}/{{,a}}"], r"^-o/--output '#1': empty for http://192.0.2.80/$"),
    ],
)
def test_bad_url_globs_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


def test_the_time_budget_counts_every_url_of_a_glob() -> None:
    one = run_http.budget(parse(f"{U}/"))
    assert run_http.budget(parse(f"{U}/[1-3]/{{a,b}}")) == 6 * one
    assert run_http.budget(parse("-g", f"{U}/[1-3]/{{a,b}}")) == one
    assert run_http.budget(parse(f"{U}/[3-1]")) == one  # the experiment says why


def test_help_tells_of_url_globs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "never globbed" not in text
    for words in ("-o 'page_#1.html' 'http://10.77.3.2/p/[1-3]'", "--create-dirs",
                  "URLs and -T names as written", "#1, #2... in FILE"):  # fmt: skip
        assert words in text, words
