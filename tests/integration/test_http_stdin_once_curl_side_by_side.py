"""`pktlab run http` and curl 7.88 side by side where stdin is used twice: curl reads it
once, by its first use (-d @-, -w @- and a pipe's -F NAME=@-/<- as it parses the
options; -b - as the first transfer starts; a regular file's -F part and -T - when
sent), and every other use gets it empty. The server answers what each request carried;
the bodies must be curl's but for the multipart boundary. Where curl's Content-Length
still counts the file for a part it then sends empty (stdin a regular file, or a second
URL's form), the server waits for bytes that never come: ours sends the length of what
it sends (the server here reads with a time limit to see curl's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

COOKIE = b"127.0.0.1\tFALSE\t/\tFALSE\t0\tc\tv\n"  # stdin: a body and a cookie file


class Seen(BaseHTTPRequestHandler):
    """Answers what came: method, path, Content-Length, its body (boundaries taken out)
    and how many bytes short of its Content-Length it was after 2 s of silence."""

    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        body = bytearray()
        claimed = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") == "chunked":
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            self.connection.settimeout(2.0)
            try:
                while len(body) < int(claimed or 0):
                    got = self.rfile.read1(int(claimed or 0) - len(body))
                    if not got:
                        break
                    body += got
            except TimeoutError:
                pass
        seen = {
            "method": self.command, "path": self.path, "claimed": claimed,
            "short": int(claimed or 0) - len(body) if claimed else 0,
            "chunked": self.headers.get("Transfer-Encoding") == "chunked",
            "expect": self.headers.get("Expect"), "cookie": self.headers.get("Cookie"),
            "body": re.sub(r"-{24}[0-9a-f]{16}", "B", body.decode("latin-1")),
        }  # fmt: skip
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(out)
        self.close_connection = True

    do_POST = do_PUT = answer

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with serve_http(Seen) as port:
        yield f"http://127.0.0.1:{port}"


def both(argv: list[str], stdin: str, tmp_path: Path) -> list[subprocess.CompletedProcess[bytes]]:
    """curl, then ours, with stdin a pipe ("pipe") or a regular file ("file")."""
    (tmp_path / "stdin").write_bytes(COOKIE)
    runs = []
    ours = [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1"]
    for cmd in (["curl"], ours):
        kw: dict[str, Any] = {"input": COOKIE}
        if stdin == "file":
            kw = {"stdin": open(tmp_path / "stdin", "rb")}  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO))
        try:
            runs.append(
                subprocess.run(
                    [*cmd, "-s", *argv],
                    capture_output=True,
                    timeout=120,
                    env=env,
                    cwd=tmp_path,
                    **kw,
                )
            )
        finally:
            if stdin == "file":
                kw["stdin"].close()
    return runs


def answers(out: bytes) -> tuple[list[dict[str, Any]], str]:
    """The server's answers (each body, -o -) and the rest (what -w printed)."""
    text, seen, rest = out.decode("latin-1"), [], ""
    while text:
        if text.startswith("{"):
            got, end = json.JSONDecoder().raw_decode(text)
            seen.append(got)
            text = text[end:]
        else:
            rest, text = rest + text[0], text[1:]
    return seen, rest


CASES = [
    ("pipe", ["-F", "a=@-", "-F", "b=<-"], 1),
    ("file", ["-F", "a=@-", "-F", "b=<-"], 1),
    ("pipe", ["-F", "a=<-", "-F", "b=@-"], 1),
    ("pipe", ["-F", "n=(", "-F", "a=@-", "-F", "=)", "-F", "b=<-"], 1),
    ("pipe", ["-F", "a=@-"], 2),
    ("file", ["-F", "a=@-"], 2),
    ("pipe", ["-T", "-", "-T", "-"], 2),
    ("file", ["-T", "-", "-T", "-"], 2),
    ("pipe", ["-d", "@-", "-d", "@-", "--data-binary", "@-", "-d", "z"], 1),
    ("pipe", ["-w", "@-", "-d", "@-"], 1),
    ("pipe", ["-d", "@-", "-w", "@-"], 1),
    ("pipe", ["-w", "@-", "-F", "a=@-"], 1),
    ("pipe", ["-F", "a=@-", "-w", "@-"], 1),
    ("file", ["-F", "a=@-", "-w", "@-"], 1),
    ("file", ["-T", "-", "-w", "@-"], 1),
    ("pipe", ["-b", "-", "-F", "a=@-"], 1),
    ("file", ["-b", "-", "-F", "a=@-"], 1),
    ("pipe", ["-b", "-", "-T", "-"], 1),
]


