"""Python mlets (`packetlab.controller.pymlet`): how an mlet's own error is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from ctl_fakes import Rig
from twisted.internet.defer import Deferred

from packetlab.controller.pymlet import describe_error, load_mlet

MLET = """\
from packetlab.controller import read_time


def pick(args):
    return args[0]


async def mlet(session, args):
    await read_time(session)
    print(pick(args))
"""


def test_an_mlets_own_error_names_its_line(tmp_path: Path) -> None:
    # `pktlab xpmgr exp.py` with a bug in exp.py said only "mlet exp.py: IndexError: list
    # index out of range" (stderr, no traceback): not where.
    path = tmp_path / "exp.py"
    path.write_text(MLET)
    fn = load_mlet(str(path))
    rig = Rig()
    with pytest.raises(IndexError) as e:
        rig.run(Deferred.fromCoroutine(fn(rig.session, [])))
    assert describe_error(e.value) == ("IndexError: list index out of range (at exp.py:5, in pick)")


def test_an_error_from_packetlab_alone_is_its_message() -> None:
    with pytest.raises(ImportError) as e:
        load_mlet("packetlab.wire:no_such_function")
    tb = e.value.__traceback__
    assert tb is not None
    error = e.value.with_traceback(tb.tb_next)  # without this test's own frame
    assert describe_error(error) == (
        "ImportError: packetlab.wire has no function no_such_function(session, args)"
    )
