"""`packetlab.tapoptions`: the twistd plugins' one-line option errors and the notice before
going to the background, under twistd (options with a parent) and elsewhere (none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from packetlab.tapoptions import TapOptions, tap_service


class Opts(TapOptions):
    tapname = "pktdemo"
    optParameters = [["count", None, "1", "A count."]]

    def postOptions(self) -> None:
        if not str(self["count"]).isdigit():
            raise usage.UsageError(f"--count: expected a count, got {self['count']!r}")


def under_twistd(**parent: Any) -> Opts:
    o = Opts()
    o.parent = usage.Options()  # twistd's ServerOptions, set before parsing a sub-command
    o.parent.update(parent)
    return o


def test_outside_twistd_errors_raise_as_always() -> None:
    with pytest.raises(usage.UsageError, match="--count: expected a count, got 'x'"):
        Opts().parseOptions(["--count", "x"])
    with pytest.raises(usage.UsageError, match="unexpected argument 'a b'"):
        Opts().parseOptions(["a", "b"])


def test_under_twistd_an_error_is_one_line_and_a_pointer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as e:
        under_twistd().parseOptions(["--count", "x"])
    out = capsys.readouterr()
    assert e.value.code == 1 and out.out == ""
    assert out.err.splitlines() == [
        "(twistd pktdemo --help lists the options)",
        "twistd pktdemo: --count: expected a count, got 'x'",
    ]


def test_a_message_of_several_lines_becomes_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        under_twistd().fail(ValueError("first\n  second\n"))
    assert capsys.readouterr().err.splitlines()[-1] == "twistd pktdemo: first second"


@tap_service
def make(options: Opts) -> str:
    if options["count"] == "0":
        raise usage.UsageError("count 0: nothing to serve")
    return "service"


def test_make_service_errors_are_option_errors(capsys: pytest.CaptureFixture[str]) -> None:
    opts = Opts()
    opts.parseOptions(["--count", "0"])
    with pytest.raises(usage.UsageError):  # in-process: the caller handles it
        make(opts)
    opts.parent = under_twistd(nodaemon=True).parent
    with pytest.raises(SystemExit):
        make(opts)
    assert capsys.readouterr().err.endswith("\ntwistd pktdemo: count 0: nothing to serve\n")


def test_going_to_the_background_is_announced(capsys: pytest.CaptureFixture[str]) -> None:
    assert make(under_twistd(nodaemon=True)) == "service"
    assert capsys.readouterr().err == ""  # -n: stays here, nothing to say
    assert make(under_twistd(nodaemon=False, logfile="/var/log/d.log", pidfile="d.pid",
                             rundir="/srv")) == "service"  # fmt: skip
    assert capsys.readouterr().err == (
        "pktdemo: going to the background (twistd without -n): log in /var/log/d.log, pid in "
        "/srv/d.pid; use `twistd -n pktdemo ...` to stay in the foreground\n"
    )
    make(under_twistd(nodaemon=False, pidfile=""))
    err = capsys.readouterr().err
    assert f"log in {Path.cwd() / 'twistd.log'}, pid in none;" in err
