"""`pktlab run http` with curl's -F, -T and -Z/--parallel: the option checks (one-line
errors before anything is sent), -T's URL (the file name appended to a URL ending in /),
whole runs over the scripted endpoint (what the server got), and parallel transfers (at
the same time, each row when its URL ends, --parallel-max)."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from http_fake import H2Server
from test_http_redirects import Server, echo
from test_run_http_curl import parse, run

from packetlab.cli import run_http, run_http_body, run_http_files
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress


def test_upload_url_as_curl() -> None:
    # checked against curl 7.88.1: PUT /up/small.txt, /small.txt, /a/b?x=1, /up/ for stdin
    assert run_http_files.upload_url("http://h:1/up/", "d/small.txt") == "http://h:1/up/small.txt"
    assert run_http_files.upload_url("http://h:1", "small.txt") == "http://h:1/small.txt"
    assert run_http_files.upload_url("http://h:1/a/b?x=1", "small.txt") == "http://h:1/a/b?x=1"
    assert run_http_files.upload_url("h/up/", "a b") == "h/up/a%20b"
    assert run_http_files.upload_url("http://h/up/", "-") == "http://h/up/"
    # curl 7.88.1 writes the percent-encoding's hex digits in lower case, and takes the
    # name after the last / or \\
    assert run_http_files.upload_url("http://h/up/", "{a,b}") == "http://h/up/%7ba%2cb%7d"
    assert (
        run_http_files.upload_url("http://h/up/", "sp~_.-!*()") == "http://h/up/sp~_.-%21%2a%28%29"
    )
    assert run_http_files.upload_url("http://h/", "d\\x.txt") == "http://h/x.txt"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-F", "a=b", "-d", "x=1", "http://a.test/"], "-d/--data and -F/--form: one request body"),
        (["-T", "{f}", "-F", "a=b", "http://a.test/"], "-F/--form and -T/--upload-file: one"),
        (
            ["-T", "{f}", "-I", "http://a.test/"],
            "-I/--head and -T/--upload-file: one request method",
        ),
        (["-F", "a=b", "-G", "http://a.test/"], "-G/--get and -F/--form"),
        (["-F", "a=b", "-G", "-d", "x=1", "http://a.test/"], "-G/--get and -F/--form"),
        (["-T", "{f}", "-T", "{f}", "http://a.test/"], "2 -T/--upload-file for 1 URLs"),
        (["-T", "{d}/nosuch", "http://a.test/"], r"-T/--upload-file .*nosuch: No such file"),
        (["-F", "f=@{d}/nosuch", "http://a.test/"], r"^-F/--form 'f=@.*nosuch': .*nosuch: No such"),
        (["-F", "f=<{d}/nosuch", "http://a.test/"], r"^-F/--form 'f=<.*nosuch': .*nosuch: No such"),
        (["-F", "noequals", "http://a.test/"], "expected NAME=VALUE"),
        (["--form-string", "noeq", "http://a.test/"], r"^--form-string 'noeq': expected NAME"),
        (["-F", "a=x;encoder=nope", "http://a.test/"], r"^-F/--form 'a=x;encoder=nope': ;enc"),
        (["-T", "-", "-F", "f=@-", "http://a.test/"], "one request body"),  # curl: 2 too
        (["--data-binary", "@-", "-T", "-", "http://a.test/"], "one request body"),
        (["-d", "@-", "-F", "x=y", "http://a.test/"], "one request body"),
        (["-F", "a=1", "-F", "=)", "http://a.test/"], r"^-F/--form '=\)': no multipart to term"),
        (
            ["-T", "{{a,b", "http://a.test/"],
            r"^-T/--upload-file '\{a,b': unmatched brace at position 1 \(curl: 3\)$",
        ),
        (["-T", "f[3-1]", "http://a.test/"], r"'f\[3-1\]': bad range at position 7"),
        (["-T", "f[1-100000]", "http://a.test/"], r"over 10000 file names"),
        (["-T", "{d}/{{f,nosuch}}", "http://a.test/"], r"nosuch: No such file .*\(from '.*"),
        (["-g", "-T", "{d}/[1-2]", "http://a.test/"], r"\[1-2\]: No such file"),
        (["-Z", "--parallel-max", "0", "http://a.test/"], r"--parallel-max 0: 1\.\.300"),
        (["-Z", "--parallel-max", "301", "http://a.test/"], r"--parallel-max 301"),
    ],
)
def test_bad_body_options_are_one_line_errors(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    argv = [a.format(f=f, d=tmp_path) for a in argv]
    with pytest.raises(RunError, match=message):
        run_http.experiment(parse(*argv), lambda r: None, Progress())


def test_put_and_form_runs(tmp_path: Path) -> None:
    f = tmp_path / "note.txt"
    f.write_text("hello there")
    code, _, raw, _, records = run("-T", str(f), "-w", "\\n%{method} %{size_upload} %{url}",
                                   "http://192.0.2.80/up/", "http://192.0.2.80/x")  # fmt: skip
    first, second = raw.decode().split("\n")[0:2], raw.decode().split("\n")[2:]
    assert code == 0 and json.loads(first[0]) == {
        "method": "PUT", "target": "/up/note.txt", "body": "hello there", "ct": None,
        "auth": None,
    }  # fmt: skip
    assert first[1].startswith("PUT 11 http://192.0.2.80/up/note.txt")
    assert json.loads(first[1].split("note.txt")[1])["method"] == "GET"  # the next URL
    assert second == ["GET 0 http://192.0.2.80/x"]
    assert records[0]["upload_size"] == 11 and records[0]["method"] == "PUT"
    code, _, raw, _, records = run("-F", "a=1", "-F", f"f=@{f}", "-o", "-", "--json",
                                   "http://192.0.2.80/form")  # fmt: skip
    got = json.loads(raw)
    assert code == 0 and got["method"] == "POST" and got["ct"].startswith("multipart/form-data")
    boundary = got["ct"].split("boundary=")[1]
    assert got["body"] == (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="note.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello there\r\n--{boundary}--\r\n"
    )


def test_nested_form_runs(tmp_path: Path) -> None:
    f = tmp_path / "note.txt"
    f.write_text("hello there")
    code, _, raw, _, _ = run("-F", "a=(;type=multipart/alternative", "-F", f"f=@{f}", "-F", "=)",
                             "-o", "-", "--json", "http://192.0.2.80/form")  # fmt: skip
    got = json.loads(raw)
    boundary = got["ct"].split("boundary=")[1]
    sub = re.search(r"boundary=(-{24}[0-9a-f]{16})\r\n", got["body"])
    assert code == 0 and sub is not None and sub[1] != boundary
    assert got["body"] == (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n'
        f"Content-Type: multipart/alternative; boundary={sub[1]}\r\n\r\n"
        f'--{sub[1]}\r\nContent-Disposition: attachment; name="f"; filename="note.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello there\r\n--{sub[1]}--\r\n"
        f"\r\n--{boundary}--\r\n"
    )


def test_upload_globs_and_pairs_as_curl(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "file1", "file2", "c", "{x}"):
        (tmp_path / name).write_text(name)
    u = "http://192.0.2.80"
    # curl 7.88.1: each -T (its glob's files) goes with one URL, in order; a URL ending
    # in / gets each file's name, another is PUT to as is; a URL without -T is a GET
    code, _, _, _, records = run("--json", "-T", "{a,b}", "-T", "file[1-2]", "-T", "c",
                                 f"{u}/1/", f"{u}/2/", f"{u}/3", f"{u}/4/")  # fmt: skip
    got = [(r["method"], r["url"], r["upload_size"]) for r in records if r["type"] == "http"]
    assert code == 0 and got == [
        ("PUT", f"{u}/1/a", 1), ("PUT", f"{u}/1/b", 1), ("PUT", f"{u}/2/file1", 5),
        ("PUT", f"{u}/2/file2", 5), ("PUT", f"{u}/3", 1), ("GET", f"{u}/4/", 0),
    ]  # fmt: skip
    # -g: the name as written
    code, _, _, _, records = run("--json", "-g", "-T", "{x}", f"{u}/up/")
    assert code == 0 and records[0]["url"] == f"{u}/up/%7bx%7d"
    # -Z: every file of the glob at once
    code, _, _, _, records = run("--json", "-Z", "-T", "{a,b,c}", f"{u}/z/")
    assert code == 0 and sorted(r["url"] for r in records if r["type"] == "http") == [
        f"{u}/z/a", f"{u}/z/b", f"{u}/z/c"]  # fmt: skip


class Slow(Server):
    """Answers /d/S after S seconds."""

    def arrived(self) -> None:
        line = bytes(self.got).split(b"\r\n", 1)[0].decode()
        if " /d/" in line:
            self.delay = float(line.split(" ")[1][3:].split("/")[0])
        super().arrived()


def test_parallel_transfers_go_at_once_and_end_in_their_order() -> None:
    urls = ["http://192.0.2.80/d/0.6", "http://192.0.2.80/d/0.1", "http://192.0.2.80/d/0.3"]
    w = "%{url} %{num_connects} %{time_total}\\n"
    null = ["-o", "/dev/null"] * 3
    code, _, raw, _, records = run("-Z", "--parallel-immediate", "-s", *null, "-w", w, *urls,
                                   server=lambda: Slow(echo))  # fmt: skip
    lines = raw.decode().splitlines()
    # each URL's write-out when it ends, as curl -Z's: the fastest first
    assert code == 0 and [line.split()[0] for line in lines] == [urls[1], urls[2], urls[0]]
    assert [r["url"] for r in records] == [urls[1], urls[2], urls[0]]
    assert all(line.split()[1] == "1" for line in lines)  # each its own connection (HTTP/1.1)
    # at the same time: the slowest URL's time is its own, not the sum
    assert max(float(line.split()[2]) for line in lines) < 0.8
    # --parallel-max 1: one after the other, in URL order
    _, _, raw, _, _ = run("-Z", "--parallel-max", "1", "-s", "-w", w, *null, *urls,
                          server=lambda: Slow(echo))  # fmt: skip
    assert [line.split()[0] for line in raw.decode().splitlines()] == urls


class SlowKept(Slow):
    """Slow, keeping the connection open for the next request."""

    def arrived(self) -> None:
        head, sep, _ = bytes(self.got).partition(b"\r\n\r\n")
        if not sep:
            return
        line = head.split(b"\r\n", 1)[0].decode()
        self.got[:] = bytes(self.got)[len(head) + 4 :]
        target = line.split(" ")[1]
        body = f"{target}\n".encode()
        delay = float(target[3:]) if target.startswith("/d/") else 0.0
        self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
                  delay)  # fmt: skip


def test_parallel_http1_waits_for_the_first_connection_as_curl() -> None:
    # curl 7.88 -Z without --parallel-immediate (checked: /d/0.9 /d/0.1 /d/0.5 /d/0.2 to
    # one HTTP/1.1 server): the others wait for the first connection to learn whether it
    # multiplexes; at its first answer one reuses it, the others connect, at once
    urls = ["http://192.0.2.80/d/0.9", "http://192.0.2.80/d/0.1", "http://192.0.2.80/d/0.5",
            "http://192.0.2.80/d/0.2"]  # fmt: skip
    null = ["-o", "/dev/null"] * 4
    w = "%{url} %{num_connects} %{time_total}\n"
    code, _, raw, _, _ = run("-Z", "-s", *null, "-w", w, *urls,
                             server=lambda: SlowKept(echo))  # fmt: skip
    lines = [line.split() for line in raw.decode().splitlines()]
    assert code == 0 and [(url, n) for url, n, _ in lines] == [
        (urls[0], "1"), (urls[1], "0"), (urls[3], "1"), (urls[2], "1"),
    ]  # fmt: skip
    assert 1.3 < float(lines[-1][2]) < 1.5  # 0.9, then 0.5 (curl: 1.406859)


def test_parallel_table_and_summary() -> None:
    urls = ["http://192.0.2.80/d/0.2", "http://192.0.2.81/", "http://192.0.2.80/d/0"]
    code, text, _, _, records = run("--parallel", "--parallel-immediate", *urls,
                                    server=lambda: Slow(echo))  # fmt: skip
    assert code == 1 and [r["url"] for r in records][:3] == [urls[2], urls[1], urls[0]], records
    assert text.splitlines()[-1] == "# 2 of 3 fetched, 148 body bytes"


def test_an_upload_in_parallel_to_several_urls(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("A")
    g = tmp_path / "b.txt"
    g.write_text("BB")
    code, _, _, _, records = run("-Z", "--parallel-immediate", "--json", "-T", str(f), "-T",
                                 str(g),
                                 "http://192.0.2.80/d/0.2/", "http://192.0.2.80/d/0/",
                                 server=lambda: Slow(echo))  # fmt: skip
    assert code == 0 and [r["url"] for r in records if r["type"] == "http"] == [
        "http://192.0.2.80/d/0/b.txt", "http://192.0.2.80/d/0.2/a.txt",
    ]  # fmt: skip
    assert [r["upload_size"] for r in records if r["type"] == "http"] == [2, 1]


def test_help_names_the_new_options(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in ("-F NAME=VALUE, --form", "-T FILE, --upload-file", "-Z, --parallel",
                   "--parallel-max N", "--form-string NAME=VALUE", "-g, --globoff",
                   "--no-progress-meter", "-T 'run[1-3].tar'", "'logs=@a.log,b.log'",
                   "headers=X-Run: 7;encoder=base64", "-Z -w"):  # fmt: skip
        assert option in text, option


class Reversed(H2Server):
    """An h2c server that holds the requests until `n` are in flight on its connection,
    then answers them last first."""

    def __init__(self, n: int = 3) -> None:
        super().__init__()
        self.n, self.held = n, []  # type: tuple[int, list[int]]
        self.most = 0  # streams in flight at once, at most

    def _answer(self, sid: int) -> None:
        self.held.append(sid)
        self.most = max(self.most, len(self.held))
        if len(self.held) >= self.n:
            for s in reversed(self.held):
                super()._answer(s)
            self.held = []


def test_parallel_http2_multiplexes_on_one_connection() -> None:
    made: list[Reversed] = []

    def server(n: int = 3) -> Reversed:
        made.append(Reversed(n))
        return made[-1]

    urls = [f"http://192.0.2.80/{i}" for i in range(3)]
    w = "%{url} %{num_connects} %{http_version}\\n"
    code, _, raw, _, _ = run("-Z", "--http2-prior-knowledge", "-s", "-w", w, *urls,
                             server=server)  # fmt: skip
    assert code == 0 and len(made) == 1 and made[0].most == 3  # one connection, 3 streams
    # answered last first: each body and write-out when its stream ends; the first URL's
    # transfer made the connection (curl: num_connects 1, then 0 for the multiplexed)
    assert re.findall(r"ok GET (/\d) 0", raw.decode()) == ["/2", "/1", "/0"]
    assert re.findall(r"(http://\S+ \d \d)\n", raw.decode()) == [
        "http://192.0.2.80/2 0 2", "http://192.0.2.80/1 0 2", "http://192.0.2.80/0 1 2",
    ]  # fmt: skip
    # --parallel-immediate: each its own connection at once, as curl's
    made.clear()
    code, _, raw, _, _ = run("-Z", "--parallel-immediate", "--http2-prior-knowledge", "-s",
                             "-w", w, *urls, server=lambda: server(1))  # fmt: skip
    assert code == 0 and len(made) == 3 and raw.decode().count(" 1 2\n") == 3
    # without -Z: one at a time over the same connection (streams 1, 3, 5 in turn)
    made.clear()
    code, _, raw, _, _ = run("--http2-prior-knowledge", "-s", "-w", w, *urls,
                             server=lambda: Reversed(1))  # fmt: skip
    assert code == 0 and raw.decode().count(" 2\n") == 3


def test_get_with_head_and_data_still_goes() -> None:
    # -G makes -d the query: -I with it is no second request body (curl: a HEAD)
    run_http.experiment(parse("-G", "-I", "-d", "a=1", "http://a.test/"), lambda r: None,
                        Progress())  # fmt: skip


class Resets(Reversed):
    """As Reversed, but /bad's stream is reset and /close closes the connection."""

    def _answer(self, sid: int) -> None:
        path = self.streams[sid][0][":path"]
        if path == "/close":
            self.close()
            return
        if path == "/bad":
            del self.streams[sid]
            self.h2.reset_stream(sid)
            self.send(self.h2.data_to_send())
            return
        super()._answer(sid)


