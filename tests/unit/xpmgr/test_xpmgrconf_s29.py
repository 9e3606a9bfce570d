"""xpmgr.conf against hostile values (session 29, xpmgr29): each a one-line error naming
the file, the line and the key, checked before the manager listens; none a traceback, a
hang or a read without end."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from packetlab.controller.xpmgrconf import (
    FILE_MAX,
    XpmgrConfigError,
    load_xpmgr_config,
    parse_xpmgr_config,
)

BASE = "EnableExpPublication 0\nControllerPrivkeyPath {key}\nExpExec 1::{cert}::00:\n"
PUB = "BrokerAddr 127.0.0.1\nPubAgentCertPath {cert}\n"
PROXY = "EnableProxyMode 1\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "key").write_text("k")
    (tmp_path / "cert").write_text("c")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    with (tmp_path / "big").open("wb") as f:
        f.truncate(FILE_MAX + 1)  # sparse
    return {k: str(tmp_path / k) for k in ("key", "cert", "dir", "fifo", "big")}


def load(tmp_path: Path, text: str) -> str:
    conf = tmp_path / "x.conf"
    conf.write_text(text)
    with pytest.raises(XpmgrConfigError) as e:
        load_xpmgr_config(conf)
    assert "\n" not in str(e.value)
    return str(e.value).replace(str(tmp_path) + "/", "")


# (the key's line, what it says): a FIFO blocked the start for ever, /dev/zero was read
# until memory ran out, a name too long (OSError) and a NUL byte (ValueError) were
# tracebacks; the publication's and proxy's files were found bad only once listening
@pytest.mark.parametrize(
    ("extra", "line", "says"),
    [
        (
            "ControllerPrivkeyPath {fifo}\n",
            4,
            "ControllerPrivkeyPath: fifo: not a regular file (a FIFO)",
        ),
        (
            "ControllerPrivkeyPath /dev/zero\n",
            4,
            "ControllerPrivkeyPath: /dev/zero: not a regular file",
        ),
        (
            "ControllerPrivkeyPath {big}\n",
            4,
            f"big: {FILE_MAX + 1} bytes, too large for a key or certificate",
        ),
        ("ControllerPrivkeyPath " + "x" * 5000 + "\n", 4, "ControllerPrivkeyPath: xxxx"),
        ("ControllerPrivkeyPath a\0b\n", 4, "ControllerPrivkeyPath: the line holds a NUL byte"),
        (
            "EnableExpPublication 1\n" + PUB + "BrokerCertRootPath {fifo}\n",
            7,
            "BrokerCertRootPath: fifo: not a regular",
        ),
        (
            "EnableExpPublication 1\n" + PUB.replace("{cert}", "/nonexistent"),
            6,
            "PubAgentCertPath: /nonexistent: No such file",
        ),
        (
            PROXY + "BacklogConnAgentCertPath {dir}\n",
            5,
            "BacklogConnAgentCertPath: dir: Is a directory",
        ),
        (
            PROXY + "ProxyCertRootPath /nonexistent\n",
            5,
            "ProxyCertRootPath: /nonexistent: No such file",
        ),
        ("ProgramDirPath {fifo}\n", 4, "ProgramDirPath: fifo: Not a directory"),
        ("ExpExec 0:s:{fifo}:::\n", 4, "ExpExec EXPPRIVCHAIN_PATH: fifo: not a regular file"),
        (
            "ExpExec 0:s:{cert}:/dev/zero::\n",
            4,
            "ExpExec TRUSTEDEOP_PATH: /dev/zero: not a regular",
        ),
    ],
    ids=lambda v: v if isinstance(v, int) else str(v)[:40],
)
def test_a_file_no_key_can_be_is_named_with_its_line(
    tmp_path: Path, files: dict[str, str], extra: str, line: int, says: str
) -> None:
    text = BASE.format(**files) + extra.format(**files)
    got = load(tmp_path, text)
    assert got.startswith(f"x.conf:{line}: "), got
    assert says in got, got
    assert len(got) < 400, got


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("ProgramDirPath", "ProgramDirPath '': empty"),  # was the current directory
        ("ResultsPath", "ResultsPath '': empty"),  # was the default file, silently
        ("BrokerAddr 127.0.0.1:99999", "PORT 1..65535"),  # all four were found only
        ("BrokerAddr 127.0.0.1:-1", "PORT 1..65535"),  # when publishing
        ("BrokerAddr ::::", "([IPv6]:PORT for an IPv6 address)"),
        ("BrokerAddr [fe80::1]:5", "the link-local address fe80::1 needs its interface"),
        ("BrokerAddr " + "h" * 300, "a host of 300 characters (at most 253)"),
        ("PubControllerAddr " + "x" * 300, "300 characters (an xdescr value holds at most 255)"),
        ("PubLocation a," + "x" * 300, "300 characters (an xdescr value holds at most 255)"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_values_found_bad_only_later_are_refused_at_their_line(line: str, says: str) -> None:
    with pytest.raises(XpmgrConfigError) as e:
        parse_xpmgr_config("EnableExpPublication 0\nControllerPrivkeyPath k\n" + line + "\n"
                           "ExpExec 1::c:::\n", "x.conf")  # fmt: skip
    assert str(e.value).startswith(f"x.conf:3: {line.split()[0]} "), str(e.value)
    assert says in str(e.value)


def test_a_huge_value_is_cut_in_the_error() -> None:
    with pytest.raises(XpmgrConfigError) as e:
        parse_xpmgr_config("EnableExpPublication 0\nPubCountry " + "X" * 100_000 + "\n")
    assert len(str(e.value)) < 300 and "(100000 characters)" in str(e.value)


def test_a_config_that_is_no_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for path, says in ((tmp_path / "fifo", "not a regular file (a FIFO)"),
                       (Path("/dev/zero"), "not a regular file")):  # fmt: skip
        with pytest.raises(XpmgrConfigError, match=r"cannot read .*: " + re.escape(says)):
            load_xpmgr_config(path)
