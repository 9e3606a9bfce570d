#!/usr/bin/env bash
# README command 1: set up, then run a real PacketLab experiment end to end on loopback.
# Each example starts its own local server, a controller listening on 127.0.0.1, and a real
# `twistd pktendpoint` process that connects to it; the controller drives the endpoint and
# prints what the endpoint measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== HTTP GET through a local endpoint (examples/http_get.py) =="
.venv/bin/python examples/http_get.py
echo
echo "== DNS query through a local endpoint (examples/dns_query.py) =="
.venv/bin/python examples/dns_query.py
