"""`pktlab run http -C OFFSET -T FILE` (an upload resumed) as curl 7.88.1 sent it to a
capturing server (pinned here): the file from OFFSET under `Content-Range: bytes
OFFSET-LAST/SIZE`, `-C -` all of it (curl asks the server nothing), nothing left:
curl's 18; -F ignores -C (no Content-Range), as curl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_http_redirects import response
from test_run_http_curl import run


def _seen(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    fields = "".join(f"{k}: {v}\n" for k, v in headers.items() if k.startswith("content-"))
    return response(200, f"{method} {fields}".encode() + body)


def test_upload_resumed_as_curl(tmp_path: Path) -> None:
    f = tmp_path / "ten"
    f.write_bytes(b"0123456789")
    code, _, raw, _, _ = run("-C", "4", "-T", str(f), "-o", "-", "http://192.0.2.80/x",
                             handler=_seen)  # fmt: skip
    assert (code, raw) == (0, b"PUT content-range: bytes 4-9/10\ncontent-length: 6\n456789")
    code, _, raw, _, _ = run("-C", "-", "-T", str(f), "-o", "-", "http://192.0.2.80/x",
                             handler=_seen)  # fmt: skip
    assert raw == b"PUT content-range: bytes 0-9/10\ncontent-length: 10\n0123456789"
    # nothing left to send: curl's 18, "File already completely uploaded", no request
    code, _, raw, _, records = run("-C", "10", "-T", str(f), "-w", "%{http_code} %{exitcode}",
                                   "-o", "-", "http://192.0.2.80/x", handler=_seen)  # fmt: skip
    assert (code, raw) == (1, b"000 18")
    assert records[0]["error"] == "File already completely uploaded"


def test_form_ignores_continue_at_and_the_output_is_appended(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"EXISTING\n")
    code, _, _, _, _ = run("-C", "4", "-F", "a=b", "-o", str(out), "http://192.0.2.80/x",
                           handler=_seen)  # fmt: skip
    text = out.read_bytes()
    assert code == 0 and text.startswith(b"EXISTING\nPOST content-length: ")
    assert b"content-range" not in text


def test_post_resumed_sends_the_datas_first_bytes_as_curl(monkeypatch: Any) -> None:
    # curl 7.88.1 -C 4 -d abcdefghij: `Content-Range: bytes 4-9/10`, then "abcdef" (the
    # postfields' size cut, not their start); it seeks stdin (or reads and drops 4 bytes)
    from packetlab.cli import run_http_experiment as x

    monkeypatch.setattr(x, "_skip_stdin", lambda offset: None)
    code, _, raw, _, _ = run("-C", "4", "-d", "abcdefghij", "-o", "-", "http://192.0.2.80/x",
                             handler=_seen)  # fmt: skip
    form = b"content-type: application/x-www-form-urlencoded\n"
    assert (code, raw) == (0, b"POST content-range: bytes 4-9/10\ncontent-length: 6\n" + form
                           + b"abcdef")  # fmt: skip
    code, _, raw, _, records = run("-C", "10", "-d", "abcdefghij", "-w", "%{exitcode}", "-o",
                                   "-", "http://192.0.2.80/x", handler=_seen)  # fmt: skip
    assert (code, raw, records[0]["error"]) == (1, b"18", "File already completely uploaded")
    monkeypatch.setattr(x, "_skip_stdin", lambda offset: "Could only read 2 bytes from the input")
    code, _, raw, _, _ = run("-C", "4", "-d", "abcdefghij", "-w", "%{exitcode}", "-o", "-",
                             "http://192.0.2.80/x", handler=_seen)  # fmt: skip
    assert raw == b"26"


def test_skip_stdin_reads_and_drops_from_a_pipe(monkeypatch: Any) -> None:
    import os

    from packetlab.cli.run_http_experiment import _skip_stdin

    r, w = os.pipe()
    saved = os.dup(0)
    try:
        os.write(w, b"123")
        os.close(w)
        os.dup2(r, 0)
        assert _skip_stdin(2) is None
        assert _skip_stdin(4) == "Could only read 1 bytes from the input"
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(r)
