"""File names as operators write them: `~` expanded, bad ones a one-line ValueError."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.paths import expand_path


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
