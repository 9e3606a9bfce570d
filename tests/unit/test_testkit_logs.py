"""testkit.logs: the events logged while a block runs, its observer always removed."""

from __future__ import annotations

import pytest
from testkit.logs import Events, captured_events, events_while
from twisted.logger import Logger, LogLevel, globalLogPublisher


class Thing:
    log = Logger()  # namespace test_testkit_logs.Thing


class OtherThing:
    log = Logger()


def observers() -> int:
    return len(globalLogPublisher._observers)


def test_collects_the_events_of_the_block_only() -> None:
    log = Logger(namespace="t")
    log.info("before")
    with captured_events() as events:
        log.info("one {n}", n=1)
        log.warn("two")
    log.info("after")
    assert isinstance(events, Events)
    assert events.lines() == ["one 1", "two"]
    assert events.formats() == ["one {n}", "two"]
    assert events.text() == "one 1\ntwo"
    assert events[0]["n"] == 1  # the events themselves


def test_the_observer_goes_when_the_block_raises() -> None:
    before = observers()
    with pytest.raises(RuntimeError, match="boom"), captured_events() as events:
        assert observers() == before + 1
        Logger().info("logged")
        raise RuntimeError("boom")
    assert observers() == before
    assert events.lines() == ["logged"]
    Logger().info("later")
    assert events.lines() == ["logged"]


def test_events_while_removes_its_observer_when_run_raises() -> None:
    before = observers()

    def run() -> None:
        Logger().info("logged")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        events_while(run)
    assert observers() == before
    assert events_while(lambda: Logger().info("x={x}", x=3)).lines() == ["x=3"]


def test_filters() -> None:
    with captured_events() as events:
        Thing().log.info("thing {word}", word="refused")
        OtherThing().log.warn("other refused", rule="r1")
        Thing().log.error("thing failed")
    assert events.lines("refused") == ["thing refused", "other refused"]
    assert events.lines(fmt="refused") == ["other refused"]  # the format, not the field
    assert events.lines(level=LogLevel.warn) == ["other refused"]
    assert events.lines(level=(LogLevel.warn, LogLevel.error)) == ["other refused", "thing failed"]
    assert events.lines(namespace="Thing") == ["thing refused", "other refused", "thing failed"]
    assert events.lines(namespace=".Thing") == ["thing refused", "thing failed"]
    assert events.lines(namespace=("OtherThing", "xyz")) == ["other refused"]
    assert events.lines(has="rule") == ["other refused"]
    assert events.lines("thing", level=LogLevel.error) == ["thing failed"]
    assert events.where(has="rule")[0]["rule"] == "r1"
    assert isinstance(events.where(), Events)


def test_filters_at_capture_keep_only_those_events() -> None:
    with captured_events(level=LogLevel.warn, has="rule") as events:
        Logger().warn("kept", rule="x")
        Logger().warn("no rule")
        Logger().info("not a warning", rule="x")
    assert events.lines() == ["kept"]


def test_an_event_without_a_format_is_matched_as_empty() -> None:
    with captured_events() as events:
        globalLogPublisher({"log_level": LogLevel.info, "log_format": None})
    assert events.lines(fmt="x") == []
    assert events.lines() == [""]
