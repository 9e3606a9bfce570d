#!/usr/bin/env bash
# README command 2: set up, then run the whole test suite (unit + integration).
#
# The whole suite runs in two passes (docs/testing.md "Suite time (session 22, suite22)"):
#   1. every test not marked `serial` on $PKTLAB_TEST_WORKERS pytest-xdist workers (4 since
#      session 35; 3 before), each test file kept on one worker (module fixtures are
#      started once per file);
#   2. the `serial` tests (they measure time or rates), one at a time, nothing beside them.
# Before pass 1, two `pytest --collect-only` write pytest's rewritten test modules for
# both passes to read (PYTHONDONTWRITEBYTECODE set: each collection rewrote them anew).
# The exit code is pytest's: the first failing pass's, 5 only when neither ran a test.
# Given a path (`bash scripts/test.sh tests/unit/test_x.py`), a -m/-k/-n selection, or
# PKTLAB_TEST_WORKERS=0, it is one plain pytest run with the arguments as given.
# -h/--help: this usage, then pytest's options (which it passes on) once.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    case "$arg" in
        -h | --help)
            # Before session 32 pytest's help came twice (once per pass), this never.
            echo "usage: bash scripts/test.sh [PYTEST_OPTIONS] [PATH ...]: set up .venv, then run the tests"
            sed -n '4,/^# -h/s/^# \{0,1\}//p' scripts/test.sh
            echo
            bash scripts/setup.sh
            exec .venv/bin/python -m pytest --help
            ;;
    esac
done
bash scripts/setup.sh

workers=${PKTLAB_TEST_WORKERS:-4}
plain=0
if [ "$workers" = 0 ]; then plain=1; fi
for arg in "$@"; do
    case "$arg" in
        -m | -m* | -k | -k* | -n | -n* | --numprocesses* | --markexpr* | --dist*) plain=1 ;;
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then plain=1; fi ;;
    esac
done
if [ "$plain" = 1 ]; then
    exec .venv/bin/python -m pytest "$@"
fi

stop_after_failure=0
for arg in "$@"; do
    case "$arg" in -x | --exitfirst | --maxfail*) stop_after_failure=1 ;; esac
done

# pytest's rewritten test modules, written once for the passes' collections to read: with
# PYTHONDONTWRITEBYTECODE set (as on these machines and CI) every collecting process (each
# worker, then pass 2) rewrote every test module's asserts: 35 s of CPU a collection,
# 7 s with these files (docs/testing.md "Suite time (session 35, suite35)").
# Two processes, each half of the files, for the two cores; the tests' own environment
# keeps the variable. Only a cache: its errors are the passes' to report.
mapfile -t files < <(find tests -name 'test_*.py' -not -path '*/__pycache__/*' | sort)
warmers=()
for half in 0 1; do
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest --collect-only -q -p no:cacheprovider \
        $(printf '%s\n' "${files[@]}" | awk -v h="$half" 'NR % 2 == h') >/dev/null 2>&1 &
    warmers+=($!)
done
trap 'kill "${warmers[@]}" 2>/dev/null; exit 130' INT TERM
wait
trap - INT TERM

set +e
.venv/bin/python -m pytest -n "$workers" --dist loadfile -m "not serial" "$@"
rc1=$?
# Interrupted (2), internal error (3), usage error (4), or -x after a failure: no pass 2.
if [ "$rc1" -ge 2 ] && [ "$rc1" -ne 5 ] || { [ "$rc1" = 1 ] && [ "$stop_after_failure" = 1 ]; }; then
    exit "$rc1"
fi
echo "== scripts/test.sh: the serial tests, one at a time =="
.venv/bin/python -m pytest -m serial "$@"
rc2=$?
set -e
for rc in "$rc1" "$rc2"; do
    if [ "$rc" != 0 ] && [ "$rc" != 5 ]; then
        exit "$rc"
    fi
done
if [ "$rc1" = 5 ] && [ "$rc2" = 5 ]; then
    exit 5
fi
exit 0
