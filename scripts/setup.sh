#!/usr/bin/env bash
# Idempotent set-up: system packages the tests and demos use, then a virtualenv in .venv
# with packetlab installed (editable, compat mode so twistd sees twisted/plugins).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: iproute2 for namespace testbeds, libpcap0.8 to compile tcpdump capture
# filters (loaded with ctypes), traceroute (Butskoy), scamper and iputils-ping as the native
# baselines that packetlab.measure compares with. The rest, one per line with its reason:
APT_PACKAGES=(
    iproute2 libpcap0.8 traceroute scamper iputils-ping
    iputils-tracepath                 # tracepath: the PMTU baseline beside run traceroute --mtu
    redis-server                      # broker scale-out (--store redis://) and its tests
    clang lld                         # pktlab monitor build: C monitors for wasm32
    proxychains4                      # pktlab wrap: TCP interception for non-SOCKS programs
    curl bind9-dnsutils knot-dnsutils # programs pktlab wrap's tests run unmodified
    netcat-openbsd openssh-client wget # ... and its outside tester's tools, side by side
    gcc                               # pktlab wrap's UDP shim, C mlets in the xpmgr tests
    iperf3                            # pktlab run throughput: the server and native baseline
    tcpdump                           # bench_throughput: native downloads timed from a capture
    nghttp2-server                    # nghttpd: the h2c server of the HTTP/2 curl side-by-side test
    publicsuffix                      # run http: cookies for a public suffix dropped, as curl with libpsl
    faketime                          # clocksync's tests: an endpoint clock off by a known amount
    ftp python3-pyftpdlib             # pktlab wrap's FTP test: ftp (tnftp) against a pyftpdlib server
)
# Installed only when missing.
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.packetlab-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    # dev includes test and analysis (scipy, matplotlib: pktlab compare), so the tests and
    # the README's commands run everything; a user's install may leave analysis out
    .venv/bin/python -m pip install -q --disable-pip-version-check \
        -e ".[dev]" --config-settings editable_mode=compat
    touch "$stamp"
fi

# pktlab wrap's LD_PRELOAD shim (UDP through the endpoint, clock for --fidelity).
.venv/bin/python -m packetlab.wrap.shim >/dev/null || echo "setup: libpktwrap.so not built (no C compiler?)" >&2

# Bytecode for the checkout: an editable install has none, and with PYTHONDONTWRITEBYTECODE
# set (as on these machines) every pktlab/twistd process would compile packetlab from
# source (~1.8 s against ~0.6 s per start). Processes only read these files.
.venv/bin/python -m compileall -q -j 0 packetlab twisted/plugins benchmarks stress >/dev/null || true
