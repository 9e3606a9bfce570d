"""What the reflex benchmarks (and the tests that run them) share: a demo PPKS home that
allows the reflexes, a TLS controller, an endpoint (optionally behind the delay relay),
and the run of a benchmark's half inside a namespace.

* `run_experiment`: one experiment on a fresh local endpoint over TLS; the home's
  certificates list the given reflexes; adds the endpoint's CPU share over the run to the
  result (``endpoint_cpu``); cleans everything up.
* `inside`: the namespace half of a benchmark: loopback up, run the experiment on the
  reactor, print its result as one JSON line.
* `child_result`: that JSON line, read from the namespace child (or its error output).
* `run_benchmark`: a benchmark module run with ``--json``, for the tests: its results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

Experiment = Callable[[Any], Awaitable[dict[str, Any]]]


async def run_experiment(
    reactor: Any,
    experiment: Experiment,
    *,
    sources: Sequence[Path],
    conf: str = "",
    ctl_delay_ms: float | None = None,
    timeout: float = 600.0,
    endpoint_argv: Callable[[list[str]], list[str]] | None = None,
) -> dict[str, Any]:
    """Run `experiment(session)` on a new local endpoint over TLS whose certificates allow
    the reflexes built from `sources`; `conf` is appended to its endpt.conf; with
    `ctl_delay_ms` its controller link goes through the delay relay. `endpoint_argv`
    may replace the endpoint's command line (given twistd's arguments)."""
    from packetlab.cli.init import init_home
    from packetlab.controller.listener import Controller
    from packetlab.controller.local import LocalEndpoint, tls_server
    from packetlab.monitor.build import build
    from packetlab.ppks import PktlabHome
    from packetlab.reflex import abi
    from packetlab.tls import gen_snikey

    tmp = Path(tempfile.mkdtemp(prefix="bench-reflex-"))
    relay: subprocess.Popen[bytes] | None = None
    ep: LocalEndpoint | None = None
    ctl: Controller[dict[str, Any]] = Controller(experiment, reactor=reactor, limit=1)
    try:
        home = PktlabHome.at(tmp / "home")
        with contextlib.redirect_stdout(io.StringIO()):
            init_home(home, reflexes=[abi.digest(build(s)) for s in sources])
        endpt_conf = home.root / "endpt.conf"
        if conf:
            endpt_conf.write_text(endpt_conf.read_text() + conf)
        snikey = gen_snikey()
        port = await ctl.listen(tls_server(reactor, "tcp:0:interface=127.0.0.1", home, snikey))
        ctl_port = port.getHost().port  # type: ignore[attr-defined]
        if ctl_delay_ms is not None:
            from benchmarks import delay_relay

            relay, ctl_port = delay_relay.spawn(ctl_port, ctl_delay_ms)
        args = ["-c", str(endpt_conf), "--snikey", snikey]
        where = f"127.0.0.1:{ctl_port}"
        if endpoint_argv is None:
            ep = LocalEndpoint.spawn(reactor, where, args=args, plaintext=False)
        else:
            ep = LocalEndpoint()
            argv = endpoint_argv(["-n", "--pidfile=", "--logfile=-", "pktendpoint", *args, where])
            reactor.spawnProcess(ep, argv[0], argv, env=dict(os.environ), path=str(REPO))
            ep.running = True
        try:
            t0, cpu0 = time.monotonic(), _cpu_s(ep)
            outcome = await ctl.next_outcome().addTimeout(timeout, reactor)
            result = outcome.unwrap()
            # The endpoint's CPU share over the run (what BusyPollUs costs, for one).
            result["endpoint_cpu"] = (_cpu_s(ep) - cpu0) / (time.monotonic() - t0)
            return result
        except Exception:
            print(ep.tail(60), file=sys.stderr)
            raise
    finally:
        await ctl.stop()
        if ep is not None:
            await ep.stop(reactor)
        if relay is not None:
            relay.terminate()
            relay.wait()
        shutil.rmtree(tmp, ignore_errors=True)


#: `--split`: the endpoint alone on the second CPU, the benchmark (and what it starts
#: itself: the delay relay, the client) on the first. Busy-poll wants a CPU to itself.
SPLIT_CPUS = (0, 1)


def add_cpu_options(parser: Any) -> None:
    """`--busy-poll-us N` and `--split`, as the reflex benchmarks take them."""
    parser.add_argument(
        "--busy-poll-us",
        type=int,
        default=0,
        metavar="N",
        help="BusyPollUs N in the endpoint's endpt.conf (reactor busy-poll) [0: off]",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help=f"the endpoint alone on CPU {SPLIT_CPUS[1]}, the benchmark (client, controller, "
        f"relay) on CPU {SPLIT_CPUS[0]}: a CPU to itself, as busy-poll wants (docs/reflexes.md)",
    )


def split_cpus() -> list[str]:
    """Pin this process to `SPLIT_CPUS[0]` (children it starts inherit that) and return
    the command prefix that runs a program on `SPLIT_CPUS[1]` alone (`taskset`)."""
    os.sched_setaffinity(0, {SPLIT_CPUS[0]})
    return [shutil.which("taskset") or "taskset", "-c", str(SPLIT_CPUS[1])]


def endpoint_under(prefix: list[str]) -> Callable[[list[str]], list[str]] | None:
    """The `endpoint_argv` of `run_experiment` that runs twistd under `prefix` (None: as
    usual)."""
    from packetlab.controller.local import twistd_command

    return (lambda a: [*prefix, *twistd_command(), *a]) if prefix else None


def _cpu_s(ep: Any) -> float:
    """User + system CPU seconds of the endpoint process so far (0 if gone)."""
    try:
        fields = Path(f"/proc/{ep.transport.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, AttributeError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inside(go: Callable[[Any], Awaitable[dict[str, Any]]]) -> None:
    """The namespace half of a benchmark: bring loopback up, run `go(reactor)`, print its
    result as one JSON line for `child_result`. Exits the process."""
    from twisted.internet import defer, task

    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)

    async def main(reactor: Any) -> None:
        print(json.dumps(await go(reactor)), flush=True)

    task.react(lambda r: defer.ensureDeferred(main(r)))


def child_result(proc: subprocess.Popen[str], what: str, timeout: float) -> dict[str, Any]:
    """The last JSON line a namespace child (`inside`) printed; RuntimeError with its error
    output if it failed."""
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_env() -> dict[str, str]:
    """The environment of a benchmark's child process (finds the `benchmarks` package)."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def run_benchmark(module: str, args: Sequence[str], json_path: Path, timeout: float) -> Any:
    """Run ``python -m benchmarks.MODULE ARGS --json JSON_PATH`` from the repository root;
    its results (AssertionError with its error output if it failed)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(json_path)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_path.read_text())["results"]
