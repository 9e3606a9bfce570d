"""curl 7.88's parallel progress meter (-Z): its columns and numbers as curl 7.88.1
drew them (captured on stderr, off a terminal and through `script`), and whole
`pktlab run http -Z -w` runs over the scripted endpoint: when it is drawn (not with -s,
--no-progress-meter, the table, or a body to stdout on a terminal)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from test_http_redirects import echo
from test_run_http_upload import Slow, run

from packetlab.cli.curl_meter import HEADER, Meter, Transfer, max5data, time2str


def test_columns_as_curl() -> None:
    assert [max5data(n) for n in (0, 60000, 99999, 100000, 116 * 1024 + 10, 390 * 1024 + 500,
                                  50 * (1 << 20) + 300000, 5000 * (1 << 20))] == [
        "    0", "60000", "99999", "  97k", " 116k", " 390k", "50.2M", "5000M"]  # fmt: skip
    assert [time2str(s) for s in (0, 3, 61, 3600 * 100)] == [
        "--:--:--", " 0:00:03", " 0:01:01", "  4d 04h"]  # fmt: skip


class Fixed(Transfer):
    def __init__(self) -> None:
        super().__init__()
        self.now, self.total = 0, 0

    def dlnow(self) -> int:
        return self.now

    def dltotal(self) -> int:
        return self.total


def test_two_quick_transfers_as_curl_drew_them() -> None:
    # curl 7.88.1 -Z -o /dev/null -o /dev/null URL URL (2 bytes each), its stderr
    out = io.StringIO()
    meter = Meter(out, 100.0)
    a, b = Fixed(), Fixed()
    meter.add(a)
    meter.add(b)
    meter.draw(100.0)
    a.now = a.total = b.now = b.total = 2
    meter.draw(100.001)  # within half a second: not drawn
    meter.done(a)
    meter.done(b)
    meter.draw(100.005, final=True)
    assert out.getvalue() == (
        HEADER + "\r--  --      0     0     2     2  --:--:-- --:--:-- --:--:--     0      "
        "\r100 --      4     0     2     0  --:--:-- --:--:-- --:--:--   800     \n"
    )


class Hop:
    sent: int | None = None
    uploaded = body_len = 0
    headers: list[tuple[str, str]] = []


def test_an_uploads_size_is_known_once_its_request_went_out() -> None:
    # curl 7.88.1 -Z -T 'f[1-3]' -o /dev/null URL/ (2 bytes each): its first line says
    # -- for UL% (its xferinfo has no upload size while connecting); ours said 0
    out = io.StringIO()
    meter = Meter(out, 100.0)
    xfers = [Transfer(2) for _ in range(3)]
    for t in xfers:
        meter.add(t)
        t.follow(Hop())
    meter.draw(100.0)
    for t in xfers:
        t.hop.sent, t.hop.uploaded = 1, 2
    assert meter.line(100.6).startswith("\r--  100     0     6     3     3")
    for t in xfers:
        meter.done(t)
    meter.draw(100.7, final=True)
    assert out.getvalue().startswith(
        HEADER + "\r--  --      0     0     3     3  --:--:-- --:--:-- --:--:--     0      "
    )
    assert out.getvalue().endswith("\r--  100     0     6     3     0  --:--:-- --:--:-- --:--:--"
                                   "     8     \n")  # fmt: skip


def test_a_slow_download_estimates_as_curl() -> None:
    # curl 7.88.1 drew ' 50 --   195k     0     2     1   0:00:04  0:00:02  0:00:02 99750'
    # for two 200,000-byte bodies at 100 kB/s
    meter = Meter(io.StringIO(), 0.0)
    a, b = Fixed(), Fixed()
    meter.add(a)
    meter.add(b)
    a.total = b.total = 200000
    a.now, b.now = 120000, 80000
    # 200,000 bytes in 2 s: 100,000 B/s (curl's 97k), 400,000 in 4 s, 2 s left
    assert meter.line(2.0) == (
        "\r 50 --   195k     0     2     2   0:00:04  0:00:02  0:00:02   97k      "
    )


def runs(*argv: str, tmp: Path) -> str:
    out = [f"-o{tmp / n}" for n in ("a", "b")]
    code, _, _, err, _ = run(*argv, *out, "http://192.0.2.80/d/1.2", "http://192.0.2.80/d/0",
                             server=lambda: Slow(echo))  # fmt: skip
    assert code == 0, err
    return err


def test_drawn_with_z_and_w_on_stderr(tmp_path: Path) -> None:
    err = runs("-Z", "--parallel-immediate", "-w", "%{url}\\n", tmp=tmp_path)
    assert err.startswith(HEADER) and err.endswith("     \n")
    lines = err[len(HEADER) :].split("\r")[1:]
    assert lines[0] == "--  --      0     0     2     2  --:--:-- --:--:-- --:--:--     0      "
    assert len(lines) >= 3  # at the start, every half second, at the end
    assert lines[-1].startswith("100 --    ") and "     2     0   " in lines[-1]
    # not with -s, --no-progress-meter, the table, or without -Z
    for argv in (["-s", "-w", "%{url}\\n"], ["--no-progress-meter", "-w", "%{url}\\n"], []):
        assert "DL%" not in runs("-Z", *argv, tmp=tmp_path), argv
    assert "DL%" not in runs("-w", "%{url}\\n", tmp=tmp_path)


class Tty(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_not_drawn_when_a_body_goes_to_a_terminal(tmp_path: Path, monkeypatch: Any) -> None:
    import types

    import test_run_http_curl

    # curl 7.88.1 through `script`: -Z URL URL (bodies to the terminal) draws nothing;
    # with -o for each it does
    fake = types.SimpleNamespace(BytesIO=Tty, StringIO=io.StringIO)
    monkeypatch.setattr(test_run_http_curl, "io", fake)
    code, _, _, err, _ = run("-Z", "-w", "%{url}\\n", "http://192.0.2.80/d/0")
    assert code == 0 and "DL%" not in err
    assert "DL%" in runs("-Z", "-w", "%{url}\\n", tmp=tmp_path)
