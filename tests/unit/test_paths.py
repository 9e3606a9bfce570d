"""File names as operators write them: `~` expanded, bad ones a one-line ValueError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packetlab.paths import config_text, expand_path, home_dir, pktlab_home


def test_home_and_plain_names() -> None:
    assert expand_path("~/x") == Path.home() / "x"
    assert expand_path("/etc/pktlab") == Path("/etc/pktlab")
    assert expand_path(Path("rel/a")) == Path("rel/a")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("~nosuchuser8/x", "cannot expand '~nosuchuser8': there is no user 'nosuchuser8'"),
        ("~\x00", "a file name cannot contain a NUL byte"),  # was a bare ValueError
        ("/tmp/a\x00b", "a file name cannot contain a NUL byte"),
    ],
)
def test_a_name_that_cannot_be_a_file_is_one_line(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_path(value)


def test_no_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr("os.path.expanduser", lambda p: p)  # as with no passwd entry
    with pytest.raises(ValueError, match="cannot expand '~': this process has no home"):
        expand_path("~/x")


def test_config_text_names_the_line_of_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "x.conf"
    p.write_bytes("A é\n".encode() + b"B 1\r\nC \xc3\n")
    with pytest.raises(ValueError, match=r"x\.conf:3: not UTF-8 text \(byte 0xc3\)$"):
        config_text(p)
    p.write_bytes("A é\n".encode())
    assert config_text(p) == "A é\n"
    with pytest.raises(OSError):
        config_text(tmp_path / "none")


def test_the_pktlab_home_expands_a_tilde_in_pktlab_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`PKTLAB_HOME=~/demo` set where no shell expands it (systemd's Environment=, docker's
    -e) was a directory named `~` under the current one (session 24)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PKTLAB_HOME", "~/demo")
    assert pktlab_home() == tmp_path / "demo"
    monkeypatch.setenv("PKTLAB_HOME", "/srv/pktlab")
    assert pktlab_home() == Path("/srv/pktlab")
    monkeypatch.setenv("PKTLAB_HOME", "")  # empty: unset
    assert pktlab_home() == tmp_path / ".pktlab"


def test_an_empty_home_is_the_password_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    """`env HOME= pktlab init` (a service manager's start) wrote /.pktlab: Path.home()
    made the empty $HOME the root directory (session 24)."""
    import pwd

    monkeypatch.delenv("PKTLAB_HOME", raising=False)
    monkeypatch.setenv("HOME", "")
    entry = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert home_dir() == entry
    assert pktlab_home() == entry / ".pktlab" != Path("/.pktlab")
    monkeypatch.delenv("HOME")
    assert home_dir() == entry
