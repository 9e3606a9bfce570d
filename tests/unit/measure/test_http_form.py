"""-F's part parameters and --form-string as curl 7.88.1 sends them, byte for byte but
its random boundaries (each expected body below is what that curl sent to a capturing
server, its boundaries replaced): ;headers= (inline and @FILE), ;encoder= (7bit, 8bit,
binary, base64, quoted-printable), NAME=@a,b (a multipart/mixed part), the content
types curl 7.88 derives, the parameters' spaces, quotes and unknown ones."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest

from packetlab.measure import upload_body, upload_encode, upload_form
from packetlab.measure.upload_body import UploadError
from packetlab.measure.upload_form import FormPart, Forms, parse_form
from packetlab.measure.upload_multipart import multipart

B = "-" * 24 + "8eb7473c0d82f4f0"
S = "-" * 24 + "9cd236c6121230de"
QP_TEXT = (b"hello = w\xc3\xb6rld\tTab \nline2 with a very long line that goes on and on and on "
           b"and on past seventy-six characters for sure yes\n.\nend")  # fmt: skip


def body(args: list[str], warnings: list[str] | None = None) -> bytes:
    parts = [parse_form(a, warnings=warnings) for a in args]
    return b"".join(multipart(parts, B, lambda: S).chunks())


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    (tmp_path / "b.bin").write_bytes(b"B\xe9 line=\nsecond\n")
    (tmp_path / "h.txt").write_bytes(b"X-One: 1\nX-Two: two\n")
    (tmp_path / "q.txt").write_bytes(QP_TEXT)
    (tmp_path / "x.html").write_bytes(b"<p>\n")
    return tmp_path


def test_headers_and_several_files_in_one_part(files: Path) -> None:
    got = body(["a=x;headers=X-A: 1", "b=@a.txt;headers=@h.txt", "c=@a.txt,b.bin"])
    assert (
        got
        == (  # curl 7.88.1 -F 'a=x;headers=X-A: 1' -F 'b=@a.txt;headers=@h.txt' -F c=@a.txt,b.bin
            f'--{B}\r\nContent-Disposition: form-data; name="a"\r\nX-A: 1\r\n\r\nx\r\n'
            f'--{B}\r\nContent-Disposition: form-data; name="b"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\nX-One: 1\r\nX-Two: two\r\n\r\nhello\n\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="c"\r\n'
            f"Content-Type: multipart/mixed; boundary={S}\r\n\r\n"
            f'--{S}\r\nContent-Disposition: attachment; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nhello\n\r\n"
            f'--{S}\r\nContent-Disposition: attachment; filename="b.bin"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"B\xe9 line=\nsecond\n"
        + f"\r\n--{S}--\r\n\r\n--{B}--\r\n".encode()
    )
    # ;type= after the second file is that file's (each file its own parameters)
    part = parse_form("d=@a.txt,b.bin;type=text/x")
    assert [f.type for f in part.files] == [None, "text/x"] and part.name == "d"
    assert [f.name for f in part.files] == [None, None]


def test_encoders_as_curl(files: Path) -> None:
    got = body(["b=x;encoder=base64", "c=@q.txt;encoder=quoted-printable",
                "d=@q.txt;encoder=base64"])  # fmt: skip
    b64 = ("aGVsbG8gPSB3w7ZybGQJVGFiIApsaW5lMiB3aXRoIGEgdmVyeSBsb25nIGxpbmUgdGhhdCBnb2Vz\r\n"
           "IG9uIGFuZCBvbiBhbmQgb24gYW5kIG9uIHBhc3Qgc2V2ZW50eS1zaXggY2hhcmFjdGVycyBmb3Ig\r\n"
           "c3VyZSB5ZXMKLgplbmQ=")  # fmt: skip
    assert (
        got
        == (
            f'--{B}\r\nContent-Disposition: form-data; name="b"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\neA==\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="c"; filename="q.txt"\r\n'
            f"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            "hello =3D w=C3=B6rld\tTab =0Aline2 with a very long line that goes on and on=\r\n"
            " and on and on past seventy-six characters for sure yes=0A.=0Aend\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="d"; filename="q.txt"\r\n'
            f"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
            f"--{B}--\r\n"
        ).encode()
    )
    # curl's sizes: base64 known (Content-Length 391 for d alone), quoted-printable not
    # (the body goes chunked, with Expect), an empty file's 0
    assert multipart([parse_form("d=@q.txt;encoder=base64")], B).length == 391
    qp = multipart([parse_form("c=@q.txt;encoder=quoted-printable")], B)
    assert qp.length is None and qp.expects()
    for name in ("8bit", "binary", "7bit", "BASE64"):
        assert parse_form(f"f=@a.txt;encoder={name}").encoder == name.lower()
    assert b"Content-Transfer-Encoding: 8bit\r\n\r\nhello\n\r\n" in body(["f=@a.txt;encoder=8bit"])


def test_quoted_printable_line_breaks_and_chunk_boundaries() -> None:
    qp = upload_encode.QuotedPrintable()
    # CRLF kept; space before CRLF or at the end encoded; a lone CR encoded; '=' encoded
    assert qp.feed(b"a \r\nb\t\r\nc\rd=e ", True) == b"a=20\r\nb=09\r\nc=0Dd=3De=20"
    # a line of exactly 76 before a CRLF stays; 76 followed by more gets a soft break
    assert upload_encode.QuotedPrintable().feed(b"x" * 76 + b"\r\n", True) == b"x" * 76 + b"\r\n"
    assert upload_encode.QuotedPrintable().feed(b"x" * 77, True) == b"x" * 75 + b"=\r\nxx"
    # fed a byte at a time: the same output (the lookahead waits for the next bytes)
    text = b"ab \r\n" + b"y" * 80 + b" \r\n=\xff\r"
    whole = upload_encode.QuotedPrintable().feed(text, True)
    enc = upload_encode.QuotedPrintable()
    assert (
        b"".join(enc.feed(text[i : i + 1], False) for i in range(len(text))) + enc.feed(b"", True)
        == whole
    )
    b64 = upload_encode.Base64()
    data = bytes(range(256)) * 3
    assert b"".join(b64.feed(data[i : i + 7], False) for i in range(0, len(data), 7)) + b64.feed(
        b"", True
    ) == upload_encode.Base64().feed(data, True)


def test_7bit_checks_the_bytes(files: Path) -> None:
    # curl 7.88 sends the head and stops at the first 8-bit byte (exit 26)
    up = multipart([parse_form("e=@q.txt;encoder=7bit")], B)
    with pytest.raises(UploadError, match=r"byte 0xC3 at offset 9 is not 7-bit"):
        b"".join(up.chunks())
    with pytest.raises(UploadError, match=r"byte 0xC3 at offset 1 is not 7-bit"):
        parse_form("v=d\u00e9j\u00e0;encoder=7bit")  # a value: before anything is sent
    assert b"hello\n" in body(["e=@a.txt;encoder=7bit"])


def test_content_types_names_and_parameters_as_curl(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    got = body(["b=@a.txt;filename=zz", "c=x;filename=f.txt", "d=x;filename=f.bin",
                "e=<x.html", "g=  sp  ", "h=@a.txt;type=text/plain;charset=utf-8",
                'i=v;headers="X-Q: a;b"', "j=v;headers=Content-Type: app/x",
                "k=@a.txt;headers=Content-Disposition: inline",
                "l=@a.txt;headers=Content-Transfer-Encoding: zz;encoder=base64",
                "m=v;Type=text/t;FILENAME=f", "n=v;foo=bar"], warnings)  # fmt: skip
    assert (
        got
        == (  # curl 7.88.1 with these -F
            f'--{B}\r\nContent-Disposition: form-data; name="b"; filename="zz"\r\n'
            f"Content-Type: text/plain\r\n\r\nhello\n\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="c"; filename="f.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\nx\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="d"; filename="f.bin"\r\n\r\nx\r\n'
            f'--{B}\r\nContent-Disposition: form-data; name="e"\r\n'
            f"Content-Type: text/html\r\n\r\n<p>\n\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="g"\r\n\r\nsp\r\n'
            f'--{B}\r\nContent-Disposition: form-data; name="h"; filename="a.txt"\r\n'
            f"Content-Type: text/plain;charset=utf-8\r\n\r\nhello\n\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="i"\r\nX-Q: a;b\r\n\r\nv\r\n'
            f'--{B}\r\nContent-Disposition: form-data; name="j"\r\n'
            f"Content-Type: app/x\r\n\r\nv\r\n"
            f"--{B}\r\nContent-Type: text/plain\r\nContent-Disposition: inline\r\n\r\nhello\n\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="l"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\nContent-Transfer-Encoding: zz\r\n\r\naGVsbG8K\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="m"; filename="f"\r\n'
            f"Content-Type: text/t\r\n\r\nv\r\n"
            f'--{B}\r\nContent-Disposition: form-data; name="n"\r\n\r\nv\r\n'
            f"--{B}--\r\n"
        ).encode()
    )
    assert warnings == ["skip unknown form field: foo=bar"]
    # --form-string: the value as is; `-F =v`: a part without a name; stdin: filename "-"
    assert parse_form("n=@a.txt;type=x/y", literal=True) == FormPart("n", b"@a.txt;type=x/y")
    assert b"Content-Disposition: form-data\r\n\r\nv\r\n" in body(["=v"])
    assert parse_form("s=@-") == FormPart("s", path="-", as_file=True)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    got = b"".join(multipart([FormPart("s", path="-", as_file=True)], B).chunks())
    disposition = 'Content-Disposition: form-data; name="s"; filename="-"'
    assert got == f"--{B}\r\n{disposition}\r\n\r\n\r\n--{B}--\r\n".encode()


def test_headers_file_as_curl_reads_it(files: Path) -> None:
    (files / "h2.txt").write_text("# comment\nX-A: 1\n  continued\n\n#X-No: 2\r\n"
                                  "X-B:   two   \n\tmore\nX-C: " + "c" * 1200 + "\n")  # fmt: skip
    warnings: list[str] = []
    assert upload_form.read_headers_file("h2.txt", warnings) == [
        "X-A: 1  continued", "X-B:   two   \tmore", "X-C: " + "c" * 993,
    ]  # fmt: skip
    assert warnings == ["File h2.txt line 8: header too long (truncated)"]
    # a NUL byte ends the line as curl's C strings (was sent on, NUL and all): curl 7.88.1
    # sent '\r\nX-A: a \r\nX-B: 2\r\n' for these lines (an empty header line first)
    (files / "h3.txt").write_bytes(b"\x00x\nX-A: a \x00b \nX-B: 2\n")
    assert upload_form.read_headers_file("h3.txt", warnings) == ["", "X-A: a ", "X-B: 2"]
    got = body(["a=x;headers=@h3.txt"])
    assert b'name="a"\r\n\r\nX-A: a \r\nX-B: 2\r\n\r\nx\r\n' in got


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("f=@a.txt;encoder=bogus", r";encoder=bogus: not one of curl's encoders"),
        ("f=x;headers=@nosuch", r";headers=@nosuch: No such file or directory"),
        ("f=x;type=bad", r"Illegally formatted content-type field: 'bad'"),
        ("f=@a.txt,nosuch", r"nosuch: No such file or directory"),
        # an empty name, as '' (was ': No such file or directory')
        ("f=@", r"^'': No such file or directory$"),
        ("f=<;type=x/y", r"^'': No such file or directory$"),
        ("f=@a.txt,", r"^'': No such file or directory$"),
    ],
)
def test_bad_parameters_are_one_line_errors(files: Path, arg: str, message: str) -> None:
    with pytest.raises(UploadError, match=message):
        parse_form(arg)


def test_stdin_parts_are_read_whole_as_curl(monkeypatch: pytest.MonkeyPatch) -> None:
    # curl 7.88.1: `printf 'from a pipe\n' | curl -F a=@-` sent Content-Length: 162 (it
    # reads a pipe whole); ours the same when it is at most STDIN_BUFFER bytes
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from a pipe\n")))
    up = multipart([parse_form("a=@-")], "-" * 24 + "b2f4eece0da3bd5f")
    assert up.length == 162 and up.rewindable and not up.expects()
    assert b"".join(up.chunks()).endswith(b'filename="-"\r\n\r\nfrom a pipe\n\r\n' + (
        "--" + "-" * 24 + "b2f4eece0da3bd5f--\r\n").encode())  # fmt: skip
    # past it: those bytes, then the rest as it comes (chunked): memory stays bounded
    monkeypatch.setattr(upload_body, "STDIN_BUFFER", 4)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"0123456789")))
    up = multipart([parse_form("a=<-;encoder=base64")], B)
    assert up.length is None and not up.rewindable
    assert b"\r\n\r\nMDEyMzQ1Njc4OQ==\r\n" in b"".join(up.chunks())


def reference_qp(buf: bytes) -> bytes:
    """curl 7.88's encoder_qp_read over the whole input, a byte at a time (lib/mime.c)."""
    out, pos, i, n = bytearray(), 0, 0, len(buf)

    def eol(j: int) -> bool:
        return j >= n or (j + 2 <= n and buf[j] == 13 and buf[j + 1] == 10)

    while i < n:
        c = buf[i]
        enc, used = bytes((c,)), 1
        if c in (9, 32):
            enc = b"=%02X" % c if eol(i + 1) else enc
        elif c == 13:
            enc, used = (b"\r\n", 2) if eol(i) and i + 1 < n else (b"=0D", 1)
        elif not (0x21 <= c <= 0x7E) or c == 0x3D:
            enc = b"=%02X" % c
        if not enc.endswith(b"\n") and (
            pos + len(enc) > 76 or (pos + len(enc) == 76 and not eol(i + used))
        ):
            enc, used = b"=\r\n", 0
        out += enc
        pos = 0 if enc.endswith(b"\n") else pos + len(enc)
        i += used
    return bytes(out)


