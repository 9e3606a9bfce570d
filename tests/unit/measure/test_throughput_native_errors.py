"""A failed iperf3 test's record through the scripted endpoint (issue 13, session 19):
our `error` and iperf3 3.12's words for it, `iperf3_error` (-J's `error`, the text's
`error - ` line): a refused connect, a busy server."""

from __future__ import annotations

from test_throughput_timed import SERVER, TimedIperf3, rig_with_server, run

from packetlab.measure import iperf3
from packetlab.measure.iperf3 import State
from packetlab.measure.throughput_timed import TimedSpec, timed_test


def test_a_failed_test_carries_iperf3s_words() -> None:
    rig, _server = rig_with_server()  # nothing at SERVER's port 5202: refused
    r = rig.run(timed_test(rig.session, SERVER[0], 5202, spec=TimedSpec(seconds=0.2)))
    d = r.to_dict()
    assert d["error"].startswith("connect to 192.0.2.5:5202: connection refused"), d
    assert d["iperf3_error"] == "unable to connect to server: Connection refused"
    rig, server = rig_with_server()
    server.state = lambda s: TimedIperf3.state(  # type: ignore[method-assign]
        server, State.ACCESS_DENIED if s == State.PARAM_EXCHANGE else s
    )
    d, _ = run(rig, TimedSpec(seconds=0.2))
    assert d["error"] == "the iperf3 server is busy (access denied)"
    assert d["iperf3_error"] == iperf3.BUSY


def test_a_server_gone_mid_test_is_iperf3s_control_socket_closed() -> None:
    """A server killed mid-test (the control connection closes where EXCHANGE_RESULTS
    was due): iperf3 3.12's IECTRLCLOSE words, ours naming the server (were
    `192.0.2.5:5201 closed after 0 of 1 bytes`, session 21). (An upload's data stream
    fails first against a real server: test_throughput_iperf3_errors.py.)"""
    for direction in ("download",):
        rig, server = rig_with_server()

        def gone(s: State, server: TimedIperf3 = server) -> None:
            if s != State.EXCHANGE_RESULTS:
                return TimedIperf3.state(server, s)
            server.ended = server.rig.clock.seconds()  # its streams stop sending too
            server.ctl.close()

        server.state = gone  # type: ignore[method-assign]
        d, _ = run(rig, TimedSpec(direction=direction, seconds=0.2))
        assert d["error"] == f"the iperf3 server {SERVER[0]}:{SERVER[1]} closed the control " \
            "connection", d  # fmt: skip
        assert d["iperf3_error"] == "control socket has closed unexpectedly"