def test_parallel_http2_a_reset_stream_is_its_urls_error_only() -> None:
    urls = ["http://192.0.2.80/a", "http://192.0.2.80/bad", "http://192.0.2.80/b"]
    code, _, _, _, records = run("-Z", "--http2-prior-knowledge", "--json", *urls,
                                 server=lambda: Resets(2))  # fmt: skip
    got = {r["url"]: r for r in records if r["type"] == "http"}
    assert code == 1 and got[urls[1]]["exitcode"] == 92  # curl: HTTP/2 stream not closed cleanly
    assert "stream 3 reset by 192.0.2.80:80" in got[urls[1]]["error"]
    assert got[urls[0]]["status"] == got[urls[2]]["status"] == 200
    # the connection's end is every stream's on it
    code, _, _, _, records = run("-Z", "--http2-prior-knowledge", "--json",
                                 "http://192.0.2.80/a", "http://192.0.2.80/close",
                                 server=lambda: Resets(9))  # fmt: skip
    assert code == 1 and all("closed the connection" in r["error"] for r in records[:2])


def stdin_of(monkeypatch: Any, tmp_path: Path, kind: str, data: bytes) -> None:
    """stdin a regular file ("file": curl reads a -F part of it when sent) or a stream
    without a file descriptor ("pipe": read as the options are, as curl reads a pipe)."""
    if kind == "file":
        (tmp_path / "stdin").write_bytes(data)
        stream: Any = open(tmp_path / "stdin")  # noqa: SIM115
    else:
        stream = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(sys, "stdin", stream)