def test_quoted_printable_runs_encode_as_byte_by_byte() -> None:
    import random

    rng = random.Random(13)
    alphabet = b"ab =\t\r\n\xff."
    cases = [bytes(rng.randrange(256) for _ in range(3000)),
             bytes(rng.choice(alphabet) for _ in range(3000)),
             b"x" * 75 + b" \r\n" + b"y" * 74 + b"\t\r\n" + b"z" * 200 + b" "]  # fmt: skip
    for data in cases:
        enc = upload_encode.QuotedPrintable()
        got = b"".join(enc.feed(data[k : k + 61], False) for k in range(0, len(data), 61))
        assert got + enc.feed(b"", True) == reference_qp(data)


def nested(args: list[str], warnings: list[str] | None = None) -> bytes:
    """The body of these -F (--form-string: "s:" before) through `Forms`, the boundaries
    B then S1, S2, ... in the order curl draws them."""
    forms = Forms()
    for a in args:
        forms.add(a.removeprefix("s:"), a.startswith("s:"), warnings)
    subs = iter(f"S{i}" for i in range(1, 100))
    return b"".join(multipart(forms.parts, B, lambda: next(subs)).chunks())


def test_nested_multiparts_as_curl(files: Path) -> None:
    # curl 7.88.1 -F x=1 -F 'NAME=(;type=multipart/mixed' -F a=@a.txt -F b=@b.bin -F '=)'
    # -F y=2 (its boundaries replaced)
    got = nested(["x=1", "NAME=(;type=multipart/mixed", "a=@a.txt", "b=@b.bin", "=)", "y=2"])
    assert got == (
        f'--{B}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
        f'--{B}\r\nContent-Disposition: form-data; name="NAME"\r\n'
        "Content-Type: multipart/mixed; boundary=S1\r\n\r\n"
        '--S1\r\nContent-Disposition: attachment; name="a"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nhello\n\r\n"
        '--S1\r\nContent-Disposition: attachment; name="b"; filename="b.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nB\xe9 line=\nsecond\n\r\n--S1--\r\n"
        f'\r\n--{B}\r\nContent-Disposition: form-data; name="y"\r\n\r\n2\r\n--{B}--\r\n'
    ).encode("latin-1")
    # nested twice, a multipart/form-data one (its parts form-data), ;headers= on one,
    # ;filename= and ;encoder= not allowed there (curl's warnings), --form-string's "("
    # a value; an empty one, one without a name (Content-Disposition: form-data alone),
    # ;type=text/plain kept (with its boundary)
    warnings: list[str] = []
    got = nested(["a=(;type=multipart/form-data", "b=1",
                  "c=(;headers=X-H:1;filename=x;encoder=base64", "d=2", "s:e=(", "=)", "=)",
                  "f=(", "=)", "=(;type=text/plain", "g=<a.txt", "=)"], warnings)  # fmt: skip
    assert warnings == ["Field file name not allowed here: x",
                        "Field encoder not allowed here: base64"]  # fmt: skip
    assert (
        got
        == (
            f'--{B}\r\nContent-Disposition: form-data; name="a"\r\n'
            "Content-Type: multipart/form-data; boundary=S1\r\n\r\n"
            '--S1\r\nContent-Disposition: form-data; name="b"\r\n\r\n1\r\n'
            '--S1\r\nContent-Disposition: form-data; name="c"\r\n'
            "Content-Type: multipart/mixed; boundary=S2\r\nX-H:1\r\n\r\n"
            '--S2\r\nContent-Disposition: attachment; name="d"\r\n\r\n2\r\n'
            '--S2\r\nContent-Disposition: attachment; name="e"\r\n\r\n(\r\n--S2--\r\n'
            "\r\n--S1--\r\n"
            f'\r\n--{B}\r\nContent-Disposition: form-data; name="f"\r\n'
            "Content-Type: multipart/mixed; boundary=S3\r\n\r\n--S3--\r\n"
            f"\r\n--{B}\r\nContent-Disposition: form-data\r\n"
            "Content-Type: text/plain; boundary=S4\r\n\r\n"
            '--S4\r\nContent-Disposition: attachment; name="g"\r\n\r\nhello\n\r\n--S4--\r\n'
            f"\r\n--{B}--\r\n"
        ).encode()
    )
    # left open at the end: closed there, as curl's
    assert nested(["a=(", "b=(", "c=1"]) == nested(["a=(", "b=(", "c=1", "=)", "=)"])


