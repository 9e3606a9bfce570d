"""`packetlab.controller.local`: `demo_home` and `run_with_local_endpoint`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packetlab.cli.init import init_home
from packetlab.controller.local import demo_home
from packetlab.ppks import PktlabHome


def test_a_tilde_path_already_set_up_is_not_initialised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/security.md's `demo_home("~/.pktlab")`: the `~` home is checked, not a
    directory named `~` (which never held the files, so `pktlab init` ran on every call)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    init_home(PktlabHome.at(tmp_path / ".pktlab"))

    def no_init(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"pktlab init run again: {args}")

    monkeypatch.setattr("packetlab.controller.local.subprocess.run", no_init)
    assert demo_home("~/.pktlab").root == tmp_path / ".pktlab"


def test_run_with_local_endpoint_raises_a_failure_without_logging_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused setup (`ECRTNOHDAT`: examples/monitors/require_monitor.py without the
    monitor) was raised to the caller and also logged with its traceback, so the example
    printed a traceback under its one line; run_once and run_in_process do not log it."""
    from twisted.internet.testing import MemoryReactor

    from packetlab.controller import local

    seen: dict[str, Any] = {}

    class Made(Exception):
        pass

    def controller(experiment: Any, **options: Any) -> None:
        seen.update(options)
        raise Made

    async def experiment(session: Any) -> None:
        return None

    monkeypatch.setattr(local, "Controller", controller)
    d: Any = local.run_with_local_endpoint(MemoryReactor(), experiment, plaintext=True)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(Made)
    assert seen["report_failures"] is False
