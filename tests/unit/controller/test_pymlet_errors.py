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


def without_this_frame(e: BaseException) -> BaseException:
    tb = e.__traceback__
    assert tb is not None
    return e.with_traceback(tb.tb_next)


def test_the_import_machinerys_frames_are_not_named(tmp_path: Path) -> None:
    """A module the experiment imports that is not there, or a syntax error: the import
    machinery's frozen frames were named as the experiment's own (`(at <frozen
    importlib._bootstrap>:241, in _call_with_frames_removed)`)."""
    bad = tmp_path / "bad.py"
    bad.write_text("async def mlet(session, args)\n    pass\n")
    with pytest.raises(SyntaxError) as e:
        load_mlet(str(bad))
    assert describe_error(without_this_frame(e.value)) == (
        "SyntaxError: expected ':' (bad.py, line 1)"
    )
    imp = tmp_path / "imp.py"
    imp.write_text("import no_such_module_here\n")
    with pytest.raises(ModuleNotFoundError) as m:
        load_mlet(str(imp))
    assert describe_error(without_this_frame(m.value)) == (
        "ModuleNotFoundError: No module named 'no_such_module_here' (at imp.py:1, in <module>)"
    )
