"""Each example, run as a user would (no arguments: local servers, a controller and an
endpoint in the same process, linked over TLS), ends with exit code 0 and prints its
results; with --listen it waits for a real `twistd pktendpoint`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import readline

from packetlab.controller.local import twistd_command

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


TIMEOUT = 90


def run_example(name: str, *args: str) -> str:
    return run_example_both(name, *args)[0]


def run_example_both(name: str, *args: str) -> tuple[str, str]:
    """stdout and stderr of an example that ended with exit code 0."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=EXAMPLES.parent,
        env={**os.environ, "PKTLAB_HOME": str(EXAMPLES.parent / ".cache" / "no-such-home")},
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout, proc.stderr


def test_http_get() -> None:
    out = run_example("http_get.py")
    assert re.search(r"^endpoint 127\.0\.0\.1:\d+: hostid", out, re.M), out
    assert re.search(r"^clock offset [+-]\d+\.\d{3} ms ± \d+\.\d{3} ms", out, re.M), out
    assert re.search(r"^GET http://127\.0\.0\.1:\d+/ through the endpoint$", out, re.M), out
    assert re.search(r"^  status      HTTP/1\.[01] 200 OK$", out, re.M), out
    assert re.search(r"^  connect     \d+\.\d{3} ms", out, re.M), out
    assert re.search(r"^  end         peer closed$", out, re.M), out
    assert "hello from the packetlab loopback http server" in out


def test_dns_query() -> None:
    out = run_example("dns_query.py", "--name", "probe.example.test")
    assert re.search(r"^  answer      probe\.example\.test A 192\.0\.2\.53 ttl 60$", out, re.M), out
    assert re.search(r"^  rtt         \d+\.\d{3} ms", out, re.M), out


def test_udp_train() -> None:
    out = run_example("udp_train.py", "--count", "40", "--gap-us", "500", "--rows", "5")
    assert "40 datagrams, gap 500 µs, sent 40" in out, out
    assert re.search(r"^  \|gap error\|\s+p50 [\d.]+ µs", out, re.M), out
    assert "sink received 40 of 40 datagrams" in out, out
    assert "... (35 more)" in out


def test_udp_train_of_1000_is_queued_before_it_is_due() -> None:
    """The issue's case: 1000 datagrams at 100 µs over the default TLS link. The lead
    adapts to the measured cost of a request, so every nsend is queued before the first
    packet is due, however loaded the machine (the send offsets themselves are figures
    for docs/performance.md, not a timed assertion: CPU contention moves them)."""
    out = run_example("udp_train.py", "--count", "1000", "--gap-us", "100", "--rows", "3")
    assert "1000 datagrams, gap 100 µs, sent 1000" in out, out
    m = re.search(r"^  lead [\d.]+ ms: every nsend was queued at least [\d.]+ ms before", out, re.M)
    assert m, out
    # what the lead had to cover, measured (TrainReport.queue_cost)
    took = r"^  the first 1000 nsends took [\d.]+ ms to queue \([\d.]+ µs each\)$"
    assert re.search(took, out, re.M), out
    assert re.search(r"^  send offset \(sent - intended\)\s+p50 -?[\d.]+ µs", out, re.M), out
    assert "sink received 1000 of 1000 datagrams" in out, out


def test_udp_train_with_gaps_longer_than_an_nsend_starts_at_once() -> None:
    """2000 datagrams 1 ms apart: the nsends are queued while the first packets go out,
    each before its own is due, so the lead is the 20 ms floor and two bursts' worth,
    not 2000 nsends' worth (~470 ms on this machine before session 19). Compared with what
    queueing all 2000 took in the same run, not with a fixed bound: both grow with the
    machine's load (a 100 ms bound failed once in CI at 140 ms, session 26). Before
    session 19 the lead was twice that time (a nsend's cost estimated with a factor of 2
    to spare); now about a fifth (loaded) to a half (idle)."""
    out, err = run_example_both("udp_train.py", "--count", "2000", "--gap-us", "1000",
                                "--rows", "0")  # fmt: skip
    m = re.search(r"^  lead ([\d.]+) ms: every nsend was queued at least [\d.]+ ms", out, re.M)
    took = re.search(r"^  the first 2000 nsends took ([\d.]+) ms to queue", out, re.M)
    assert m and took and float(m[1]) < float(took[1]), out
    assert "sink received 2000 of 2000 datagrams" in out, out
    assert "queueing" not in err, err


