"""`pktlab run http` and curl 7.88 side by side on one loopback server for URL globs:
the same requests in the same order (the server's log of each run), the same -o files
with the same bytes (`#1`, `#2` filled, --create-dirs), -T files times a URL glob, -Z
over a glob's URLs, -g, and curl's glob errors (its words and column; ours one line,
exit 2, before anything is sent)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, Handler, pytestmark  # noqa: F401


class Logged(Handler):
    """The side by side test's server, each request line kept in arrival order."""

    log: list[str] = []
    lock = threading.Lock()

    def answer(self) -> None:
        with self.lock:
            self.log.append(f"{self.command} {self.path}")
        super().answer()

    do_GET = do_PUT = do_POST = answer


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with serve_http(Logged) as port:
        yield f"http://127.0.0.1:{port}"


def files(top: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(top)): p.read_bytes()
        for p in sorted(top.rglob("*"))
        if p.is_file() and not p.name.startswith("in-")
    }


def side_by_side(
    tmp_path: Path, *args: str, inputs: tuple[str, ...] = (), curl_only: tuple[str, ...] = ()
) -> tuple[tuple[subprocess.CompletedProcess[bytes], list[str], dict[str, bytes]], ...]:
    """curl then ours with `args`, each in a directory of its own (with the `inputs`
    files, for -T): (process, the requests the server got, the files written)."""
    out = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ours = [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1"]
    for name, cmd in (("curl", ["curl", *curl_only]), ("ours", ours)):
        d = tmp_path / name
        d.mkdir()
        for f in inputs:
            (d / f).parent.mkdir(parents=True, exist_ok=True)  # "d/f": in a directory
            (d / f).write_text(f * 3)
        Logged.log.clear()
        p = subprocess.run([*cmd, *args], capture_output=True, timeout=180, env=env, cwd=d)
        out.append((p, list(Logged.log), files(d)))
    return tuple(out)


W = "%{http_code} %{method} %{url} %{url_effective} %{filename_effective} %{exitcode}\\n"


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "o_#1_#2.txt", "{URL}/{{a,b}}/[1-2]", "{URL}/x"],
        ["-o", "#2-#1", "-o", "same", "{URL}/[a-b]/[08-09]", "{URL}/{{p,q}}"],
        ["-o", "/dev/null", "{URL}/[1-100:40]/[a-e:2]/[001-002]"],
        ["-o", "y#0#3#12#a#", "{URL}/{{a,b}}"],
        ["--create-dirs", "-o", "d/#1/f#2", "{URL}/{{x,y}}/[1-2]"],
        ["-g", "-o", "o#1", "{URL}/{{x,y}}"],
        ["-o", "o_#1", "-T", "in-{{a,b}}", "{URL}/{{x,y}}/"],
        ["-o", "v6_#1", "http://[::1]:{PORT}/[1-2]", "{URL}/a[]"],
    ],
)
def test_url_globs_as_curl(http: str, tmp_path: Path, args: list[str]) -> None:
    port = http.rsplit(":", 1)[1]
    args = [a.format(URL=http, PORT=port) for a in args]
    v6 = ("--connect-to", f"[::1]:{port}:127.0.0.1:{port}")  # ours: every URL's --connect-to
    (curl, curl_log, curl_files), (ours, our_log, our_files) = side_by_side(
        tmp_path, "-s", "-w", W, *args, inputs=("in-a", "in-b"), curl_only=v6
    )
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert our_log == curl_log and (len(curl_log) > 1 or "-g" in args)
    assert our_files == curl_files
    assert ours.stdout == curl.stdout  # the write-outs (and bodies on stdout) in order
    if "--create-dirs" in args:
        assert ((tmp_path / "ours/d/x").stat().st_mode & 0o777) == (
            (tmp_path / "curl/d/x").stat().st_mode & 0o777
        )


def test_parallel_fetches_the_same_urls(http: str, tmp_path: Path) -> None:
    args = ("-s", "-Z", "-o", "z#1", f"{http}/z/[1-5]", f"{http}/{{p,q}}")
    (curl, curl_log, curl_files), (ours, our_log, our_files) = side_by_side(tmp_path, *args)
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert sorted(our_log) == sorted(curl_log) and len(curl_log) == 7
    assert our_files == curl_files and list(curl_files) == [f"z{n}" for n in range(1, 6)]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("{URL}/[1-", "bad range"),
        ("{URL}/{{a,b", "unmatched brace"),
        ("{URL}/a}}", "unmatched close brace/bracket"),
        ("{URL}/[3-1]", "bad range"),
        ("{URL}/[1-3:0]", "bad range"),
        ("{URL}/{{}}", "empty string within braces"),
    ],
)
def test_url_glob_errors_as_curl(http: str, tmp_path: Path, url: str, why: str) -> None:
    url = url.format(URL=http)
    (curl, curl_log, _), (ours, our_log, _) = side_by_side(tmp_path, "-s", url, curl_only=("-S",))
    assert curl.returncode == 3 and ours.returncode == 2
    assert curl_log == our_log == []
    line = curl.stderr.decode().splitlines()[0]  # curl: (3) WHY in URL position N:
    pos = int(line.rsplit(" ", 1)[1].rstrip(":"))
    assert line == f"curl: (3) {why} in URL position {pos}:"
    assert ours.stderr.decode().splitlines() == [
        f"pktlab run http: URL {url!r}: {why} at position {pos} (curl: 3); "
        "-g/--globoff takes { } [ ] as written"
    ]