def test_unbalanced_and_too_deep_nesting(files: Path) -> None:
    # curl 7.88.1: "Warning: no multipart to terminate!", "option -F: is badly used
    # here", exit 2
    for args in (["=)"], ["a=(", "=)", "=)"]):
        forms = Forms()
        with pytest.raises(UploadError, match=r"^-F/--form '=\)': no multipart to terminate"):
            for a in args:
                forms.add(a)
    forms = Forms()
    forms.add("=)", literal=True)  # --form-string: a part without a name, ")"
    forms.add("b=)")  # a name: a value
    assert [(p.name, p.text) for p in forms.parts] == [(None, b")"), ("b", b")")]
    forms = Forms()
    for _ in range(upload_form.MAX_DEPTH):
        forms.add("a=(")
    with pytest.raises(UploadError, match=r"over 100 NAME=\( open at once"):
        forms.add("a=(")


def qp_fed(data: bytes, sizes: list[int]) -> bytes:
    """`data` through the encoder fed in pieces of `sizes` (cycled), then the end."""
    enc, out, i, k = upload_encode.QuotedPrintable(), [], 0, 0
    while i < len(data):
        out.append(enc.feed(data[i : i + sizes[k % len(sizes)]], False))
        i, k = i + sizes[k % len(sizes)], k + 1
    return b"".join(out) + enc.feed(b"", True)