def test_udp_train_says_on_stderr_when_its_first_packet_is_over_a_second_away() -> None:
    out, err = run_example_both("udp_train.py", "--count", "5", "--lead-ms", "1200")
    assert "udp_train.py: queueing 5 nsends at the endpoint: first packet in 1.2 s\n" in err, err
    assert "5 datagrams, gap 1000 µs, sent 5" in out, out


def test_ctrl_c_mid_train_prints_what_was_sent_and_exits_130() -> None:
    """A 10 s train (5000 datagrams, 2 ms apart) to a socket of this test: once 50 came,
    SIGINT. The example stops scheduling, waits briefly for the send times in flight,
    prints the partial report and exits 130; the endpoint dropped the rest (fewer than
    5000 ever arrive)."""
    import signal
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(TIMEOUT)
    port = sink.getsockname()[1]
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "udp_train.py"), "--count", "5000", "--gap-us", "2000",
         "--rows", "3", "--target", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=EXAMPLES.parent,
        env={**os.environ, "PKTLAB_HOME": str(EXAMPLES.parent / ".cache" / "no-such-home")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        got = 0
        while got < 50:
            sink.recv(2048)
            got += 1
        example.send_signal(signal.SIGINT)
        out, err = example.communicate(timeout=TIMEOUT)
        sink.settimeout(0.5)  # what was still on its way
        try:
            while got < 5000:
                sink.recv(2048)
                got += 1
        except TimeoutError:
            pass
    finally:
        sink.close()
        if example.poll() is None:
            example.kill()
            example.wait()
    assert example.returncode == 130, f"{out}\n{err}"
    m = re.search(r"5000 datagrams, gap 2000 µs, sent (\d+)$", out, re.M)
    assert m, out
    sent = int(m[1])
    assert 50 <= sent < 5000 and got < 5000, (sent, got, out)
    assert f"stopped early: {5000 - sent} datagrams not sent" in out, out
    assert re.search(r"^  send offset \(sent - intended\)\s+p50 -?[\d.]+ µs", out, re.M), out
    assert "stopping" in err and "Traceback" not in err, err


@pytest.mark.parametrize("name", ["http_get.py", "dns_query.py", "udp_train.py"])
def test_help(name: str) -> None:
    out = run_example(name, "--help")
    assert "--listen" in out and "--home" in out and "--insecure-plaintext" in out


def test_external_endpoint() -> None:
    """--listen: the example only listens; an endpoint started separately connects."""
    example = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "dns_query.py"),
            "--listen",
            "127.0.0.1:0",
            "--insecure-plaintext",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=EXAMPLES.parent,
    )
    endpoint = None
    try:
        assert example.stdout is not None
        line = readline(example.stdout)
        if line.startswith("link:"):  # which link the controller uses, then where
            line = readline(example.stdout)
        m = re.match(r"controller listening on (127\.0\.0\.1):(\d+); waiting", line)
        assert m, line
        endpoint = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "--logfile=-", "pktendpoint",
             "--insecure-plaintext", "--sessions", "1", f"{m[1]}:{m[2]}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, err = example.communicate(timeout=TIMEOUT)
        assert example.returncode == 0, err
        assert "answer      www.example.com A 192.0.2.53" in out
        assert endpoint.wait(timeout=TIMEOUT) == 0  # one session, then it stops by itself
    finally:
        for p in (example, endpoint):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_publish_experiment_through_a_broker() -> None:
    out = run_example("publish_experiment.py", "--endpoints", "2")
    assert out.count("hostid 'pktendpt', IPv4 127.0.0.1/8, transports TCP|UDP") == 2, out
    assert "publication closed" in out


