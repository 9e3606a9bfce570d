#!/usr/bin/env bash
# Run some tests N times beside CPU hogs, to reproduce the flakes of a loaded machine
# (docs/testing.md, "Reproducing load flakes").
#
#   bash scripts/under_load.sh [-n RUNS] [-j HOGS] PYTEST-ARGS...
#   bash scripts/under_load.sh -n 10 -j 2 tests/integration/test_throughput_iperf3_options.py -k omit
#
# HOGS busy loops (`while 1: pass`, nice 0; default 2: as many as the 2-core CI box has
# cores) run for the whole loop and are stopped by their PIDs at the end, also on Ctrl-C.
# Each run's output is kept in a temporary directory; a line per run, then the count.
# Exit status: 0 when every run passed.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=5
hogs=2
while getopts "n:j:" opt; do
    case $opt in
        n) runs=$OPTARG ;;
        j) hogs=$OPTARG ;;
        *) echo "usage: $0 [-n RUNS] [-j HOGS] PYTEST-ARGS..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ "$#" -eq 0 ]; then
    echo "usage: $0 [-n RUNS] [-j HOGS] PYTEST-ARGS..." >&2
    exit 2
fi
logs=$(mktemp -d /tmp/under_load.XXXXXX)
pids=()
stop() {
    if [ "${#pids[@]}" -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 "$hogs"); do
    python3 -c 'while 1: pass' &
    pids+=($!)
done
failed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if timeout 1800 .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$logs/run$i.log" 2>&1; then
        verdict=ok
    else
        verdict=FAIL
        failed=$((failed + 1))
    fi
    echo "run $i/$runs: $verdict in $(($(date +%s) - start)) s: $(tail -n 1 "$logs/run$i.log")"
done
echo "$((runs - failed)) of $runs runs passed beside $hogs CPU hogs; logs in $logs"
[ "$failed" -eq 0 ]
