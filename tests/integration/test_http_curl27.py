"""`pktlab run http` beside curl 7.88.1 where they differed before session 27 (http27):
--etag-save, --etag-compare, -R/--remote-time, --netrc, --netrc-file, --netrc-optional
(unknown options before) and the -o file of a 304 (ours emptied it). Each command line
run by /usr/bin/curl and by ours (`-A x` for both) against the same raw loopback server,
which records each request's bytes; the requests, stdout (-w), the files written, their
times and the exit status compared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from http_keepalive import Recorder as KeepaliveRecorder
from http_keepalive import recorder_fixture
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

LAST_MODIFIED = b"Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
ANSWERS = {
    b"/e": b'HTTP/1.1 200 OK\r\nETag: "abc"\r\n' + LAST_MODIFIED + b"Content-Length: 2\r\n\r\nok",
    b"/w": b'HTTP/1.1 200 OK\r\nETag:   W/"x y"  \r\nContent-Length: 2\r\n\r\nok',
    b"/two": b'HTTP/1.1 200 OK\r\nETag: "one"\r\netag: "two"\r\nContent-Length: 2\r\n\r\nok',
    b"/r": b'HTTP/1.1 302 Found\r\nETag: "red"\r\nLocation: /e\r\nContent-Length: 0\r\n\r\n',
    b"/none": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/304": b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n' + LAST_MODIFIED + b"\r\n",
    b"/404": b'HTTP/1.1 404 Not Found\r\nETag: "nf"\r\n'
    + LAST_MODIFIED
    + b"Content-Length: 2\r\n\r\nno",
    b"/badlm": b"HTTP/1.1 200 OK\r\nLast-Modified: garbage\r\nContent-Length: 2\r\n\r\nok",
    b"/empty": b"HTTP/1.1 200 OK\r\n" + LAST_MODIFIED + b"Content-Length: 0\r\n\r\n",
}


class Recorder(KeepaliveRecorder):
    """Answers each path with its bytes (keep-alive), every request head kept."""

    def answer(self, conn: socket.socket, head: bytes, path: bytes) -> bool:
        if path == b"/rl":  # to another host name: localhost
            port = self.sock.getsockname()[1]
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://localhost:%d/e\r\n"
                         b"Content-Length: 0\r\n\r\n" % port)  # fmt: skip
            return True
        conn.sendall(ANSWERS.get(path, ANSWERS[b"/none"]))
        return True


server = recorder_fixture(Recorder)


def _run(who: str, cwd: Path, *args: str) -> tuple[int, bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    p = subprocess.run([*argv, "-s", "-A", "x", *args], capture_output=True, timeout=60,
                       env=env, cwd=cwd)  # fmt: skip
    return p.returncode, p.stdout


def _both(server: Recorder, tmp: Path, files: dict[str, bytes], *args: str) -> list[Any]:
    """Each of curl and ours in a directory of its own holding `files`: (exit status,
    stdout, the requests, each file's bytes and times) for both."""
    seen = []
    for who in ("curl", "ours"):
        here = tmp / who
        here.mkdir()
        for name, data in files.items():
            (here / name).write_bytes(data)
            os.utime(here / name, (1500000000, 1500000000))
        server.heads.clear()
        code, out = _run(who, here, *(a.replace("URL", server.url) for a in args))
        # (the times before the bytes: a read may change the access time)
        stats = {p.name: p.stat() for p in sorted(here.iterdir())}
        written = {name: ((here / name).read_bytes(), int(st.st_mtime) if st.st_mtime <
                          1600000000 else "now", int(st.st_atime) if st.st_atime <
                          1600000000 else "now") for name, st in stats.items()}  # fmt: skip
        seen.append((code, out, list(server.heads), written))
    return seen


@pytest.mark.parametrize(
    "args",
    [
        ("--etag-save", "et", "-o", "/dev/null", "URL/e"),
        ("--etag-save", "et", "-o", "/dev/null", "URL/w"),
        ("--etag-save", "et", "-o", "/dev/null", "URL/two"),
        ("--etag-save", "et", "-L", "-o", "/dev/null", "URL/r"),
        ("--etag-save", "et", "-o", "/dev/null", "URL/r"),
        ("--etag-save", "et", "-o", "/dev/null", "URL/404"),
        ("--etag-save", "et", "-o", "/dev/null", "-o", "/dev/null", "URL/e", "URL/none"),
        ("--etag-save", "-", "-o", "/dev/null", "URL/two"),
        ("--etag-compare", "tag", "-o", "/dev/null", "-o", "/dev/null", "URL/e", "URL/none"),
        ("--etag-compare", "joined", "-o", "/dev/null", "URL/e"),
        ("--etag-compare", "blank", "-o", "/dev/null", "URL/e"),
        ("--etag-compare", "spaced", "-o", "/dev/null", "URL/e"),
        ("--etag-compare", "cr", "-o", "/dev/null", "URL/e"),
        ("--etag-compare", "emptyfile", "-o", "/dev/null", "URL/e"),
        (
            "--etag-compare",
            "new",
            "--etag-save",
            "new",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "URL/e",
            "URL/w",
        ),
        ("--etag-compare", "tag", "--etag-save", "tag", "-o", "page", "URL/304"),
        ("-o", "page", "URL/304"),
        ("-z", "20200101", "-o", "page", "URL/e"),
        ("-z", "page", "-o", "page", "URL/e"),
        ("-o", "new", "URL/304"),
        ("-R", "-o", "new", "URL/e"),
        ("-R", "-o", "page", "URL/e"),
        ("-R", "-o", "new", "URL/badlm"),
        ("-R", "-o", "new", "URL/none"),
        ("-R", "-I", "-o", "new", "URL/e"),
        ("-R", "-L", "-o", "new", "URL/r"),
        ("-R", "-o", "new", "URL/empty"),
        ("-R", "-o", "page", "URL/304"),
        ("-R", "-o", "new", "URL/404"),
        ("-R", "-f", "-o", "new", "URL/404"),
        ("-R", "--fail-with-body", "-o", "new", "URL/404"),
    ],
    ids=lambda a: " ".join(a),
)
def test_etags_remote_time_and_304s_as_curl(server: Recorder, tmp_path: Path,
                                            args: tuple[str, ...]) -> None:  # fmt: skip
    files = {"tag": b'"abc"\n', "joined": b'"abc"\n"x"\n', "blank": b"\n",
             "spaced": b'  "sp" \r\n', "cr": b"a\rb\n", "emptyfile": b"",
             "page": b"the page"}  # fmt: skip
    curl, ours = _both(server, tmp_path, files, "-w", "%{http_code} %{exitcode}\\n", *args)
    # (-f and --fail-with-body: curl 22, ours 1 unless --curl-exit-codes, as documented)
    if "-f" in args or "--fail-with-body" in args:
        assert (curl[0], ours[0]) == (22, 1)
        curl = (0, *curl[1:])
        ours = (0, *ours[1:])
    assert ours == curl


def test_etag_files_that_cannot_be_used(server: Recorder, tmp_path: Path) -> None:
    # curl: `Failed to open FILE` (26) and `Failed creating file for saving etags`
    # (`no transfer performed`, 26): nothing sent by either; ours says so in one line (2)
    for args in (["--etag-compare", "missing"], ["--etag-save", "no/dir"]):
        server.heads.clear()
        code, _ = _run("curl", tmp_path, *args, server.url + "/e")
        assert (code, server.heads) == (26, [])
        p = subprocess.run([sys.executable, "-m", "packetlab", "run", "http", *args,
                            server.url + "/e"], capture_output=True, timeout=60, cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
        assert (p.returncode, server.heads) == (2, [])
        assert b"curl: 26, no transfer" in p.stderr or b"no transfer performed" in p.stderr


NETRC = {
    "n1": b"machine other login o password op\nmachine 127.0.0.1 login alice password "
    b'"s e\\"cret"\ndefault login dflt password dp\n',
    "n2": b"machine 127.0.0.1 login bob password bp\nmachine 127.0.0.1 login alice password ap\n",
    "n3": b"macdef init\nmachine 127.0.0.1 login m password mp\n\n"
    b"machine 127.0.0.1 login after password ap2\n",
    "n4": b"default login d password dp\n",
    "n5": b"machine 127.0.0.1 login onlylogin\n",
    "n6": b"machine 127.0.0.1 password onlypw\n",
    "n7": b'machine 127.0.0.1 login "unterminated\n',
    "n8": b"default\n",
    "n9": b"machine 127.0.0.1 login a password p\nmachine localhost login b password q\n",
    "n10": b'machine 127.0.0.1 login "a\\tb" password "x\\ny"\n',
    "n11": b"# comment\nmachine 127.0.0.1 login a password p # trailing\n",
    "n12": b"machine 127.0.0.1\n login a\n password\n p\n",
    "n13": b"MACHINE 127.0.0.1 LOGIN a PASSWORD p\n",
    "n14": b"macdef x\nmachine 127.0.0.1 login m password mp\n  \n"
    b"machine 127.0.0.1 login after password ap2\n",
    "n15": b"machine 127.0.0.1 login a\n",
    "n16": b'machine 127.0.0.1 login a password "p\nq"\n',
    "n17": b'machine 127.0.0.1 login a password "p" machine other\n',
    "n18": b'machine 127.0.0.1 login "a"x password p\n',
    "n19": b"machine 127.0.0.1 login b password bp login a\n",
}


def _netrc_run(who: str, cwd: Path, *args: str) -> tuple[int, bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(cwd))
    argv = (["curl"] if who == "curl" else
            [sys.executable, "-m", "packetlab", "run", "http", "--curl-exit-codes"])  # fmt: skip
    w = "%{http_code} %{exitcode} %{errormsg}\\n"
    p = subprocess.run([*argv, "-s", "-A", "x", "-o", os.devnull, "-w", w, *args],
                       capture_output=True, timeout=60, env=env, cwd=cwd)  # fmt: skip
    return p.returncode, p.stdout


@pytest.mark.parametrize("name", sorted(NETRC))
def test_netrc_files_read_as_curl(server: Recorder, tmp_path: Path, name: str) -> None:
    # curl 7.88.1 (Debian 12's, its netrc parser backported from 8.11.1) beside ours
    # (unknown options before, exit 2): the Authorization each request carries, -w's
    # code, exit code and errormsg (ours with --curl-exit-codes: 26 for a parser error)
    (tmp_path / "nf").write_bytes(NETRC[name])
    (tmp_path / ".netrc").write_bytes(NETRC[name])
    port = server.url.rsplit(":", 1)[1]
    cases: tuple[list[str], ...] = (
        ["--netrc-file", "nf", f"{server.url}/e"],
        ["--netrc-file", "nf", f"http://alice@127.0.0.1:{port}/e"],
        ["--netrc-file", "nf", f"http://a:pw@127.0.0.1:{port}/e"],
        ["--netrc-optional", "--netrc-file", "nf", f"http://a:pw@127.0.0.1:{port}/e"],
        ["--netrc-optional", "--netrc-file", "nf", f"http://a@127.0.0.1:{port}/e"],
        ["--netrc-file", "nf", "-L", f"{server.url}/rl"],  # localhost looked up
    )
    if name in ("n1", "n2", "n9"):  # (the rest for three files: the suite's time)
        cases += (
            ["--netrc-file", "nf", "--location-trusted", f"{server.url}/rl"],  # the first's
            ["--netrc-file", "nf", "-u", "x:y", f"{server.url}/e"],  # -u wins
            ["--netrc", f"{server.url}/e"],  # $HOME/.netrc
            ["-n", "--digest", f"{server.url}/e"],  # (no challenge: nothing sent)
        )
    for args in cases:
        seen = []
        for who in ("curl", "ours"):
            server.heads.clear()
            code, out = _netrc_run(who, tmp_path, *args)
            fields = [line for head in server.heads for line in head.split(b"\r\n")
                      if line.lower().startswith((b"authorization", b"get "))]  # fmt: skip
            seen.append((code, out, fields))
        assert seen[1] == seen[0], args


def test_netrc_credentials_answer_a_digest_challenge_as_curl(tmp_path: Path) -> None:
    # --netrc with --digest: curl answers the 401's challenge with the file's user and
    # password (ours sent them as Basic at once before the fix of that hop loop)
    import test_http_curl25 as c25

    digest = c25.Recorder()
    try:
        (tmp_path / "nf").write_bytes(b"machine a.example login us password pw\n")
        to = f"::127.0.0.1:{digest.sock.getsockname()[1]}"
        for args in (["--digest"], ["--anyauth"], ["--digest", "-L"]):
            url = "http://a.example/dr" if "-L" in args else "http://a.example/digest"
            words = ["--netrc-file", "nf", "--connect-to", to, "-D", "-", *args, url]
            want = _netrc_run("curl", tmp_path, *words)
            theirs = c25._masked(digest.take())
            got = _netrc_run("ours", tmp_path, *words)
            assert got == want, args
            assert c25._masked(digest.take()) == theirs, args
            assert any(b'Authorization: Digest username="us"' in h for h in theirs)
    finally:
        digest.sock.close()


def test_netrc_verbose_lines_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl -v: `Couldn't find host H in the FILE file; using defaults` for a host the
    # file lacks (a redirect's too), a missing file, --netrc's own file named "(nil)"
    (tmp_path / "nf").write_bytes(NETRC["n2"])
    (tmp_path / "n8").write_bytes(NETRC["n8"])
    port = server.url.rsplit(":", 1)[1]
    for args in (
        ["--netrc-file", "nf", "-L", f"{server.url}/rl"],
        ["--netrc-file", "nf", "--location-trusted", f"{server.url}/rl"],
        ["--netrc-file", "missing", f"{server.url}/e"],
        ["--netrc-file", "n8", f"{server.url}/e"],
        ["--netrc", f"{server.url}/e"],  # (no .netrc in HOME)
        ["--netrc-optional", "--netrc-file", "nf", f"http://a:b@localhost:{port}/e"],
    ):
        seen = []
        for who in ("curl", "ours"):
            argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run",
                                                    "http", "-w", ""]  # fmt: skip
            env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path))
            p = subprocess.run([*argv, "-s", "-v", "-o", os.devnull, *args], timeout=60,
                               capture_output=True, cwd=tmp_path, env=env)  # fmt: skip
            seen.append([line for line in p.stderr.splitlines() if line.startswith(b"* ")])
        assert seen[1] == seen[0], args
        # (--netrc-optional with the URL's password: the file is not read)
        said = any(b"Couldn't find host" in line for line in seen[0])
        assert said == ("--netrc-optional" not in args)


