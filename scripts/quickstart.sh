#!/usr/bin/env bash
# README command 1: set up, then run the main job end to end with built-in defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== pktlab decode of a reference session (examples/http_get.frames.hex) =="
.venv/bin/pktlab decode --hex examples/http_get.frames.hex
