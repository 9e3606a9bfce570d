"""Fuzz targets for the decoders hostile input reaches beyond the endpoint's (session 27),
listed: the links hostile peers hold (`fuzz_links`: the proxy's ClientHello reader and
endpoint port, broker links, the controller's dispatch, the TLS record layer), what a
hostile server sends a measurement (`fuzz_servers`: DNS, HTTP/1, codings, HTTP/2,
iperf3, ICMP replies), the files we are handed (`fuzz_files`: warts, config files).

Each target takes arbitrary bytes and checks what must hold for every input (its
docstring); a broken invariant or an exception the module does not declare is a
finding. `tests/unit/fuzz_targets.py` registers them with the others (TARGETS, SEEDS).
Nothing of packetlab is imported here or at the top of those modules (stress/fuzz.py
reads these tables before it imports the code under test, instrumented).
"""

from __future__ import annotations

from collections.abc import Callable

from fuzz_files import _config_seeds, _warts_seeds, fuzz_config, fuzz_warts
from fuzz_links import (
    _broker_seeds,
    _controller_seeds,
    _hello_seeds,
    _tls_seeds,
    fuzz_broker,
    fuzz_clienthello,
    fuzz_controller,
    fuzz_tls_records,
)
from fuzz_options import (
    _broker_file_seeds,
    _http_opts_seeds,
    _rdata_seeds,
    _throughput_seeds,
    fuzz_broker_files,
    fuzz_http_opts,
    fuzz_rdata,
    fuzz_throughput_opts,
)
from fuzz_paced import fuzz_paced_send, paced_seeds
from fuzz_servers import (
    _body_seeds,
    _dns_seeds,
    _h2_seeds,
    _http1_seeds,
    _http_seeds,
    _iperf3_seeds,
    _replies_seeds,
    fuzz_dns,
    fuzz_http1,
    fuzz_http2,
    fuzz_http_body,
    fuzz_http_head,
    fuzz_iperf3,
    fuzz_replies,
)

# -------------------------------------------------------------------------------- tables


DECODER_TARGETS: dict[str, Callable[[bytes], None]] = {
    "clienthello": fuzz_clienthello,
    "broker": fuzz_broker,
    "controller": fuzz_controller,
    "tls_records": fuzz_tls_records,
    "dns": fuzz_dns,
    "http_head": fuzz_http_head,
    "http1": fuzz_http1,
    "http_body": fuzz_http_body,
    "http2": fuzz_http2,
    "iperf3": fuzz_iperf3,
    "replies": fuzz_replies,
    "warts": fuzz_warts,
    "config": fuzz_config,
    # session 28 (fuzz28): the first round's parsing code
    "rdata": fuzz_rdata,
    "http_opts": fuzz_http_opts,
    "throughput_opts": fuzz_throughput_opts,
    "paced_send": fuzz_paced_send,  # session 29 (iperf29)
    "broker_files": fuzz_broker_files,
}

#: What atheris instruments for each (the code under test, not the harness).
DECODER_INSTRUMENT: dict[str, list[str]] = {
    "clienthello": ["packetlab.proxy.clienthello"],
    "broker": ["packetlab.broker", "packetlab.wire"],
    "controller": ["packetlab.controller", "packetlab.wire"],
    "tls_records": ["packetlab.tls.records"],
    "dns": ["packetlab.measure.dnsparse", "packetlab.measure.dnstext", "packetlab.cli.run_dns"],
    "http_head": ["packetlab.measure.http_head", "packetlab.measure.http_decode"],
    "http1": ["packetlab.measure.http_lenient", "h11"],
    "http_body": ["packetlab.measure.http_decode"],
    "http2": ["packetlab.measure.http2", "h2", "hpack"],
    "iperf3": ["packetlab.measure.iperf3", "packetlab.measure.throughput_cjson"],
    "replies": ["packetlab.measure.replies", "packetlab.measure.icmpext"],
    "warts": ["packetlab.measure.warts_read"],
    "config": ["packetlab.endpoint.config", "packetlab.broker.config", "packetlab.controller"],
    "rdata": ["packetlab.measure.dnsparse"],
    "http_opts": [
        "packetlab.cli.run_http_args",
        "packetlab.cli.run_http_opts",
        "packetlab.measure.http_speed",
    ],
    "throughput_opts": [
        "packetlab.cli.run_throughput",
        "packetlab.measure.iperf3",
        "packetlab.measure.throughput_cnum",
    ],
    "paced_send": ["packetlab.measure.throughput_send", "packetlab.measure.throughput_streams"],
    "broker_files": [
        "packetlab.endpoint.subscriber",
        "packetlab.endpoint.config",
        "packetlab.tls.credentials",
        "packetlab.ppks",
    ],
}


def decoder_seeds() -> dict[str, list[bytes]]:
    return {
        "clienthello": _hello_seeds(),
        "broker": _broker_seeds(),
        "controller": _controller_seeds(),
        "tls_records": _tls_seeds(),
        "dns": _dns_seeds(),
        "http_head": _http_seeds(),
        "http1": _http1_seeds(),
        "http_body": _body_seeds(),
        "http2": _h2_seeds(),
        "iperf3": _iperf3_seeds(),
        "replies": _replies_seeds(),
        "warts": _warts_seeds(),
        "config": _config_seeds(),
        "rdata": _rdata_seeds(),
        "http_opts": _http_opts_seeds(),
        "throughput_opts": _throughput_seeds(),
        "paced_send": paced_seeds(),
        "broker_files": _broker_file_seeds(),
    }
