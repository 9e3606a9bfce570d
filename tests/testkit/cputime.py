"""A pytest plugin that writes each test's wall time and CPU time, to find the tests
that mostly wait (docs/testing.md "Suite time (session 34, suite34)").

`-p testkit.cputime` with `CPUTIME_OUT=PREFIX`: at the end of the run (each xdist worker
for its own tests) `PREFIX.<worker or main>` holds one line a test, tab-separated: wall
seconds, CPU seconds of the test process, CPU seconds of its waited-for children (a
daemon the test kills and reaps counts; one it leaves running does not), the node id.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Generator

import pytest

ROWS: list[tuple[float, float, float, str]] = []


def cpu_seconds() -> tuple[float, float]:
    """(this process's, its waited-for children's) user + system CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    start, (me, kids) = time.monotonic(), cpu_seconds()
    yield
    me_after, kids_after = cpu_seconds()
    ROWS.append((time.monotonic() - start, me_after - me, kids_after - kids, item.nodeid))


def table(rows: list[tuple[float, float, float, str]]) -> str:
    return "".join(f"{w:.2f}\t{me:.2f}\t{kids:.2f}\t{node}\n" for w, me, kids, node in rows)


def pytest_sessionfinish() -> None:
    prefix = os.environ.get("CPUTIME_OUT")
    if prefix:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(f"{prefix}.{worker}", "w") as out:
            out.write(table(ROWS))
