"""`pktlab run http -J/--remote-header-name`, `--no-clobber` and `--clobber` beside curl
7.88 on one loopback server whose answers carry the Content-Disposition headers asked
for: the same requests, the same files with the same names and bytes (curl's parse of
the header, a redirect's header, a URL without a name, --output-dir, NAME.1 ...
NAME.99), the same write-outs (%{filename_effective}, %{http_code}, %{exitcode}); where
a file is refused, curl's warning words in our error line and its 23 in %{exitcode}
(curl exits with the last URL's code, ours 1 when one failed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import pytestmark  # noqa: F401
from test_http_glob_curl_side_by_side import Logged, side_by_side


class Disposition(Logged):
    """Any path: ?cd=VALUE (each a Content-Disposition header, sent as latin-1 bytes),
    code=N and loc=WHERE (a redirect), empty=1 (no body); the body names the request."""

    def answer(self) -> None:
        with self.lock:
            self.log.append(f"{self.command} {self.path}")
        q = parse_qs(urlsplit(self.path).query, keep_blank_values=True, encoding="latin-1")
        body = b"" if "empty" in q else f"body of {self.path}\n".encode()
        self.send_response(int(q.get("code", ["200"])[0]))
        for value in q.get("cd", []):
            self.send_header("Content-Disposition", value)
        for where in q.get("loc", []):
            self.send_header("Location", where)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = answer


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with serve_http(Disposition) as port:
        yield f"http://127.0.0.1:{port}"


W = "%{http_code} %{url} [%{filename_effective}] %{exitcode}\\n"
CD = "?cd=attachment;%20filename="
NINETY_NINE = ("f", *(f"f.{n}" for n in range(1, 99)))


@pytest.mark.parametrize(
    ("args", "existing"),
    [
        (["-OJ", f"{{URL}}/x{CD}%22q%20u.txt%22"], ()),
        (["-J", "-O", "-O", "-O", "-O", f"{{URL}}/a{CD}/etc/passwd2",
          "{URL}/b?cd=attachment;%20filename*=UTF-8''star.txt", f"{{URL}}/c{CD}a%5Cb.txt",
          "{URL}/nocd"], ()),
        (["-J", "-O", "-O", "-O", "-O", "{URL}/d?cd=attachment;%201filename=digit.txt",
          "{URL}/e?cd=attachment;%20foo=%22bar;%20filename=inq.txt%22",
          f"{{URL}}/f{CD}sp.txt%20%20", f"{{URL}}/g{CD}%FCn%EF.txt"], ()),
        (["-J", "--remote-name-all", f"{{URL}}/all{CD}all.txt"], ()),
        (["-J", f"{{URL}}/stdout{CD}never.txt", "-o", "o", f"{{URL}}/o{CD}never2.txt"], ()),
        (["-L", "-OJ", "{URL}/r?code=302&loc=/final&cd=attachment;%20filename=redir"], ()),
        (["-OJ", "{URL}/r?code=404&empty=1&cd=attachment;%20filename=from404"], ()),
        (["-OJ", f"{{URL}}/{CD}slash.txt"], ()),
        (["-J", "-O", "-O", f"{{URL}}/x{CD}-", "{URL}/-"], ()),  # "-": files, not stdout
        (["--output-dir", "d", "-J", "-O", "-O", f"{{URL}}/x{CD}-", "{URL}/-"], ("d/in",)),
        (["--output-dir", "d", "--create-dirs", "-J", "-O", "-O", f"{{URL}}/x{CD}a.txt",
          "{URL}/nocd"], ()),
        (["--output-dir", "d", "--no-clobber", "-OJ", f"{{URL}}/x{CD}a.txt"], ("d/a.txt",)),
        (["-OJ", "{URL}/nocd"], ("nocd",)),  # the URL's name: overwritten, as -O
        (["--clobber", "-OJ", f"{{URL}}/x{CD}a.txt"], ("a.txt",)),
        (["--no-clobber", "-o", "f", "-o", "f", "-O", "-o", "d", "{URL}/1", "{URL}/2",
          "{URL}/f", "{URL}/3"], ("f", "d/in-d")),
        (["--no-clobber", "-OJ", f"{{URL}}/x{CD}f"], ("f",)),
        (["--no-clobber", "-o", "f", "-o", "-", "{URL}/e?empty=1", "{URL}/out"], ("f",)),
        (["--no-clobber", "-O", "{URL}/f"], NINETY_NINE),  # f.99: the last one
    ],
)  # fmt: skip
def test_remote_header_names_and_no_clobber_as_curl(
    http: str, tmp_path: Path, args: list[str], existing: tuple[str, ...]
) -> None:
    args = [a.format(URL=http) for a in args]
    (curl, curl_log, curl_files), (ours, our_log, our_files) = side_by_side(
        tmp_path, "-s", "-w", W, *args, inputs=existing
    )
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert our_log == curl_log
    assert our_files == curl_files and curl_files
    assert ours.stdout == curl.stdout  # write-outs (%{filename_effective}), stdout bodies


@pytest.mark.parametrize(
    ("args", "existing", "curl_warns"),
    [
        (["-J", "-O", "-O", f"{{URL}}/x{CD}a.txt", "{URL}/next"], ("a.txt",),
         "Failed to open the file a.txt: File exists"),
        (["--output-dir", "d", "-OJ", f"{{URL}}/x{CD}a.txt"], ("d/a.txt",),
         "Failed to open the file d/a.txt: File exists"),
        (["--no-clobber", "-O", "-O", "{URL}/f", "{URL}/f"], NINETY_NINE,
         "Failed to open the file f: File exists"),
        (["--no-clobber", "-OJ", f"{{URL}}/x{CD}f"], (*NINETY_NINE, "f.99"),
         "Failed to open the file f: File exists"),
        (["-J", "-O", "-O", "{URL}/", "{URL}/next"], (), "Remote filename has no length!"),
        (["-OJ", f"{{URL}}/x{CD}dir/"], (), "Remote filename has no length!"),
    ],
)  # fmt: skip
def test_a_refused_file_as_curl(
    http: str, tmp_path: Path, args: list[str], existing: tuple[str, ...], curl_warns: str
) -> None:
    args = [a.format(URL=http) for a in args]
    (curl, curl_log, curl_files), (ours, our_log, our_files) = side_by_side(
        tmp_path, "--no-progress-meter", "-w", "%{size_header} %{size_download} " + W, *args,
        inputs=existing,
    )  # fmt: skip
    assert ours.returncode == 1 and curl.returncode in (0, 23)  # curl: the last URL's
    assert our_log == curl_log and our_files == curl_files  # nothing overwritten
    # %{exitcode} 23; %{size_header}: the header lines before a refused Content-Disposition
    assert ours.stdout == curl.stdout and b" 23\n" in curl.stdout
    assert f"Warning: {curl_warns}" in curl.stderr.decode().splitlines()
    (line,) = ours.stderr.decode().splitlines()
    assert line.startswith("pktlab run http: http://") and f": {curl_warns}" in line, line


@pytest.mark.parametrize("args", [["-i", "-OJ"], ["-I", "-J"], ["-J", "-i", "-o", "x"]])
def test_J_with_i_or_I_refused_as_curl(http: str, tmp_path: Path, args: list[str]) -> None:
    (curl, curl_log, _), (ours, our_log, our_files) = side_by_side(tmp_path, *args, f"{http}/x")
    assert curl.returncode == ours.returncode == 2
    assert curl_log == our_log == [] and our_files == {}
    words = "showing headers and --remote-header-name cannot be combined"
    assert curl.stderr.decode().splitlines()[0] == f"curl: {words}"
    (line,) = ours.stderr.decode().splitlines()
    assert words in line, line
