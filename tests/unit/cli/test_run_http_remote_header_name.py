"""`pktlab run http -J/--remote-header-name`, `--no-clobber` and `--clobber` as curl
7.88.1: -J's file name from a Content-Disposition header (curl's parse, case by case as
/usr/bin/curl 7.88.1 wrote the file), a file the server names never overwritten, a
redirect's header honoured, a URL without a name fetched; --no-clobber's NAME.1 ...
NAME.99 and its failure; %{filename_effective} the name written. Whole runs over the
scripted endpoint (the same cases side by side with curl in tests/integration)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from test_run_http_curl import parse
from test_run_http_curl import run as run_http_fake

from packetlab.cli import run_http
from packetlab.cli.curl_output import Output, cd_filename
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress

U = "http://192.0.2.80"
W = "[%{http_code}|%{filename_effective}|%{exitcode}]\\n"


@pytest.mark.parametrize(
    ("value", "name"),
    [  # the header's value -> the file curl 7.88.1 -OJ wrote (None: the URL's name)
        (b'attachment; filename="q u.txt"', b"q u.txt"),
        (b"attachment; filename=plain.txt", b"plain.txt"),
        (b"attachment; filename=sp.txt   ", b"sp.txt   "),  # unquoted: spaces kept
        (b"attachment; filename=semi.txt; size=3", b"semi.txt"),
        (b'attachment; filename="semi;in.txt"', b"semi;in.txt"),
        (b"attachment; filename='single.txt'", b"single.txt"),
        (b'attachment; filename="unterminated.txt', b"unterminated.txt"),
        (b"attachment; filename=/etc/passwd2", b"passwd2"),  # the path removed
        (b"attachment; filename=a/b/c.txt", b"c.txt"),
        (b'attachment; filename="a/b"; x=1', b"b"),
        (b"attachment; filename=a\\b.txt", b"b.txt"),
        (b"attachment; filename=dir/", b""),  # "Remote filename has no length!" (23)
        (b"attachment; filename=a\\", b""),
        (b'attachment; filename="dir/"', None),  # quoted: nothing after the / is no name
        (b'attachment; filename="a\\"b.txt"', None),
        (b'attachment; filename=""', b""),
        (b'attachment; filename=""x', b""),
        (b"attachment; filename=", b""),
        (b"attachment; filename*=UTF-8''star.txt", None),  # no RFC 5987 names
        (b"attachment; filename*=UTF-8''star.txt; filename=after.txt", b"after.txt"),
        (b"attachment; FILENAME=upper.txt", None),
        (b"attachment; filename = spaced.txt", None),
        (b"attachment; xfilename=x.txt", None),
        (b"attachment; 1filename=digit.txt", b"digit.txt"),  # what is no letter skipped
        (b"attachment; name=x; filename=second.txt", b"second.txt"),
        (b"attachment;filename=nospace.txt", b"nospace.txt"),
        (b"attachment;;filename=dbl", b"dbl"),
        (b"attachment;\tfilename=tabbed.txt", b"tabbed.txt"),
        (b"inline; filename=inline.txt", b"inline.txt"),
        (b"filename=bare.txt", b"bare.txt"),
        (b" filename=lead.txt", b"lead.txt"),
        (b'attachment; foo="bar; filename=inq.txt"', b'inq.txt"'),  # no quoting of others
        (b"attachment", None),
        (b"attachment; filename=..", b".."),  # curl: "Failed to open the file ..: File exists"
        (b"attachment; filename=%41.txt", b"%41.txt"),  # not decoded
        (b"attachment; filename=\xfcn\xef.txt", b"\xfcn\xef.txt"),  # bytes as sent
        (b"attachment; filename=tab\there.txt", b"tab\there.txt"),
    ],
)
def test_the_content_disposition_name_is_curls(value: bytes, name: bytes | None) -> None:
    assert cd_filename(b"Content-Disposition: " + value + b"\r\n") == name


def test_the_header_is_found_as_curl_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    def opened(block: bytes) -> str | None:
        out = Output("url", io.BytesIO(), honor_cd=True)
        out.headers(b"HTTP/1.1 200 OK\r\n" + block + b"\r\n")
        if out.file is not None:
            out.file.close()
        return out.written

    assert opened(b"content-disposition: attachment; filename=lower\r\n") == "lower"
    assert opened(b"CONTENT-DISPOSITION:attachment; filename=upper\r\n") == "upper"
    # curl: "Content-disposition:" at the line's start, no space before the colon
    assert opened(b"Content-Disposition :attachment; filename=spcolon\r\n") is None
    assert opened(b"X-Content-Disposition: attachment; filename=x\r\n") is None
    # no file name: the URL's file, opened at the header (not overwritten later)
    assert opened(b"Content-Disposition: attachment\r\n") == "url"


def serve(target: str) -> bytes:
    """/NAME?cd=VALUE...: each cd a Content-Disposition header; code=N, loc=L, empty=1,
    times=N (the body N times)."""
    query = parse_qs(urlsplit(target).query, keep_blank_values=True, encoding="latin-1")
    head = [(b"Content-Disposition", v.encode("latin-1")) for v in query.get("cd", [])]
    head += [(b"Location", v.encode()) for v in query.get("loc", [])]
    body = b"" if "empty" in query else f"body of {target}\n".encode()
    body *= int(query.get("times", ["1"])[0])
    code = int(query.get("code", ["200"])[0])
    lines = b"".join(k + b": " + v + b"\r\n" for k, v in head)
    return (f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n".encode() + lines
            + b"\r\n" + body)  # fmt: skip


def run(*argv: str) -> tuple[int, bytes, str, list[dict[str, Any]]]:
    code, _, raw, err, records = run_http_fake(
        *argv, handler=lambda method, target, headers, body: serve(target)
    )
    return code, raw, err, [r for r in records if r["type"] == "http"]


def listing(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


CD = "?cd=attachment;%20filename="


def test_J_names_the_file_as_the_server_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, raw, err, records = run("-w", W, "-J", "-O", "-O", "-O", f"{U}/x{CD}%22a%20b.txt%22",
                                  f"{U}/y{CD}/etc/passwd2", f"{U}/nocd")  # fmt: skip
    assert (code, err) == (0, "")
    assert raw.decode().splitlines() == ["[200|a b.txt|0]", "[200|passwd2|0]", "[200|nocd|0]"]
    assert listing(tmp_path) == ["a b.txt", "nocd", "passwd2"]
    assert (tmp_path / "a b.txt").read_bytes().startswith(b"body of /x?cd=")
    assert [r["output"] for r in records] == ["a b.txt", "passwd2", "nocd"]
    # a name that is no UTF-8: its bytes as sent, in the file system and the write-out
    # (was: "'utf-8' codec can't encode character", exit 2)
    code, raw, _, _ = run("-w", W, "-OJ", f"{U}/b{CD}%FCn%EF.txt")
    assert code == 0 and raw == b"[200|\xfcn\xef.txt|0]\n" and os.path.exists(b"\xfcn\xef.txt")
    # -J without -O: nothing (as curl: no warning); the body where it goes (stdout)
    code, raw, err, _ = run("-w", W, "-J", f"{U}/z{CD}z.txt")
    assert (code, err) == (0, "") and raw.startswith(b"body of /z") and raw.endswith(b"[200||0]\n")
    assert "z.txt" not in os.listdir(tmp_path)
    # --remote-name-all is -O too
    code, _, _, _ = run("-J", "--remote-name-all", f"{U}/z{CD}all.txt")
    assert code == 0 and (tmp_path / "all.txt").exists()


def test_J_never_overwrites_a_file_the_server_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"old")
    (tmp_path / "nocd").write_bytes(b"old")
    code, raw, err, records = run("-w", W, "-J", "-O", "-O", f"{U}/x{CD}a.txt", f"{U}/nocd")
    assert code == 1  # ours: some URL failed; curl exits with the last one's (0)
    assert raw.decode().splitlines() == ["[200|a.txt|23]", "[200|nocd|0]"]
    why = ("Failed to open the file a.txt: File exists (-J does not overwrite a file the "
           "server named: --clobber does)")  # fmt: skip
    assert err.splitlines() == [f"pktlab run http: {U}/x{CD}a.txt: {why}"]
    assert records[0]["error"] == why and records[0]["exitcode"] == 23
    assert records[0]["status"] == 200  # curl's %{http_code}: the response came
    # curl's %{size_header}: the header lines before the refused one (body: none)
    body = f"body of /x{CD}a.txt\n"
    before = f"HTTP/1.1 200 X\r\nContent-Length: {len(body)}\r\n"
    assert (records[0]["header_size"], records[0]["body_len"]) == (len(before), 0)
    assert (tmp_path / "a.txt").read_bytes() == b"old"  # kept
    assert (tmp_path / "nocd").read_bytes().startswith(b"body of /nocd")  # the URL's name: as -O
    code, raw, _, _ = run("-w", W, "--clobber", "-OJ", f"{U}/x{CD}a.txt")
    assert code == 0 and (tmp_path / "a.txt").read_bytes().startswith(b"body of /x")


def test_J_with_a_url_without_a_name_and_redirects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # curl -J fetches a URL without a file name: the header may name it
    code, raw, _, _ = run("-w", W, "-OJ", f"{U}/{CD}slash.txt")
    assert code == 0 and raw == b"[200|slash.txt|0]\n" and listing(tmp_path) == ["slash.txt"]
    code, raw, _, records = run("-w", W, "-J", "-O", "-O", f"{U}/", f"{U}/?cd=attachment")
    assert code == 1 and raw == b"[200||23]\n[200||23]\n"
    assert [r["error"] for r in records] == [
        "Remote filename has no length! (no file name in the URL nor in a "
        "Content-Disposition header)",
    ] * 2  # curl: "Remote filename has no length!", 23
    assert not any("output" in r for r in records)  # no file written, none named
    # curl 7.88 takes the name from any response's header: a followed redirect's too
    code, raw, _, _ = run(
        "-w", W, "-L", "-OJ", f"{U}/r?code=302&loc=/final&cd=a;filename=fromredir"
    )
    assert code == 0 and raw == b"[200|fromredir|0]\n"
    assert (tmp_path / "fromredir").read_bytes() == b"body of /final\n"
    # a 404's too
    code, raw, _, _ = run("-w", W, "-OJ", f"{U}/r?code=404&cd=a;filename=from404&empty=1")
    assert code == 0 and raw == b"[404|from404|0]\n" and (tmp_path / "from404").read_bytes() == b""
    # a second header with a name after the URL's file was opened: curl's 23
    code, raw, _, records = run("-w", W, "-OJ", f"{U}/two?cd=attachment&cd=a;filename=second")
    assert code == 1 and raw == b"[200|two|23]\n" and "after two was opened" in records[0]["error"]


def test_J_with_output_dir_as_curl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    url = f"{U}/x{CD}a.txt"
    # curl 7.88: the file in DIR, %{filename_effective} without it (but DIR/NAME.N)
    assert run("-w", W, "--output-dir", "d", "-J", "-O", "-O", url, f"{U}/nocd")[1] == (
        b"[200|a.txt|0]\n[200|d/nocd|0]\n"
    )
    code, raw, err, _ = run("-w", W, "--output-dir", "d", "-OJ", url)
    assert code == 1 and "Failed to open the file d/a.txt: File exists" in err
    assert raw == b"[200|a.txt|23]\n"
    assert run("-w", W, "--output-dir", "d", "--no-clobber", "-OJ", url)[1] == (
        b"[200|d/a.txt.1|0]\n"
    )
    assert listing(tmp_path) == ["d", "d/a.txt", "d/a.txt.1", "d/nocd"]
    code, _, _, _ = run("-w", W, "--output-dir", "e", "--create-dirs", "-OJ", url)
    assert code == 0 and (tmp_path / "e/a.txt").exists()


@pytest.mark.parametrize(
    "argv", [["-i", "-OJ"], ["-I", "-OJ"], ["-J", "-i"], ["-J", "-i", "-o", "x"]]
)
def test_J_with_i_or_I_is_refused_as_curl(argv: list[str]) -> None:
    # curl: "showing headers and --remote-header-name cannot be combined", exit 2
    with pytest.raises(RunError, match="showing headers and --remote-header-name cannot be"):
        run_http.experiment(parse(*argv, f"{U}/x"), lambda r: None, Progress())
    try:  # turned off again: not refused for it
        run_http.experiment(parse(*argv, "--no-remote-header-name", f"{U}/x"), lambda r: None,
                            Progress())  # fmt: skip
    except RunError as e:
        assert "--remote-header-name" not in str(e)


def test_no_clobber_numbers_the_file_as_curl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_bytes(b"old")
    (tmp_path / "d").mkdir()
    code, raw, err, records = run("-w", W, "--no-clobber", "-o", "f", "-o", "f", "-O", "-o", "d",
                                  f"{U}/1", f"{U}/2", f"{U}/f", f"{U}/3")  # fmt: skip
    assert (code, err) == (0, "")
    assert raw.decode().splitlines() == ["[200|f.1|0]", "[200|f.2|0]", "[200|f.3|0]", "[200|d.1|0]"]
    assert [r["output"] for r in records] == ["f.1", "f.2", "f.3", "d.1"]
    assert (tmp_path / "f").read_bytes() == b"old"
    assert (tmp_path / "f.2").read_bytes() == b"body of /2\n"
    # an empty body: an empty file, numbered too; -o - is stdout (curl: no file name)
    code, raw, _, _ = run("-w", W, "--no-clobber", "-o", "f", "-o", "-", f"{U}/e?empty=1", f"{U}/o")
    assert code == 0 and raw.endswith(b"[200|f.4|0]\nbody of /o\n[200||0]\n")
    assert (tmp_path / "f.4").read_bytes() == b""
    # --clobber after --no-clobber: the last one wins, as curl
    code, raw, _, _ = run("-w", W, "--no-clobber", "--clobber", "-o", "f", f"{U}/5")
    assert raw == b"[200|f|0]\n" and (tmp_path / "f").read_bytes() == b"body of /5\n"


def test_no_clobber_stops_at_99_as_curl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ["f", *(f"f.{n}" for n in range(1, 99))]:
        (tmp_path / name).write_bytes(b"old")
    code, raw, _, _ = run("-w", W, "--no-clobber", "-O", f"{U}/f")
    assert code == 0 and raw == b"[200|f.99|0]\n"  # curl 7.88's last (its manual: .100)
    code, raw, err, records = run("-w", W, "--no-clobber", "-O", "-O", f"{U}/f", f"{U}/g")
    assert code == 1 and raw == b"[200|f.99|23]\n[200|g|0]\n"  # curl: the last one tried
    why = "Failed to open the file f: File exists (so do f.1 to f.99: --no-clobber)"
    assert records[0]["error"] == why and err == f"pktlab run http: {U}/f: {why}\n"
    assert len(os.listdir(tmp_path)) == 101  # nothing overwritten, nothing more
    code, raw, _, _ = run(
        "-w", W, "--no-clobber", "-J", "-O", "-O", f"{U}/x{CD}f", f"{U}/f?empty=1"
    )
    assert code == 1 and raw == b"[200|f.99|23]\n[200|f.99|23]\n"


def test_a_file_named_dash_is_a_file_as_curl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's `filename=-`, or -O on a URL whose name is `-`: curl 7.88 writes a
    file named "-" (only -o - is stdout). Ours wrote the body to stdout (and, with -J,
    left an empty file "-"): eyes14, side by side with curl."""
    monkeypatch.chdir(tmp_path)
    code, raw, err, records = run("-w", W, "-OJ", f"{U}/x{CD}-")
    assert (code, err, raw) == (0, "", b"[200|-|0]\n")
    assert (tmp_path / "-").read_bytes() == f"body of /x{CD}-\n".encode()
    assert records[0]["output"] == "-"
    (tmp_path / "-").unlink()
    code, raw, err, records = run("-w", W, "-O", f"{U}/-")
    assert (code, err, raw) == (0, "", b"[200|-|0]\n")
    assert (tmp_path / "-").read_bytes() == b"body of /-\n" and records[0]["output"] == "-"
    code, raw, _, _ = run("-w", W, "-o", "-", f"{U}/-")  # -o -: stdout, as curl
    assert code == 0 and raw == b"body of /-\n[200||0]\n"


