#!/usr/bin/env bash
# README command 1: set up, then run the whole PacketLab system end to end on loopback:
# a broker (twistd pktbroker), two endpoints subscribed to it (twistd pktendpoint in broker
# mode), and an experiment manager (pktlab xpmgr) that publishes one experiment; both
# endpoints connect to it over TLS 1.3 with PPKS certificates, run it (an HTTP GET of a
# local page through each endpoint) and the per-endpoint results are printed. Keys and
# certificates are made once by `pktlab init` in .cache/pktlab-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/system_demo.py --home .cache/pktlab-demo "$@"
