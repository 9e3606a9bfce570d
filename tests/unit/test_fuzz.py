"""A bounded slice of the fuzzing campaign (stress/fuzz.py runs 10^6 inputs per target
with atheris): random bytes and mutated valid inputs through the framer, the endpoint's
session dispatch, the PPKS certificate parser and (session 27) the other decoders hostile
input reaches. The invariants are in fuzz_targets and the modules fuzz_decoders lists."""

from __future__ import annotations

import fuzz_targets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packetlab.measure.http_decode import Undecodable

# Budget per target: enough to reach deep states from the seeds, a few seconds in CI.
EXAMPLES = {
    "framer": 1500,
    "session": 600,
    "cert": 1500,
    # session 27's: ~1 s each on a quiet core (docs/reliability.md, "Fuzzing")
    "clienthello": 600,
    "broker": 300,
    "controller": 400,
    "tls_records": 600,
    "dns": 300,
    "http_head": 200,
    "http1": 400,
    "http_body": 400,
    "http2": 300,
    "iperf3": 600,
    "replies": 600,
    "warts": 600,
    "config": 400,
}


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A seed with a few bytes overwritten, inserted or cut, or plain random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(fuzz_targets.SEEDS[target])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        at = draw(st.integers(0, len(data)))
        if op == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _run(target: str) -> None:
    @settings(
        max_examples=EXAMPLES[target],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(target))
    def check(data: bytes) -> None:
        fuzz_targets.TARGETS[target](data)

    check()


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_seeds_pass(target: str) -> None:
    for seed in fuzz_targets.SEEDS[target]:
        fuzz_targets.TARGETS[target](seed)


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzz_slice(target: str) -> None:
    _run(target)


@pytest.mark.xfail(
    reason="session 27 finding, reported to the lead (measure/http_decode.py is http27's): "
    "deflate falls back to raw deflate only on its first read's error",
    raises=Undecodable,
    strict=False,
)
def test_deflate_without_its_zlib_header_decodes_however_the_body_is_cut() -> None:
    """A raw deflate body (no zlib header, as some servers send it; curl takes it) decodes
    whole, but not when its first read is a byte: the first byte is taken without error,
    the header check fails on the second, and by then the fallback is no longer tried.
    The fuzz target `http_body` found it (its cut comparison skips deflate
    until it is fixed)."""
    import zlib

    from packetlab.measure.http_decode import decoder

    text = b"the quick brown fox " * 4
    raw = zlib.compress(text)[2:-4]
    whole = decoder(["deflate"], 4096, "s")
    assert whole is not None
    assert whole.feed(raw) + whole.feed(b"", final=True) == text
    cut = decoder(["deflate"], 4096, "s")
    assert cut is not None
    out = b"".join(cut.feed(raw[i : i + 1]) for i in range(len(raw)))
    assert out + cut.feed(b"", final=True) == text


@pytest.mark.xfail(
    reason="session 27 finding, reported to the lead (measure/http2.py is http27's): a "
    ":status str.isdigit() takes and int() refuses escapes receive() as a ValueError",
    raises=ValueError,
    strict=False,
)
def test_an_http2_status_of_superscript_digits_is_an_h2error() -> None:
    """`:status: ²²²` (bytes b2 b2 b2, read as Latin-1): `str.isdigit` is true for a
    superscript two, `int` refuses it, and the ValueError left `receive` (an HTTP/2
    server's traceback in `pktlab run http`), where any other bad status is an H2Error.
    The fuzz target `http2` found it (its header-list mode keeps the status ASCII until
    it is fixed)."""
    import h2.config
    import h2.connection

    from packetlab.measure.http2 import H2Error, H2Framing

    f = H2Framing("s", max_headers=4096)
    request = f.request("GET", "https", "a.test", "/", [], None)
    config = h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_outbound_headers=False
    )
    s = h2.connection.H2Connection(config)
    s.initiate_connection()
    s.receive_data(request)
    s.send_headers(1, [(b":status", b"\xb2\xb2\xb2")], end_stream=True)
    with pytest.raises(H2Error, match="bad :status"):
        f.receive(s.data_to_send())


@pytest.mark.xfail(
    reason="session 27 finding, reported to the lead (measure/iperf3.py and "
    "throughput_cjson.py are iperf27's): a server's JSON output nested ~500 deep decodes "
    "but printing it is a RecursionError",
    raises=RecursionError,
    strict=False,
)
def test_a_deeply_nested_server_json_output_prints_or_is_refused() -> None:
    """--get-server-output: a server's `server_output_json` nested 600 deep is within
    MAX_JSON and decode_json's nesting (~1000, Python's recursion limit), but cJSON's
    printer here (`throughput_cjson.dumps`, two Python frames a level) runs out of stack:
    a traceback where a hostile server's report should be refused (or cut) with a clear
    error. The fuzz target `iperf3` checks what nests at most 200 deep until it is fixed."""
    from packetlab.measure import iperf3
    from packetlab.measure.throughput_cjson import dumps

    depth = 600
    doc = '{"server_output_json":' + '{"a":' * depth + "1" + "}" * depth + "}"
    try:
        out = iperf3.server_output(iperf3.decode_json(doc.encode()))
    except iperf3.Iperf3Error:
        return  # refused as a bad message: a fix
    if out is not None:  # (None: not shown, also a fix)
        assert isinstance(dumps(out), str)
