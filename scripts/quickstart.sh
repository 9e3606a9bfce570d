#!/usr/bin/env bash
# README command 1: set up, then run a real PacketLab experiment end to end on loopback.
# Each example starts its own local server, a controller listening on 127.0.0.1, and an
# endpoint in the same process (the `twistd pktendpoint` service) that connects to it
# over TLS 1.3 with PPKS certificates
# (made once by `pktlab init` in .cache/pktlab-demo); the controller drives the endpoint and
# prints what the endpoint measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HOME_DIR=.cache/pktlab-demo
if [ ! -f "$HOME_DIR/endpt.conf" ]; then
    echo "== Demo keys and certificates (pktlab init --home $HOME_DIR) =="
    rm -rf "$HOME_DIR"
    .venv/bin/pktlab init --home "$HOME_DIR" >/dev/null
    echo "initialised $HOME_DIR"
    echo
fi
echo "== HTTP GET through a local endpoint over TLS (examples/http_get.py) =="
.venv/bin/python examples/http_get.py --home "$HOME_DIR"
echo
echo "== DNS query through a local endpoint over TLS (examples/dns_query.py) =="
.venv/bin/python examples/dns_query.py --home "$HOME_DIR"