def test_ctrl_c_while_waiting_exits_130_quietly() -> None:
    import signal

    example = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "dns_query.py"), "--listen", "127.0.0.1:0",
         "--insecure-plaintext"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert example.stdout is not None
    assert readline(example.stdout).startswith("link:")
    assert "waiting for an endpoint" in readline(example.stdout)
    example.send_signal(signal.SIGINT)
    _, err = example.communicate(timeout=TIMEOUT)
    assert example.returncode == 130 and "interrupted" in err and "Traceback" not in err


def test_an_expected_error_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "dns_query.py"), "--home", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dns_query.py: --home {tmp_path / 'none'} lacks keys/k_xc, certs/pubcmd_exper_xc.cert, "
        "certs/exppriv_eop_exper.cert, keys/k_ep, certs/subcmd_eop_ep.cert, keys/k_eop.pub (the "
        f"in-process endpoint needs both sides of a demo link): run `pktlab init --home "
        f"{tmp_path / 'none'}`, or use --insecure-plaintext"
    ]


def test_system_demo_runs_one_experiment_on_two_subscribed_endpoints(tmp_path: Path) -> None:
    """README command 1: broker, two broker-mode endpoints, xpmgr publishing, results.
    The home is relative, as scripts/quickstart.sh passes it (the daemons run elsewhere)."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "system_demo.py"), "--home", "home"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for host in ("demo-ep1", "demo-ep2"):
        assert f"== endpoint {host} (127.0.0.1): done" in out
        assert f"hostid '{host}'" in out
    assert out.count("status      HTTP/1.0 200 OK") == 2
    assert out.count("body        hello from the PacketLab system demo") == 2
    assert "2 of 2 endpoints ran the experiment (xpmgr exit 0)" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--broker", "127.0.0.1:9"], "--broker: the local endpoints subscribe to the broker"),
        (["--broker", "127.0.0.1:9", "--endpoints", "0"], "cannot reach broker 127.0.0.1:9: "),
        (["--home", "/nonexistent"], "--home /nonexistent: not a pktlab home"),
        # waited --timeout (60 s) for endpoints that could not exist, then said so
        (["--endpoints", "0"], "--endpoints 0: no endpoint can subscribe to the broker"),
        (["--timeout", "-1"], "argument --timeout: must be a number of seconds above 0"),
    ],
)
def test_publish_experiment_errors_are_one_line(args: list[str], error: str) -> None:
    # Each was a traceback (AttributeError: 'Local' object has no attribute 'sub_port',
    # ConnectionRefusedError, a broker's log dump, TimeoutError), then "failed", status 1.
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "publish_experiment.py"), *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert error in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_system_demo_never_clears_a_directory_that_is_not_its_home(tmp_path: Path) -> None:
    # `system_demo.py --home DIR` removed DIR whole when it had no broker.conf (`--home ~`
    # cleared a home directory) and ran pktlab init there.
    home = tmp_path / "notes"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "system_demo.py"), "--home", str(home)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert (home / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    assert "is not a pktlab init home with a broker.conf, and not empty" in proc.stderr
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / "system_demo.py"), "--home", "/proc/no/such"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert "pktlab init --home /proc/no/such failed: " in bad.stderr


def test_system_demo_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    import signal
    import time

    demo = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "system_demo.py"), "--home", str(tmp_path / "h")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert demo.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    while "broker:" not in readline(demo.stdout) and time.monotonic() < deadline:
        pass
    demo.send_signal(signal.SIGINT)
    _out, err = demo.communicate(timeout=TIMEOUT)
    assert demo.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("system_demo.py: interrupted")
