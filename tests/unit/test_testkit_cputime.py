from __future__ import annotations

from pathlib import Path

import pytest
from testkit import cputime


def test_table_is_one_tab_separated_line_a_test() -> None:
    rows = [(1.234, 0.5, 2.0, "tests/x.py::test_a"), (0.0, 0.0, 0.0, "tests/x.py::test_b[1]")]
    assert cputime.table(rows) == (
        "1.23\t0.50\t2.00\ttests/x.py::test_a\n0.00\t0.00\t0.00\ttests/x.py::test_b[1]\n"
    )


def test_cpu_seconds_grow_with_work() -> None:
    me, kids = cputime.cpu_seconds()
    sum(i * i for i in range(200_000))
    me_after, kids_after = cputime.cpu_seconds()
    assert me_after >= me and kids_after >= kids


def test_the_file_is_named_by_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cputime, "ROWS", [(2.0, 1.0, 0.0, "t::x")])
    monkeypatch.setenv("CPUTIME_OUT", str(tmp_path / "run"))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    cputime.pytest_sessionfinish()
    assert (tmp_path / "run.gw1").read_text() == "2.00\t1.00\t0.00\tt::x\n"
    monkeypatch.delenv("CPUTIME_OUT")
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    cputime.pytest_sessionfinish()  # not asked: nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.gw1"]
