"""Settings for the whole suite.

Hypothesis's default 200 ms deadline per example is a timed assert, and a loaded 2-core
CI box breaks it (`test_fuzz_mutated_replies` failed once that way while 60,000 examples
run here without a deadline found nothing). The suite has no timed asserts in unit tests,
so the fuzz tests check behaviour only; a slow parser shows in the benchmarks.

Under CI (`CI` set: `.ci/run` sets it) the examples are derandomized: a fresh clone has no
example database, and a new random draw each run made CI fail now and then on an example
no one had seen (session 15: seed 1014 found a real bug 1 run in ~18). Runs elsewhere
draw new examples each time, which is how such bugs are found; `--hypothesis-seed=N`
replays one (docs/testing.md).
"""

import os
import sys

import pytest
from hypothesis import settings

settings.register_profile("packetlab", deadline=None, print_blob=True)
settings.register_profile(
    "packetlab-ci", parent=settings.get_profile("packetlab"), derandomize=True
)
settings.load_profile("packetlab-ci" if os.environ.get("CI") else "packetlab")


# Tests that measure time or rates (pacing, precision, deadlines, throughput, "within 1 s")
# and would flake beside other tests: marked `serial`, so scripts/test.sh runs them in its
# second pass, one at a time, after the parallel pass (docs/testing.md "Suite time
# (session 22, suite22)"). A new such test is marked in its file instead:
# `@pytest.mark.serial`, or `pytestmark = pytest.mark.serial` for the whole file. These
# entries name a whole file by its basename, or one test as "file.py::test_name".
SERIAL = frozenset(
    {
        "test_alias_scamper_methods.py::test_round_wait_as_scampers_radargun",  # rounds 200 ms
        "test_bench_throughput_wire.py",
        "test_broker_redis.py::test_publication_at_b_reaches_a_within_1s_and_ends_everywhere",
        "test_busypoll.py",
        "test_clocksync_faketime.py",  # offsets within +- delay/2, a drift within its error
        "test_controller_reference_like.py",  # stamps < 1/4 of an 80 ms hold (ctlaudit23)
        # restarts: the reconnect back-off (endpoints <= 5 s, xpmgr's backlogs 0.5 s doubling);
        # the file's pid file and `-u nobody` tests time nothing: pass 1 (suite34)
        "test_daemon_operations.py::test_a_restarted_broker_has_its_endpoints_back_and_the_xpmgr_says_its_publication_is_over",
        "test_daemon_operations.py::test_a_restarted_proxy_gets_the_xpmgr_backlogs_back_and_splices_again",
        "test_cpulatency.py",  # /dev/cpu_dma_latency is the machine's: one request at a time
        "test_endpoint_sched_train.py",
        # Ctrl-C at moments 0-150 ms into a start-up (its --help and no-packetlab tests: pass 1)
        "test_examples_startup.py::test_ctrl_c_while_an_example_starts_is_one_line_and_130",
        "test_examples.py::test_udp_train_with_gaps_longer_than_an_nsend_starts_at_once",
        "test_hostile_broker.py",
        "test_hostile_proxy.py",
        "test_http_limit_rate_curl.py",
        # -Y/-y: a 4 B/s trickle against 1 and 100 B/s limits, 1 s each (http28)
        "test_http_curl28.py::test_speed_limit_as_curl",
        "test_http_curl28.py::test_time_total_of_a_timeout_as_curl",
        # -Y/-y: give-up moments against curl's within 0.1 s, an upload stalled (curl29); its
        # redirect and scheme tests time nothing: pass 1 (suite34)
        "test_http_curl29.py::test_speed_limit_against_a_silent_server_ends_at_curls_moment",
        "test_http_curl29.py::test_speed_limit_gives_up_at_curls_moment",
        "test_http_curl29.py::test_speed_limit_during_an_upload_the_server_stopped_reading",
        "test_http_curl29.py::test_speed_limit_on_a_stream_of_a_shared_http2_connection",
        "test_http_upload_curl_side_by_side.py::test_parallel_as_curl",
        # curl's "timed out after 200x milliseconds" at -m 2, ours to the same 10 ms: 2074
        # in pass 1 on 4 workers at load 5 (suite35)
        "test_http_curl30.py::test_x_head_and_i_x_get_read_as_curl",
        "test_measure_throughput.py",
        "test_pktlab_run.py::test_traceroute_to_a_silent_target_streams_and_gives_up_like_native",
        "test_traceroute_sweep25_like_native.py::test_wait_max_alone_waits_for_a_silent_hop_as_traceroute",
        # each run's time (-z/-w seconds); two `ping -f` on a namespace's loopback
        "test_traceroute_sweep27_like_native.py",
        # two `ping -f` on a namespace's loopback for ~5 s (a core busy)
        "test_ping_sweep27_like_native.py::test_every_reply_counted_beside_a_ping_flood",
        # a loopback TCP flow as fast as it goes for ~3 s (a core busy: not beside timings)
        "test_traceroute_sweep25_like_native.py::test_tcp_probes_answered_beside_a_loopback_tcp_flow",
        "test_reflex_aimd.py",
        # ping -T's first difference: whole ms, ours against ping's (trace29)
        "test_ping29_like_native.py",
        "test_reflex_breakdown.py",
        "test_run_interrupts.py",
        "test_run_sendgap.py",
        "test_run_like_native.py::test_traceroute_packetlen_udp_port_tos_df_and_mtu_as_traceroute",
        "test_run_reference_like.py",  # stamps < 1/4 of an 80 ms hold (ctlaudit23)
        "test_send_precision.py",
        # 30 twistd pktendpoint processes at once through a pktproxy (~20 s of both cores)
        "test_xpmgr_hostile_mlets.py::test_thirty_endpoints_through_pktproxy_each_one_result",
        "test_throughput_beside_native.py",
        "test_throughput_bidir_refused.py",
        "test_throughput_iperf3_counts.py",
        "test_throughput_iperf3_options.py",
        "test_throughput_iperf3_output.py",
        "test_throughput_iperf3_stalled.py",  # a server stopped for 3-5 s, spans compared
        "test_throughput_retr_cwnd.py",
        "test_timerfd.py",
        "test_wrap.py::test_fidelity_hides_a_slow_controller_link",
        # the shell's status must come within 4 s of CMD's exit (wrap29)
        "test_wrap_s29.py::test_a_program_that_daemonises_returns_at_once_and_its_daemon_stays_wrapped",
        "test_xpmgr_c_mlets_raw.py::test_icmp_echo_replies_counted_rtts_beside_native_ping",
    }
)


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    for item in items:
        base = item.path.name
        if base in SERIAL or f"{base}::{item.originalname}" in SERIAL:
            item.add_marker("serial")


# Process-wide log budgets (so many lines a minute for all connections of a daemon): each
# test starts with a full one. Tests sharing a worker process used them up for the next
# ones: `test_endpoint_tls.py::test_controller_refuses_endpoint_with_untrusted_chain`
# found no refusal line after `tests/unit/test_tls.py` in the same process (ppks30).
# Reset only where the module is loaded already (a test that loads it gets a fresh one).
_BUDGETS = (("packetlab.tls.gate", "REFUSAL_LOG"), ("packetlab.endpoint.raw", "_PERMISSION_LOG"))


@pytest.fixture(autouse=True)
def _fresh_log_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, name in _BUDGETS:
        mod = sys.modules.get(module)
        if mod is not None:
            old = getattr(mod, name)
            monkeypatch.setattr(mod, name, type(old)(old.clock, old.burst, old.window))
