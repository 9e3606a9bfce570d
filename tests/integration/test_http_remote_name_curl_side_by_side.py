"""`pktlab run http -O`, `--remote-name-all` and `--output-dir` beside curl 7.88 on one
loopback server: the same requests, the same files with the same names and bytes (query
stripped, percent-encoding kept, -o and -O paired with URLs in order, URL globs,
--create-dirs), an existing file overwritten; and where we differ on bad input: curl
fetches the URLs before a URL without a file name (or into a missing --output-dir) and
exits 23, ours refuses the command line with one line and 2, before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import pytestmark  # noqa: F401
from test_http_glob_curl_side_by_side import Logged, side_by_side


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with serve_http(Logged) as port:
        yield f"http://127.0.0.1:{port}"


W = "%{http_code} %{url} %{filename_effective} %{exitcode}\\n"


@pytest.mark.parametrize(
    "args",
    [
        ["-O", "{URL}/a.txt?x=1", "-O", "{URL}/a%2F..%2Fb", "-O", "{URL}/x#frag"],
        ["-O", "{URL}/p/..%2f..%2fetc"],
        ["-O", "-o", "two", "{URL}/one", "{URL}/two2"],
        ["-O", "{URL}/b", "-o", "x", "-O", "{URL}/c", "{URL}/d"],
        ["{URL}/u1", "--remote-name-all", "{URL}/u2", "{URL}/u3"],
        ["--remote-name-all", "{URL}/u1", "-o", "x", "{URL}/u2"],
        ["--remote-name-all", "{URL}/u1", "--no-remote-name-all", "{URL}/u2"],
        ["-O", "--no-remote-name", "{URL}/u1", "{URL}/u2"],
        ["--remote-name-all", "--no-remote-name", "{URL}/u1", "{URL}/u2"],
        ["-O", "-O", "{URL}/f[1-2].txt", "{URL}/{{a,b}}", "{URL}/c"],
        ["--output-dir", "d/e", "--create-dirs", "-O", "-o", "f/g", "{URL}/f[1-2]", "{URL}/x"],
        ["--output-dir", "d/", "--create-dirs", "--remote-name-all", "{URL}/q/r", "{URL}/s"],
        ["--output-dir", "", "-O", "{URL}/t"],
        ["-i", "-O", "{URL}/hdr"],  # the headers too, into the file
    ],
)
def test_remote_names_as_curl(http: str, tmp_path: Path, args: list[str]) -> None:
    args = [a.format(URL=http) for a in args]
    (curl, curl_log, curl_files), (ours, our_log, our_files) = side_by_side(
        tmp_path, "-s", "-w", W, *args
    )
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert our_log == curl_log
    assert our_files == curl_files and curl_files
    assert ours.stdout == curl.stdout  # write-outs (%{filename_effective}) and stdout bodies


def test_an_existing_file_is_overwritten_as_curl(http: str, tmp_path: Path) -> None:
    (curl, _, _), (ours, _, _) = side_by_side(
        tmp_path, "-s", "-O", f"{http}/in-a", inputs=("in-a",)
    )
    assert curl.returncode == ours.returncode == 0, ours.stderr
    curl_bytes = (tmp_path / "curl/in-a").read_bytes()
    assert b'"/in-a"' in curl_bytes and (tmp_path / "ours/in-a").read_bytes() == curl_bytes


@pytest.mark.parametrize(
    ("args", "curl_fetched", "curl_says", "ours_says"),
    [
        (["-O", "{URL}/"], [], "Remote file name has no length!", "has no file name"),
        (["-O", "{URL}"], [], "Remote file name has no length!", "has no file name"),
        (
            ["-O", "{URL}/ok", "-O", "{URL}/d/", "{URL}/never"],
            ["GET /ok"],
            "Remote file name has no length!",
            "-O/--remote-name: {URL}/d/ has no file name",
        ),
        (
            ["--output-dir", "missing", "-O", "{URL}/a"],
            ["GET /a"],
            "Failed to open the file missing/a: No such file or directory",
            "--output-dir missing: no such directory",
        ),
    ],
)
def test_bad_remote_names_differ_from_curl_as_documented(
    http: str,
    tmp_path: Path,
    args: list[str],
    curl_fetched: list[str],
    curl_says: str,
    ours_says: str,
) -> None:
    args = [a.format(URL=http) for a in args]
    (curl, curl_log, _), (ours, our_log, our_files) = side_by_side(tmp_path, *args)
    assert curl.returncode == 23 and ours.returncode == 2
    assert curl_log == curl_fetched and our_log == [] and our_files == {}
    assert curl_says in curl.stderr.decode()
    lines = ours.stderr.decode().splitlines()
    assert len(lines) == 1 and ours_says.format(URL=http) in lines[0], lines