def test_clobber_never_writes_through_a_link_the_server_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--clobber -J: a server's name that is a symbolic link in the output directory is
    refused (23), not followed out of it (curl 7.88 follows it: a deliberate difference,
    eyes14). A link the user names (-o, -O's URL name) is followed, as curl."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    (tmp_path / "out" / "link").symlink_to(outside)
    code, raw, _, records = run("-w", W, "--clobber", "--output-dir", "out", "-OJ",
                                  f"{U}/x{CD}link")  # fmt: skip
    assert (code, raw) == (1, b"[200|link|23]\n")
    assert outside.read_bytes() == b"keep"
    assert "out/link: a symbolic link" in records[0]["error"], records[0]["error"]
    code, raw, _, _ = run("-w", W, "--clobber", "--output-dir", "out", "-O", f"{U}/link")
    assert code == 0 and outside.read_bytes() == b"body of /link\n"


def test_filename_effective_is_null_for_stdout_as_curl() -> None:
    # curl 7.88: %{json}'s "filename_effective" null, %{filename_effective} empty
    for argv in ([], ["-o", "-"]):
        code, raw, _, _ = run("-w", "%{json}|%{filename_effective}|", *argv, f"{U}/s")
        assert code == 0 and raw.endswith(b"|")
        assert json.loads(raw.split(b"\n", 1)[1][:-2])["filename_effective"] is None


def test_a_write_error_keeps_the_status_as_curl() -> None:
    # curl: %{http_code} 200 with its (23); ours was 000 (the status dropped with the error
    # when a write failed while the body came: here past the file's buffer)
    code, raw, _, records = run("-w", W, "-o", "/dev/full", f"{U}/full?times=10000")
    assert code == 1 and raw == b"[200|/dev/full|23]\n" and records[0]["status"] == 200


def test_help_tells_of_J_and_no_clobber(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    for words in ("-J, --remote-header-name", "--no-clobber", "--clobber", "FILE.99",
                  "-O -J http://10.77.3.2/download?id=7"):  # fmt: skip
        assert words in text, words


def test_J_over_http2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from http_fake import Answer, H2Server

    def named(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        fields = [("content-disposition", 'attachment; filename="h2.txt"')]
        return 200, [*fields, ("content-length", "3")], b"two"

    monkeypatch.chdir(tmp_path)
    code, _, raw, _, _ = run_http_fake("--http2-prior-knowledge", "-w", W, "-OJ", f"{U}/a",
                                       server=lambda: H2Server(named))  # fmt: skip
    assert code == 0 and raw == b"[200|h2.txt|0]\n" and (tmp_path / "h2.txt").read_bytes() == b"two"