@pytest.mark.parametrize(("stdin", "argv", "urls"), CASES)
def test_stdin_read_once_as_curl(
    http: str, tmp_path: Path, stdin: str, argv: list[str], urls: int
) -> None:
    # ours refused every one: `stdin (-) can be read once: ...`, exit 2
    targets = [f"{http}/x", f"{http}/y"][:urls]
    w = [] if "-w" in argv else ["-w", "|"]
    curl, ours = both([*w, *argv, *["-o", "-"] * urls, *targets], stdin, tmp_path)
    assert curl.returncode == ours.returncode == 0, ours.stderr
    (theirs, curl_w), (mine, ours_w) = answers(curl.stdout), answers(ours.stdout)
    assert ours_w == curl_w and len(mine) == len(theirs) == urls
    for c, o in zip(theirs, mine, strict=True):
        assert o["short"] == 0  # ours: the Content-Length of what it sends
        if c["claimed"] is not None:  # curl's counts a part it sends empty: `short` more
            c["claimed"] = str(int(c["claimed"]) - c["short"])
        assert {**o, "short": None} == {**c, "short": None}, (c, o)
    used = "".join(a["body"] + str(a["cookie"]) for a in mine) + ours_w
    assert used.count("127.0.0.1\t") + used.count("c=v") == 1  # stdin read once


def test_stdin_in_an_upload_glob_as_curl(http: str, tmp_path: Path) -> None:
    # -T '{-,a.txt,-}': the first `-` has stdin, the second an empty chunked PUT (ours
    # already so before, each `-` its own read of what was left; a glob's `-` must count
    # as a -T - in `stdin_owner`: a first version gave both an empty body)
    (tmp_path / "a.txt").write_bytes(b"a\n")
    for stdin in ("pipe", "file"):
        curl, ours = both(["-w", "|%{size_upload}", "-T", "{-,a.txt,-}", f"{http}/up/"], stdin,
                          tmp_path)  # fmt: skip
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert ours.stdout == curl.stdout and answers(ours.stdout)[1] == "|41|2|5", ours.stdout


def test_curls_content_length_lies_where_ours_does_not(http: str, tmp_path: Path) -> None:
    # curl 7.88.1: the second URL's form (stdin read by the first), and a regular file's
    # second stdin part, claim the bytes they do not send: the server waits for them
    for stdin, argv, urls in (
        ("file", ["-F", "a=@-", "-F", "b=<-"], 1),
        ("pipe", ["-F", "a=@-"], 2),
    ):
        targets = [f"{http}/x", f"{http}/y"][:urls]
        curl, ours = both([*argv, *["-o", "-"] * urls, *targets], stdin, tmp_path)
        short = [a["short"] for a in answers(curl.stdout)[0]]
        assert (
            short[-1] == len(COOKIE) and [a["short"] for a in answers(ours.stdout)[0]] == [0] * urls
        )


@pytest.mark.parametrize(
    "argv",
    [["--data-binary", "@-", "-T", "-"], ["-T", "-", "-F", "x=@-"], ["-d", "@-", "-F", "x=y"]],
)
def test_two_bodies_are_refused_as_curl(http: str, tmp_path: Path, argv: list[str]) -> None:
    curl, ours = both([*argv, f"{http}/x"], "pipe", tmp_path)
    assert curl.returncode == ours.returncode == 2  # curl: "You can only select one HTTP ..."
    assert ours.stderr.decode().count("\n") == 1 and b"one request body only" in ours.stderr
