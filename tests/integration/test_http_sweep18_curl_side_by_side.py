"""Session 18's sweep of everyday curl command lines: those `pktlab run http` refused or
sent otherwise before (-K, --url, -q, -N, -#, --ipv4, -H @FILE, --http1.0/-0,
--path-as-is, --stderr), beside curl 7.88.1 against one echoing server (the request's
line, fields and body): the same stdout, files and exit status."""

from __future__ import annotations

from pathlib import Path

from test_http_curl_side_by_side import pytestmark  # noqa: F401
from test_http_options16_curl_side_by_side import UA, both, http, same, tool  # noqa: F401


def test_config_file_and_url_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # ours: "unrecognized arguments: -K" / "--url", exit 2
    (tmp_path / "cfg").write_text(f'# mine\nurl = "{http}/cfg"\n-A "cfg agent"\n'
                                  "header = \"X-Cfg: 1\"\nsilent\n")  # fmt: skip
    for args in (["-K", "cfg"], ["-K", "cfg", f"{http}/b"], ["--url", f"{http}/u", "-o", "f1"],
                 ["-q", "-N", "-#", "--ipv4", f"{http}/a"], ["-K", "-"]):  # fmt: skip
        curl, ours = both(*UA, *args, cwd=tmp_path, stdin=b"-A stdin\n" +
                          f"--url {http}/s\n".encode())  # fmt: skip
        same(curl, ours)
        assert (tmp_path / "f1").exists() == ("f1" in args)
        (tmp_path / "f1").unlink(missing_ok=True)
    assert b"User-Agent: cfg agent\nAccept: */*\nX-Cfg: 1\n" in curl.stdout or "-" in args


def test_header_file_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # ours: -H @FILE was the field "@h" refused ("expected 'NAME: VALUE'"), exit 2
    (tmp_path / "h").write_bytes(b"X-A: 1\r\n\nX-B;\nbad\nAccept: text/x\n")
    curl, ours = both(*UA, "-o", "-", "-H", "@h", "-H", "X-C: 2", f"{http}/p", cwd=tmp_path)
    same(curl, ours)
    assert b"X-A: 1\nX-B: \nAccept: text/x\nX-C: 2\n" in curl.stdout


def test_http1_0_and_path_as_is_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # ours: --http1.0, -0 and --path-as-is unknown, exit 2
    # (not %{size_request}: curl 7.88.1 adds the first URL's to the second's with -0)
    w = "%{http_code} %{num_connects} %{method}\\n"
    for args in (["--http1.0", f"{http}/a", f"{http}/b"], ["-0", "-d", "x=1", f"{http}/a"],
                 ["-0", "-I", f"{http}/a"], ["--path-as-is", f"{http}/a/../b/./c"],
                 [f"{http}/a/../b/./c"]):  # fmt: skip
        curl, ours = both(*UA, "-w", w, *args, cwd=tmp_path)
        same(curl, ours)
        if "-I" not in args:  # the request line the server read
            assert (b" HTTP/1.0\n" in curl.stdout) == ("-0" in args or "--http1.0" in args)


def test_stderr_file_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # ours: --stderr unknown, exit 2; the same file (curl's progress meter off: -s)
    for args, code in (
        (["--no-progress-meter", "-r", "5", f"{http}/p"], 0),
        (["-s", "-S", "http://127.0.0.1:9/"], 7),
    ):
        files = []
        for who in ("curl", "ours"):
            (tmp_path / "e.txt").write_text("old\n")
            out = tool(who, *UA, "--stderr", "e.txt", *args, cwd=tmp_path)
            assert out.returncode == min(code, 1 if who == "ours" else code), out.stderr
            assert out.stderr == b""
            files.append((tmp_path / "e.txt").read_text())
        if code == 0:  # the warning, in the file
            assert files[0] == files[1] and files[0].startswith("Warning: A specified range")
        else:  # the error line: curl's words, ours
            assert files[0].startswith("curl: (7)") and "connection refused" in files[1]


def test_fail_early_and_options_without_effect_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # ours: --fail-early, --basic, --no-keepalive, --tcp-nodelay unknown, exit 2
    w = "%{url} %{http_code}\\n"
    curl, ours = both(*UA, "-w", w, "--fail-early", "http://127.0.0.1:9/", f"{http}/b",
                      cwd=tmp_path)  # fmt: skip
    same(curl, ours, 7)
    assert curl.stdout == b"http://127.0.0.1:9/ 000\n"
    curl, ours = both(*UA, "--basic", "-u", "a:b", "--no-keepalive", "--tcp-nodelay",
                      f"{http}/a", cwd=tmp_path)  # fmt: skip
    same(curl, ours)
