"""curl's .netrc reader (measure/http_netrc.py), each case pinned from what curl 7.88.1
(Debian 12's) sent for it against a loopback server (tests/integration/
test_http_curl27.py::test_netrc_files_read_as_curl compares the two side by side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.measure.http_netrc import Netrc, NetrcError, parse

H = "127.0.0.1"
TWO = "machine 127.0.0.1 login bob password bp\nmachine 127.0.0.1 login alice password ap\n"
THEN = "machine 127.0.0.1 login after password ap2\n"


@pytest.mark.parametrize(
    ("text", "login", "want"),
    [
        # the host's first entry with both, a quoted password with an escaped quote
        (
            "machine other login o password op\nmachine 127.0.0.1 login alice password "
            '"s e\\"cret"\ndefault login dflt password dp\n',
            None,
            ("alice", 's e"cret'),
        ),
        (TWO, None, ("bob", "bp")),
        # the URL's user: its entry; not there: the last password of the host (curl's)
        (TWO, "alice", ("alice", "ap")),
        (TWO, "carol", ("carol", "ap")),
        # a machine after the entry drops its password: the URL's then (Netrc)
        (
            "machine 127.0.0.1 login a password p\nmachine localhost login b password q\n",
            "u",
            ("u", None),
        ),
        # macdef: up to an empty line (one of blanks is not)
        ("macdef init\nmachine 127.0.0.1 login m password mp\n\n" + THEN, None, ("after", "ap2")),
        ("macdef x\nmachine 127.0.0.1 login m password mp\n  \n" + THEN, None, None),
        ("default login d password dp\n", None, ("d", "dp")),
        ("default\n", None, None),  # a default without credentials: none
        ("machine 127.0.0.1 login onlylogin\n", None, ("onlylogin", "")),
        ("machine 127.0.0.1 password onlypw\n", None, (None, "onlypw")),
        ('machine 127.0.0.1 login "a\\tb" password "x\\ny"\n', None, ("a\tb", "x\ny")),
        ("# comment\nmachine 127.0.0.1 login a password p # trailing\n", None, ("a", "p")),
        ("machine 127.0.0.1\n login a\n password\n p\n", None, ("a", "p")),
        ("MACHINE 127.0.0.1 LOGIN a PASSWORD p\n", None, ("a", "p")),
        ("machine 127.0.0.1 login b password bp login a\n", None, ("b", "bp")),
        ('machine 127.0.0.1 login "a"x password p\n', None, ("a", "p")),  # x passed over
        ("machine other login o password op\n", None, None),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_parse_as_curl(text: str, login: str | None, want: object) -> None:
    assert parse(text, H, login) == want


def test_an_unterminated_quote_is_curls_parser_error() -> None:
    for text in ('machine 127.0.0.1 login "unterminated\n', 'machine h password "p\\'):
        with pytest.raises(NetrcError, match=r"^\.netrc parser error"):
            parse(text, H, None)


def test_credentials_with_the_urls_own(tmp_path: Path) -> None:
    f = tmp_path / "nf"
    f.write_text("machine 127.0.0.1 login a password p\nmachine localhost login b password q\n")
    n = Netrc(str(f))
    assert n.credentials(H, None, None) == ("a", "p")
    assert n.credentials(H, "a", "pw") == ("a", "p")  # the file's password wins
    assert n.credentials(H, "u", "pw") == ("u", "pw")  # none for u: the URL's stays
    assert n.credentials("other", None, None) is None
    # --netrc-optional: a URL with a password is not looked up
    assert Netrc(str(f), optional=True).credentials(H, "a", "pw") is None
    assert Netrc(str(f), optional=True).credentials(H, "a", None) == ("a", "p")
    assert Netrc(str(tmp_path / "missing")).credentials(H, None, None) is None  # no error


def test_netrc_is_home_dot_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text("default login d password dp\n")
    assert Netrc().credentials("any.example", None, None) == ("d", "dp")
