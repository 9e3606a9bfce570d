"""Hostile iperf3 servers through the scripted endpoint: bad JSON, absurd lengths, states
that never come or make no sense, a close mid-test, results with absurd numbers or wrong
types, a flood on the data connection. Each is one line in the result's error naming the
server; nothing raises out of throughput(); every length the server sends is capped."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import pytest
from stream_fakes import StreamRig
from test_throughput import SERVER, FakeIperf3

from packetlab.measure import iperf3
from packetlab.measure.iperf3 import MAX_JSON, Iperf3Error, State
from packetlab.measure.throughput import throughput
from packetlab.measure.throughput_figures import MIB

PEER = f"{SERVER[0]}:{SERVER[1]}"


class HostileIperf3(FakeIperf3):
    """FakeIperf3 whose results message is `results(honest dict)` (the wire bytes, length
    prefix and all) and whose state bytes are replaced by `states`: a number (sent as
    is), None (never sent: the server goes silent) or "close" (the connection closes)."""

    def __init__(
        self,
        rig: StreamRig,
        results: Callable[[dict[str, Any]], bytes] | None = None,
        states: dict[State, int | str | None] | None = None,
    ) -> None:
        super().__init__(rig)
        self.results, self.states = results, states or {}
        honest = self.ctl.write

        def write(data: bytes, delay: float = 0.0) -> None:
            if self.results is not None and len(data) > 4:
                data = self.results(json.loads(data[4:]))
            honest(data, delay)

        self.ctl.write = write  # type: ignore[method-assign]

    def state(self, s: State) -> None:
        sub = self.states.get(s, int(s))
        if sub == "close":
            self.ctl.close()
        elif isinstance(sub, int):
            self.ctl.write(struct.pack("b", sub))


def run(direction: str = "download", **kw: Any) -> Any:
    rig = StreamRig()
    server = HostileIperf3(rig, **kw)
    rig.endpoint.peers[SERVER] = server.connect
    r = rig.run(throughput(rig.session, SERVER[0], nbytes=2 * MIB, direction=direction))
    assert r.mbit_s is None and r.error is not None and "\n" not in r.error
    return r


def raw(text: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda honest: struct.pack(">I", len(text)) + text


def edited(**stream: Any) -> Callable[[dict[str, Any]], bytes]:
    def edit(honest: dict[str, Any]) -> bytes:
        honest["streams"][0].update(stream)
        body = json.dumps(honest).encode()  # NaN and Infinity as Python writes them
        return struct.pack(">I", len(body)) + body

    return edit


def test_malformed_json_names_the_server() -> None:
    r = run(results=raw(b'{"streams": [1, 2'))
    assert r.error.startswith(f"the iperf3 server {PEER}: bad iperf3 JSON: ")


def test_a_2_gib_json_length_is_refused_before_reading() -> None:
    r = run(results=lambda honest: struct.pack(">I", 2 << 30) + b"{}")
    assert (
        r.error == f"the iperf3 server {PEER}: iperf3 JSON of 2147483648 bytes announced "
        f"(at most {MAX_JSON})"
    )


def test_json_nested_past_the_parser_s_recursion_limit() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000  # < MAX_JSON, deeper than json can go
    assert len(deep) < MAX_JSON
    r = run(results=lambda honest: struct.pack(">I", len(deep)) + deep)
    assert r.error == f"the iperf3 server {PEER}: bad iperf3 JSON: nested too deep"


def test_json_that_is_not_an_object() -> None:
    r = run(results=raw(b'"hello"'))
    assert r.error == f"the iperf3 server {PEER}: iperf3 JSON is not an object"


@pytest.mark.parametrize(
    ("stream", "says"),
    [
        ({"bytes": -5}, "bytes -5 out of range"),
        ({"bytes": 1e300}, "bytes 1e+300 out of range"),
        ({"bytes": math.inf}, "bytes inf out of range"),
        ({"bytes": math.nan}, "bytes nan out of range"),
        ({"bytes": "lots"}, "bytes 'lots' is not a number"),
        ({"bytes": True}, "bytes True is not a number"),
        ({"bytes": [1]}, "bytes [1] is not a number"),
        ({"end_time": math.inf}, "end_time inf out of range"),
        ({"start_time": 5, "end_time": 1}, "end_time 1 before start_time 5"),
    ],
)
def test_results_with_absurd_numbers_or_wrong_types(stream: dict[str, Any], says: str) -> None:
    r = run(results=edited(**stream))
    assert r.error == f"the iperf3 server {PEER}: unexpected iperf3 results: {says}"


def test_results_that_are_not_a_list_of_one_stream() -> None:
    r = run(results=raw(b'{"streams": {"id": 1}}'))
    assert r.error.startswith(f"the iperf3 server {PEER}: unexpected iperf3 results: ")
    r = run(results=raw(b'{"streams": ["x"]}'))
    assert r.error.startswith(f"the iperf3 server {PEER}: unexpected iperf3 results: ")


def test_an_upload_server_that_got_more_than_was_sent() -> None:
    r = run("upload", results=edited(bytes=3 * MIB))
    assert r.error == (
        f"the iperf3 server {PEER} reports {3 * MIB} bytes received of the {2 * MIB} sent"
    )


def test_an_unknown_state_names_the_server() -> None:
    r = run(states={State.CREATE_STREAMS: 99})
    assert r.error == f"the iperf3 server {PEER}: unknown iperf3 state 99"


def test_a_state_out_of_order() -> None:
    r = run(states={State.TEST_START: int(State.DISPLAY_RESULTS)})
    assert r.error == "iperf3 server said DISPLAY_RESULTS, expected TEST_START"


def test_a_server_that_never_sends_the_state() -> None:
    r = run(states={State.EXCHANGE_RESULTS: None})
    assert r.error == f"nothing from {PEER} within 10 s"  # the control channel's timeout


def test_a_server_that_closes_mid_test() -> None:
    for direction in ("download", "upload"):
        r = run(direction, states={State.TEST_RUNNING: "close"})
        assert r.error == f"the iperf3 server {PEER} closed the control connection"


def test_sans_io_caps() -> None:
    with pytest.raises(Iperf3Error, match="at most 1048576"):
        iperf3.json_length(struct.pack(">I", MAX_JSON + 1))
    assert iperf3.json_length(struct.pack(">I", MAX_JSON)) == MAX_JSON
    with pytest.raises(Iperf3Error, match="iperf3 JSON of 0 bytes"):
        iperf3.json_length(b"\0\0\0\0")
    with pytest.raises(Iperf3Error, match="id inf out of range"):
        iperf3.server_streams({"streams": [{"id": math.inf, "bytes": 1}]})
    with pytest.raises(Iperf3Error, match="jitter -1 out of range"):
        iperf3.server_streams({"streams": [{"id": 1, "bytes": 1, "jitter": -1}]})
    with pytest.raises(Iperf3Error, match=r"packets 1\.5 is not a whole number"):
        iperf3.server_streams({"streams": [{"id": 1, "bytes": 1, "packets": 1.5}]})
    assert iperf3.server_streams({"streams": [{"id": 1, "bytes": 10, "end_time": 2.0}]}) == {
        1: {
            "bytes": 10,
            "seconds": 2.0,
            "jitter": 0.0,
            "errors": 0,
            "packets": 0,
            "retransmits": -1,
        }
    }


def test_a_server_flooding_the_data_connection_of_an_upload() -> None:
    """The server sends 64 MiB back on the data connection of an upload: the controller
    keeps none of it (the data socket has no queue), the upload's figures stand."""
    rig = StreamRig()
    server = HostileIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect
    honest = server._data
    flooded = [0]

    def data(got: bytes) -> None:
        honest(got)
        if not flooded[0]:
            flooded[0] = 1
            for _ in range(1024):
                server.data.write(b"z" * (64 * 1024))

    server.data.received = data  # type: ignore[method-assign,assignment]
    held: list[int] = []

    def probe() -> None:  # what the controller holds for the endpoint's sockets
        held.append(sum(s.queued for k in range(64) if (s := rig.session.find_socket(k))))
        rig.clock.callLater(0.01, probe)

    rig.clock.callLater(0, probe)
    r = rig.run(throughput(rig.session, SERVER[0], nbytes=2 * MIB, direction="upload"))
    assert r.error is None, r.error
    assert flooded[0] and r.server_bytes == 2 * MIB
    assert max(held) <= 4  # a state byte or two, never the flood