def test_config_file_comments_and_warnings_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl 7.88.1 passes over config lines starting with / or * (ours: unknown options,
    # exit 2) and warns of an unquoted value with more after it (ours: nothing)
    (tmp_path / "cfg").write_text(
        '# c\n\nuser-agent a b\n--referer r s\n  -e x y # z\n-e "q r" s\n*star line\n'
        f"/slash line\nurl {server.url}/e\n"
    )
    for before in ([], ["-s"]):
        seen = []
        for who in ("curl", "ours"):
            argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run",
                                                    "http", "-w", ""]  # fmt: skip
            server.heads.clear()
            env = dict(os.environ, PYTHONPATH=str(REPO))
            p = subprocess.run([*argv, *before, "-o", os.devnull, "-K", "cfg"], timeout=60,
                               capture_output=True, cwd=tmp_path, env=env)  # fmt: skip
            said = [line for line in p.stderr.splitlines() if line.startswith(b"Warning: ")]
            seen.append((p.returncode, said, list(server.heads)))
        assert seen[1] == seen[0], before
        assert len(seen[0][1]) == (0 if before else 6)


def test_etag_compare_with_parallel_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl -Z makes transfers ahead of their sends, each adding its If-None-Match to the
    # one -H list: the fields each request carries compared (the requests sorted: -Z's
    # order is the server's)
    files = {"tag": b'"abc"\n'}
    # (up to 2 x --parallel-max transfers: made before any is sent, a fixed count; past
    # that curl makes them as its poll loop turns, a count that depends on the timing)
    for extra, paths in (([], ["e", "none", "w"]), (["--parallel-max", "1"], ["e", "none"])):
        args = ["-Z", *extra, "--etag-compare", "tag", *["-o", "/dev/null"] * len(paths),
                *[f"URL/{p}" for p in paths]]  # fmt: skip
        here = tmp_path / "_".join(paths)
        here.mkdir()
        curl, ours = _both(server, here, files, "-w", "", *args)
        assert (ours[0], sorted(ours[2])) == (curl[0], sorted(curl[2])), extra


def test_files_read_as_c_strings_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl reads -H @FILE with strtok(text, "\r\n") and --etag-compare FILE with fgets:
    # a NUL ends the text, a bare CR a -H line (ours failed on both: 56)
    files = {"hfile": b"X-A: a\rX-B: b\r\n\rX-C;\n", "hnul": b"X-A: a\0b\nX-B: 1\n",
             "nul": b"a\0b\nc\n"}  # fmt: skip
    for args in (["-H", "@hfile"], ["-H", "@hnul"], ["--etag-compare", "nul"]):
        here = tmp_path / args[1].strip("@")
        here.mkdir()
        curl, ours = _both(server, here, files, "-w", "%{http_code} %{exitcode}", *args,
                           "-o", "/dev/null", "URL/e")  # fmt: skip
        assert ours == curl, args