def test_quoted_printable_edges_as_curl() -> None:
    # the encoder of session 14 (a buffer at a time) against the byte-at-a-time
    # transcription of curl's, over its edge cases fed whole, a byte at a time and in
    # odd pieces (a CRLF, a space before it, an =XX cut between two feeds)
    import random

    rng = random.Random(14)
    pieces = [b"x" * 70, b"y" * 75, b"z" * 76, b" ", b"\t", b"\r\n", b"\r", b"\n", b"=",
              b"\xe9", b".", b"\r\r\n", b" \r\n", b"\x00"]  # fmt: skip
    ends = (b"", b" ", b"=", b"\r\n", b" \r\n", b"\xe9\r\n")
    cases = [b"", b".", b".\r\n", b"From x\r\n", b" ", b"\t\r\n", b"\r", b"\n", b"=" * 40,
             b"\xff" * 30, *(b"a" * n + end for n in range(72, 79) for end in ends)]  # fmt: skip
    cases += [b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    for data in cases:
        want = reference_qp(data)
        assert upload_encode.QuotedPrintable().feed(data, True) == want, data
        assert qp_fed(data, [1]) == want, data
        assert qp_fed(data, [2, 3, 5, 77]) == want, data
    assert reference_qp(b"a" * 75 + b"=") == b"a" * 75 + b"=\r\n=3D"  # no room for =3D
    assert upload_encode.QuotedPrintable().feed(b"a" * 73 + b"=", True) == b"a" * 73 + b"=3D"


def test_quoted_printable_takes_no_python_step_per_byte() -> None:
    # ours took a Python step for about every byte (a regular expression match per run
    # of plain bytes, a loop turn per byte to escape): 5.7 MiB/s of text. Now escaped in
    # C loops, a step per output line at most: counted with a tracer, not timed
    text = b"".join(p.read_bytes() for p in sorted(Path(upload_form.__file__).parents[2]
                                                    .joinpath("docs").glob("*.md")))  # fmt: skip
    for data in (text[: 1 << 16], text.replace(b"\n", b"\r\n")[: 1 << 16],
                 bytes(range(256)) * 256):  # fmt: skip
        steps = 0

        def trace(frame: Any, event: str, _: Any) -> Any:
            nonlocal steps
            if frame.f_code.co_filename != upload_encode.__file__:
                return None
            steps += event == "line"
            return trace

        enc = upload_encode.QuotedPrintable()
        sys.settrace(trace)
        try:
            out = enc.feed(data, False) + enc.feed(b"", True)
        finally:
            sys.settrace(None)
        assert out == reference_qp(data)
        assert steps * 3 < len(data), (steps, len(data))