def test_timed_results_with_infinity_or_a_stream_it_never_had() -> None:
    """The -t/-P/-u path reads the results the same way: every figure checked."""
    from test_throughput_timed import rig_with_server as timed_rig

    from packetlab.measure.throughput_timed import TimedSpec, timed_test

    for edit, says in (
        (lambda s: s.update(bytes=math.inf), "unexpected iperf3 results: bytes inf out of range"),
        (lambda s: s.update(jitter=-1.0), "unexpected iperf3 results: jitter -1.0 out of range"),
        (lambda s: s.update(id=99), None),
    ):
        rig, server = timed_rig()
        rig.endpoint.rate = 10e6  # an upload needs a link that takes time (the fake's)
        honest = server.ctl.write

        def write(data: bytes, delay: float = 0.0, edit: Any = edit, honest: Any = honest) -> None:
            if len(data) > 4:
                results = json.loads(data[4:])
                edit(results["streams"][0])
                # the server's own JSON (json.dumps: `Infinity`), not our client's encoder
                # (cJSON's, since session 24: it writes an infinity as `null`)
                body = json.dumps(results).encode()
                data = struct.pack(">I", len(body)) + body
            honest(data, delay)

        server.ctl.write = write  # type: ignore[method-assign]
        spec = TimedSpec(seconds=0.3, direction="upload")
        r = rig.run(timed_test(rig.session, SERVER[0], spec=spec))
        if says is None:
            assert r.error == f"the iperf3 server {PEER}: its results lack stream 1"
        else:
            assert r.error == f"the iperf3 server {PEER}: {says}"


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_a_server_flooding_the_control_connection_during_the_test(direction: str) -> None:
    """64 MiB of state bytes on the control connection while the test runs (nobody reads
    it then): the socket's queue would fill and pause the session's reads, the transfer's
    polls with them, and the test hung. Past CTL_MAX_UNREAD unread notes the rest is
    dropped and the test ends with one line; the queue stays at the cap."""
    from packetlab.measure.throughput_control import CTL_MAX_UNREAD

    rig = StreamRig()
    server = HostileIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect
    honest = server.state

    def state(s: State) -> None:
        honest(s)
        if s == State.TEST_RUNNING:
            for _ in range(1024):
                server.ctl.write(struct.pack("b", State.TEST_RUNNING) * (64 * 1024))

    server.state = state  # type: ignore[method-assign]
    held: list[int] = []

    def probe() -> None:
        held.append(max((s.queued for k in range(64) if (s := rig.session.find_socket(k))),
                        default=0))  # fmt: skip
        rig.clock.callLater(0.01, probe)

    rig.clock.callLater(0, probe)
    r = rig.run(throughput(rig.session, SERVER[0], nbytes=2 * MIB, direction=direction))
    assert r.error == (
        f"the iperf3 server {PEER} flooded the control connection (over {CTL_MAX_UNREAD} "
        "unread messages during the test)"
    )
    assert max(held) <= CTL_MAX_UNREAD and not rig.session.paused


def test_a_server_that_trickles_after_the_test_and_never_closes() -> None:
    """After IPERF_DONE iperf3 closes the control connection; this one sends a byte every
    second instead, for ever: the wait for the close is 5 s in all, then the result."""
    rig = StreamRig()
    server = HostileIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect

    def trickle(delay: float = 0.0) -> None:  # instead of the close
        server.ctl.write(b"\0")
        rig.clock.callLater(1.0, trickle)

    server.ctl.close = trickle  # type: ignore[method-assign]
    start = rig.clock.seconds()
    r = rig.run(throughput(rig.session, SERVER[0], nbytes=2 * MIB, direction="download"))
    assert r.error is None and r.mbit_s is not None and server.done
    assert rig.clock.seconds() - start < 10
