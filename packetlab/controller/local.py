"""Try an experiment on this machine: start `twistd pktendpoint` as a child process that
connects to a controller listening on loopback, run the experiment, stop the endpoint.

This only launches the `twistd` command line (it imports nothing of the endpoint role).
By default the link is TLS 1.3 with PPKS certificates from a demo home made by
`pktlab init` (`demo_home`): the controller presents pubcmd_exper_xc + exppriv_eop_exper
for a fresh snikey and trusts k_eop; the endpoint runs with the home's endpt.conf.
`plaintext=True` uses `--insecure-plaintext` instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.controller import deathsig
from packetlab.controller._deferred import deferred_api
from packetlab.controller.errors import ControllerError
from packetlab.controller.listener import Controller, Experiment, Outcome
from packetlab.ppks import PktlabHome, read_public_key
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSServerEndpoint,
    PPKSServerOptions,
    ServerEntry,
    default_pending_max,
    gen_snikey,
)

T = TypeVar("T")
OUTPUT_CAP = 1 << 20  # keep the last MiB of the endpoint's output


def twistd_command() -> list[str]:
    """`twistd` of this Python (the virtualenv's), or the same run through `-c`."""
    exe = Path(sys.executable).with_name("twistd")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


DEMO_FILES = (
    "endpt.conf",
    "keys/k_xc",
    "keys/k_eop.pub",
    "certs/pubcmd_exper_xc.cert",
    "certs/exppriv_eop_exper.cert",
)


def demo_home(path: str | os.PathLike[str] | None = None) -> PktlabHome:
    """A home set up by `pktlab init`: `path` as it is when it already holds the demo
    files, else `pktlab init --home path` first (None: a new temporary directory)."""
    root = (
        Path(path).expanduser()
        if path is not None
        else Path(tempfile.mkdtemp(prefix="pktlab-demo-"))
    )
    if not all((root / f).is_file() for f in DEMO_FILES):
        proc = subprocess.run(
            [sys.executable, "-m", "packetlab", "init", "--home", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ControllerError(f"pktlab init --home {root} failed: {proc.stderr.strip()}")
    return PktlabHome.at(root)


#: Seconds an endpoint gets to finish the TLS handshake before it is cut off.
HANDSHAKE_TIMEOUT = 30.0


def demo_server_entry(home: PktlabHome) -> ServerEntry:
    """The demo controller's TLS server side in `home`: its exppriv chain, trusting k_eop."""
    creds = Credentials.load(
        [home.cert_path("pubcmd_exper_xc"), home.cert_path("exppriv_eop_exper")],
        home.key_path("k_xc"),
        any_order=True,
    )
    return ServerEntry(
        creds, AuthMode.CONTROLLER_AUTH_ENDPOINT, [read_public_key(home.pubkey_path("k_eop"))]
    )


def tls_server(
    reactor: Any,
    where: str,
    home: PktlabHome,
    snikey: str,
    *,
    handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
) -> PPKSServerEndpoint:
    """A TLS listening endpoint for the demo controller of `home` (§4.6): its exppriv
    chain for `snikey` (also the entry for clients without SNI), trusting k_eop. A
    client still in the handshake after `handshake_timeout` seconds is cut off (and
    logged), instead of holding its connection for good; at most `default_pending_max()`
    are in the handshake at once (the oldest closed for each new one), so that silent
    connections cannot take every descriptor before a real endpoint comes."""
    from twisted.internet.endpoints import serverFromString

    entry = demo_server_entry(home)
    options = PPKSServerOptions({snikey: entry}, default=entry)
    deadline = None if handshake_timeout is None else (handshake_timeout, reactor)
    return PPKSServerEndpoint(serverFromString(reactor, where), options, handshake_timeout=deadline,
                              pending_max=default_pending_max())  # fmt: skip


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
        argv = [*twistd_command(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", *args, *mode]
        proto.argv = argv
        # tied to us: a controller killed outright left its endpoint running (deathsig)
        deathsig.spawn(reactor, proto, argv[0], argv, env=dict(os.environ if env is None else env))
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
    plaintext: bool = False,
    home: str | os.PathLike[str] | PktlabHome | None = None,
    **options: Any,
) -> T:
    """Listen on loopback, start a local endpoint pointed at us, run `experiment` on the
    first endpoint that connects, then stop the endpoint. Returns the experiment's result
    or raises its error; an endpoint that exits (or stays away for `timeout` seconds)
    before connecting gives a ControllerError with the end of its output.

    The link is TLS with the certificates of `home` (a `pktlab init` directory; None: a
    new temporary one, see `demo_home`), or plain TCP with `plaintext=True`."""
    # raised to our caller, not also logged with its traceback (as run_once and
    # run_in_process do; examples/monitors/require_monitor.py printed one under its line)
    options.setdefault("report_failures", False)
    ctl: Controller[T] = Controller(experiment, reactor=reactor, limit=1, **options)
    ep_args = list(endpoint_args)
    cleanup: list[Path] = []
    if plaintext:
        port = await ctl.listen(listen)
    else:
        h = home if isinstance(home, PktlabHome) else demo_home(home)
        if home is None:  # our temporary home goes when the run ends
            cleanup.append(h.root)
        snikey = gen_snikey()
        port = await ctl.listen(tls_server(reactor, listen, h, snikey))
        ep_args = ["-c", str(h.root / "endpt.conf"), "--snikey", snikey, *ep_args]
    addr: Any = port.getHost()
    ep = LocalEndpoint.spawn(reactor, f"{addr.host}:{addr.port}", args=ep_args, plaintext=plaintext)

    async def shutdown() -> None:  # the endpoint goes with the run, or with the reactor
        await ep.stop(reactor)
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)

    # A reactor stopped under the run (a Ctrl-C or SIGTERM to this process alone, as
    # `timeout` sends it) never resumes it: the child endpoint was left running, orphaned.
    trigger = reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(shutdown())
    )
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
        reactor.removeSystemEventTrigger(trigger)
        await ctl.stop()
        await shutdown()
