"""Try an experiment on this machine: start `twistd pktendpoint` as a child process that
connects to a controller listening on loopback, run the experiment, stop the endpoint.

This only launches the `twistd` command line (it imports nothing of the endpoint role), so
it works the same with any endpoint that takes `--insecure-plaintext HOST:PORT`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.controller._deferred import deferred_api
from packetlab.controller.errors import ControllerError
from packetlab.controller.listener import Controller, Experiment, Outcome

T = TypeVar("T")
OUTPUT_CAP = 1 << 20  # keep the last MiB of the endpoint's output


def twistd_command() -> list[str]:
    """`twistd` of this Python (the virtualenv's), or the same run through `-c`."""
    exe = Path(sys.executable).with_name("twistd")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class LocalEndpoint(ProcessProtocol):
    """A `twistd -n pktendpoint` child process. `output` holds its stdout and stderr,
    `exited` fires with the exit code (None when killed by a signal)."""

    log = Logger()

    def __init__(self) -> None:
        self.output = bytearray()
        self.exit_code: int | None = None
        self.running = False
        self._exited: list[Deferred[int | None]] = []

    @classmethod
    def spawn(
        cls,
        reactor: Any,
        controller: str,
        *,
        args: Sequence[str] = (),
        plaintext: bool = True,
        env: dict[str, str] | None = None,
    ) -> LocalEndpoint:
        """Start an endpoint that connects to `controller` ("127.0.0.1:20556"); `args` are
        extra pktendpoint options."""
        proto = cls()
        mode = ["--insecure-plaintext", controller] if plaintext else [controller]
        argv = [*twistd_command(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", *mode, *args]
        proto.argv = argv
        reactor.spawnProcess(proto, argv[0], argv, env=dict(os.environ if env is None else env))
        proto.running = True
        return proto

    argv: list[str]

    def outReceived(self, data: bytes) -> None:
        self._keep(data)

    def errReceived(self, data: bytes) -> None:
        self._keep(data)

    def _keep(self, data: bytes) -> None:
        self.output += data
        if len(self.output) > OUTPUT_CAP:
            del self.output[: len(self.output) - OUTPUT_CAP]

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        if reason.check(ProcessDone):
            self.exit_code = 0
        elif isinstance(reason.value, ProcessTerminated):
            self.exit_code = reason.value.exitCode
        waiters, self._exited = self._exited, []
        for d in waiters:
            d.callback(self.exit_code)

    def exited(self) -> Deferred[int | None]:
        if not self.running:
            return succeed(self.exit_code)
        d: Deferred[int | None] = Deferred()
        self._exited.append(d)
        return d

    def stop(self, reactor: Any, timeout: float = 5.0) -> Deferred[int | None]:
        """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
        if not self.running:
            return succeed(self.exit_code)
        self._signal("TERM")
        kill = reactor.callLater(timeout, self._signal, "KILL")
        d = self.exited()

        def done(code: int | None) -> int | None:
            if kill.active():
                kill.cancel()
            return code

        return d.addCallback(done)

    def _signal(self, name: str) -> None:
        t: Any = self.transport
        if self.running and t is not None:
            try:
                t.signalProcess(name)
            except Exception:  # it exited in between
                pass

    def tail(self, lines: int = 20) -> str:
        text = self.output.decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])


@deferred_api
async def run_with_local_endpoint(
    reactor: Any,
    experiment: Experiment[T],
    *,
    listen: str = "tcp:0:interface=127.0.0.1",
    endpoint_args: Sequence[str] = (),
    timeout: float = 30.0,
    **options: Any,
) -> T:
    """Listen on loopback, start a local endpoint pointed at us, run `experiment` on the
    first endpoint that connects, then stop the endpoint. Returns the experiment's result
    or raises its error; an endpoint that exits (or stays away for `timeout` seconds)
    before connecting gives a ControllerError with the end of its output."""
    ctl: Controller[T] = Controller(experiment, reactor=reactor, limit=1, **options)
    port = await ctl.listen(listen)
    addr: Any = port.getHost()
    ep = LocalEndpoint.spawn(reactor, f"{addr.host}:{addr.port}", args=endpoint_args)
    try:
        # Wait for the outcome (or its timeout); an endpoint exit before any connection
        # ends the wait early.
        got: dict[str, Any] = {}
        wake: list[Deferred[None]] = [Deferred()]

        def arrived(label: str) -> Callable[[Any], None]:
            def cb(value: Any) -> None:
                got[label] = value
                d, wake[0] = wake[0], Deferred()
                d.callback(None)

            return cb

        outcome_d = ctl.next_outcome()
        outcome_d.addTimeout(timeout, reactor)
        outcome_d.addBoth(arrived("outcome"))
        ep.exited().addCallback(arrived("exit"))
        while "outcome" not in got:
            if "exit" in got and not ctl.accepted:
                outcome_d.cancel()
                raise ControllerError(
                    f"the endpoint exited (code {got['exit']}) before connecting; "
                    f"its output:\n{ep.tail()}"
                )
            await wake[0]
        value = got["outcome"]
        if isinstance(value, Failure):
            if value.check(defer.TimeoutError):
                why = "no endpoint connected" if not ctl.accepted else "the experiment did not end"
                raise ControllerError(
                    f"no experiment finished within {timeout:g} s ({why}); endpoint output:\n"
                    f"{ep.tail()}"
                )
            value.raiseException()
        return cast(Outcome[T], value).unwrap()
    finally:
        await ctl.stop()
        await ep.stop(reactor)