U1, U2 = "http://192.0.2.80/x", "http://192.0.2.80/y"
A = 'name="a"; filename="-"\r\n\r\n'
# curl 7.88.1 side by side (test_http_upload_curl_side_by_side.py): stdin read once, by
# its first use (-d, -w and a pipe's -F as the options are parsed, then -F of a regular
# file when sent); every other use of it empty


@pytest.mark.parametrize("kind", ["pipe", "file"])
@pytest.mark.parametrize(
    ("argv", "bodies", "fmt"),
    [
        (["-F", "a=@-", "-F", "b=<-", U1], [A + 'hello\n\r\n', 'name="b"\r\n\r\n\r\n'], "."),
        (["-F", "a=<-", "-F", "b=@-", U1], ['name="a"\r\n\r\nhello\n\r\n',
                                                 'name="b"; filename="-"\r\n\r\n\r\n'], "."),
        (["-F", "a=@-", U1, U2], [A + "hello\n\r\n", A + "\r\n--"], "."),
        (["-F", "n=(", "-F", "a=@-", "-F", "=)", "-F", "b=<-", U1], [A + "hello\n\r\n",
                                                                     'name="b"\r\n\r\n\r\n'], "."),
        (["-d", "@-", "-d", "@-", "--data-binary", "@-", U1], ["hello&&"], "."),
        (["-w", "@-", "-d", "@-", U1], [""], "hello"),
        (["-d", "@-", "-w", "@-", U1], ["hello"], ""),
        (["-w", "@-", "-F", "a=@-", U1], [A + "\r\n"], "hello"),
    ],
)  # fmt: skip
def test_stdin_is_read_once_by_its_first_use_as_curl(
    monkeypatch: Any, tmp_path: Path, kind: str, argv: list[str], bodies: list[str], fmt: str
) -> None:
    # ours refused a second use of stdin: `stdin (-) can be read once` (exit 2)
    stdin_of(monkeypatch, tmp_path, kind, b"hello\n")
    w = [] if "-w" in argv else ["-w", "."]
    outs = ["-o", "-"] * sum(a.startswith("http") for a in argv)
    code, _, raw, err, _ = run(*w, *outs, *argv)
    assert code == 0, err
    seen, rest = bodies_and_write_out(raw)
    assert rest == fmt * (len(outs) // 2) and len(seen) == len(outs) // 2
    for body in bodies:  # in the one request, or the first then the second
        assert body in seen[0] or (U2 in argv and body in seen[1]), (body, seen)
    assert ("".join(seen) + rest).count("hello") == 1  # read once


def bodies_and_write_out(raw: bytes) -> tuple[list[str], str]:
    """The bodies the echo server saw (its JSON answers, -o -) and what -w printed."""
    text, seen, rest = raw.decode(), [], ""
    while text:
        if text.startswith("{"):
            got, end = json.JSONDecoder().raw_decode(text)
            seen.append(got["body"])
            text = text[end:]
        else:
            rest, text = rest + text[0], text[1:]
    return seen, rest


def test_a_form_part_of_stdin_after_a_write_out_of_it(monkeypatch: Any, tmp_path: Path) -> None:
    # curl reads a pipe's -F part as it parses it, a regular file's when it sends it
    for kind, part, fmt in (("pipe", "hello\n", ""), ("file", "", "hello")):
        stdin_of(monkeypatch, tmp_path, kind, b"hello\n")
        code, _, raw, err, _ = run("-o", "-", "-F", "a=@-", "-w", "@-", U1)
        assert code == 0, err
        seen, rest = bodies_and_write_out(raw)
        assert A + part + "\r\n" in seen[0] and rest == fmt  # (its newline dropped, curl's)


def test_stdin_uploads_after_the_first_are_empty(monkeypatch: Any, tmp_path: Path) -> None:
    # -T - to two URLs (or a glob): curl's second PUT is an empty chunked body
    stdin_of(monkeypatch, Path(), "pipe", b"hello\n")
    args = parse("-T", "-", "-T", "-", U1, U2)
    _, uploads, _ = run_http_body.bodies(args, None)
    jobs, _ = run_http_files.transfers(args, uploads)
    assert [b"".join(up.chunks()) for _, _, up in jobs] == [b"hello\n", b""]
    assert [up.length for _, _, up in jobs] == [None, None]  # both chunked, as curl's
    jobs, _ = run_http_files.transfers(parse("-T", "-", f"{U1}[1-3]"), uploads[:1], stdin=False)
    assert [b"".join(up.chunks()) for _, _, up in jobs] == [b""] * 3  # (-w @- read it)
    # a -T glob's names count: `-T '{-,f,-}'`
    stdin_of(monkeypatch, Path(), "pipe", b"hello\n")
    (tmp_path / "f").write_bytes(b"f")
    args = parse("-T", f"{{-,{tmp_path / 'f'},-}}", U1)
    _, uploads, _ = run_http_body.bodies(args, None)
    jobs, _ = run_http_files.transfers(
        args, uploads, stdin=run_http_body.stdin_owner(args, None, uploads) is not None
    )
    assert [b"".join(up.chunks()) for _, _, up in jobs] == [b"hello\n", b"f", b""]
