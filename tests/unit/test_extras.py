"""packetlab.extras: a module of an optional extra that cannot be imported is one line
naming what to install; `pktlab compare` checks for what its measurement needs before
the runs, and its set measurements (C3 only) need none of it. The imports are refused
through sys.modules (a None entry: `import` raises ModuleNotFoundError); end to end, in
a real process: tests/integration/test_compare_without_analysis.py."""

from __future__ import annotations

import sys
import types

import pytest
from test_cli_compare import parse, samples

from packetlab import extras
from packetlab.cli.compare import SPECS, check_extra, criteria
from packetlab.cli.run import RunError
from packetlab.extras import ANALYSIS, MissingExtra, require
from packetlab.measure.congruence import c2

HINT = "(pip install 'packetlab[analysis]')"


@pytest.fixture
def no_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "scipy"] + ["scipy"]:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_names_the_missing_package_and_the_extra(no_scipy: None) -> None:
    with pytest.raises(MissingExtra) as e:
        require(ANALYSIS, "scipy.stats")
    assert str(e.value) == f"scipy is not installed {HINT}"
    assert isinstance(e.value, ImportError)


def test_require_says_a_broken_package_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ImportError with no module name: scipy is there, one of its libraries is not."""

    def import_module(name: str) -> object:
        raise ImportError("libgfortran.so.5: cannot open shared object file")

    monkeypatch.setattr(extras, "importlib", types.SimpleNamespace(import_module=import_module))
    with pytest.raises(MissingExtra) as e:
        require(ANALYSIS, "scipy.stats")
    assert str(e.value) == (
        f"scipy.stats cannot be imported: libgfortran.so.5: cannot open shared object file {HINT}"
    )


def test_c2_without_scipy_raises_missing_extra(no_scipy: None) -> None:
    with pytest.raises(MissingExtra, match="scipy is not installed"):
        c2([1.0, 2.0], [1.0, 2.0])


def test_compare_checks_what_its_measurement_needs(no_scipy: None) -> None:
    """Failed before: there was no check, the runs went ahead and C2 raised at the end."""
    with pytest.raises(RunError, match=r"^scipy is not installed \(pip install"):
        check_extra(SPECS["ping"], None)
    check_extra(SPECS["dns"], None)  # C3 only: no scipy
    check_extra(SPECS["http"], None)


def test_compare_plot_needs_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RunError, match=r"^matplotlib is not installed \(pip install"):
        check_extra(SPECS["traceroute"], "x.png")
    check_extra(SPECS["traceroute"], None)


def test_a_set_measurements_criteria_need_no_scipy(no_scipy: None) -> None:
    a = parse("dns", "--server", "127.0.0.1:53", "a.test")
    out = criteria(SPECS[a.measurement], samples([[]], [[("a", 1)]]), samples([[]], [[("a", 1)]]))
    assert (out["c3"], out["c3_holds"], out["c2_p"]) == (1.0, True, None)
