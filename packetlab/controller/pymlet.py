"""Python experiments as mlets: ``python -m packetlab.controller.pymlet TARGET [ARGS...]``.

`pktlab xpmgr` runs this for an MLET that is a ``.py`` file or a module path
(``examples/http_get.py``, ``mypkg.experiment``, ``mypkg.experiment:function``). TARGET's
function (default ``mlet``) is called as ``await mlet(session, args)`` with an
`EndpointSession` on the connection the manager handed over on fd 0 (already started: no
cdata or start is sent), so the experiment uses the normal controller API and no socket
code. When it returns, the session is closed and the process exits 0 (1 on an error).

Without ``EPADDR`` in the environment (``pktlab xpmgr -s``) the connections arrive over
fd 0 with SCM_RIGHTS, each with its NUL-terminated address; the function runs once per
connection, concurrently, and the process exits when the manager closes fd 0.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from packetlab.controller.session import EndpointSession

__all__ = ["describe_error", "load_mlet", "main"]

log = Logger(namespace="pymlet")
MAX_FDS = 16


def load_mlet(target: str) -> Callable[..., Any]:
    """The mlet function of TARGET (a ``.py`` path or a module path, ``:name`` optional)."""
    name, func = target, ""
    if not os.path.isfile(target) and ":" in target:
        name, func = target.rsplit(":", 1)
    if name.endswith(".py") or os.path.isfile(name):
        path = Path(name).resolve()
        sys.path.insert(0, str(path.parent))  # its siblings (examples/_common.py) import
        spec = importlib.util.spec_from_file_location(f"_mlet_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    fn = getattr(module, func or "mlet", None)
    if not callable(fn):
        raise ImportError(f"{name} has no function {func or 'mlet'}(session, args)")
    return fn


def describe_error(e: BaseException) -> str:
    """`IndexError: list index out of range (at exp.py:44, in mlet)`: the error and the
    innermost line of the experiment's own code it came from (not packetlab's, Twisted's
    or the standard library's), so that a bug in an mlet can be found without a traceback."""
    import traceback

    text = f"{type(e).__name__}: {e}"
    skip = (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # packetlab
        os.path.dirname(os.path.dirname(os.path.abspath(defer.__file__))),  # twisted
        os.path.dirname(os.path.abspath(os.__file__)),  # the standard library
    )
    frames = traceback.extract_tb(e.__traceback__)
    ours = [
        f
        for f in frames  # nor the import machinery's (`<frozen importlib._bootstrap>`)
        if not f.filename.startswith("<frozen ")
        and not os.path.abspath(f.filename).startswith(skip)
    ]
    if ours:
        f = ours[-1]
        text += f" (at {os.path.basename(f.filename)}:{f.lineno}, in {f.name})"
    return text


async def _run_one(
    reactor: Any, fn: Callable[..., Any], args: list[str], fd: int, address: str
) -> None:
    session = EndpointSession(reactor=reactor, start=False)
    reactor.adoptStreamConnection(fd, socket.AF_UNIX, Factory.forProtocol(lambda: session))
    await session.ready
    session.peer = address  # the endpoint's, not our Unix socket's
    try:
        result = fn(session, args)
        if inspect.isawaitable(result):
            await result
    finally:
        await session.close()


class _Handover:
    """fd 0 in singleton mode: connections arrive with SCM_RIGHTS."""

    def __init__(self, reactor: Any, fn: Callable[..., Any], args: list[str]) -> None:
        self.reactor = reactor
        self.fn = fn
        self.args = args
        self.sock = socket.socket(fileno=os.dup(0))
        self.sock.setblocking(False)
        self.runs: list[Deferred[None]] = []
        self.failed = 0
        self.ended: Deferred[None] = Deferred()

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "pymlet"

    def doRead(self) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(self.sock, 4096, MAX_FDS)
        except BlockingIOError:
            return
        if not msg and not fds:
            self.reactor.removeReader(self)
            self.sock.close()
            defer.DeferredList(self.runs, consumeErrors=True).addBoth(
                lambda _: self.ended.callback(None)
            )
            return
        address = msg.split(b"\0", 1)[0].decode("utf-8", "replace")
        for fd in fds:
            d = Deferred.fromCoroutine(_run_one(self.reactor, self.fn, self.args, fd, address))
            os.close(fd)  # adoptStreamConnection took its own copy
            d.addErrback(self._failed)
            self.runs.append(d)

    def _failed(self, f: Any) -> None:
        self.failed += 1
        log.failure("mlet run failed", f)

    def connectionLost(self, reason: Any) -> None:
        pass


async def _main(reactor: Any, target: str, args: list[str]) -> int:
    fn = load_mlet(target)
    if "EPADDR" in os.environ:
        await _run_one(reactor, fn, args, 0, os.environ["EPADDR"])
        return 0
    handover = _Handover(reactor, fn, args)
    reactor.addReader(handover)
    await handover.ended
    return 1 if handover.failed else 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m packetlab.controller.pymlet TARGET [ARGS...]", file=sys.stderr)
        sys.exit(2)

    # A Ctrl-C in the terminal reaches the whole process group; the manager decides when
    # an mlet ends (its first SIGINT lets running mlets finish, the second SIGTERMs them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    if argv[0] == "--check":
        sys.exit(_check(argv[1:]))

    async def entry(reactor: Any) -> None:
        from packetlab import clockstep

        clockstep.install(reactor)  # a stepped wall clock: the timers keep their delays
        try:
            code = await _main(reactor, argv[0], argv[1:])
        except SystemExit as e:  # argparse's usage error (2) in the mlet: its status
            code = _exit_status(e)
        except Exception as e:
            print(f"mlet {argv[0]}: {describe_error(e)}", file=sys.stderr)
            code = 1
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: Deferred.fromCoroutine(entry(reactor)))


def _check(argv: list[str]) -> int:
    """``--check TARGET ARGS``: TARGET's ``check(args)``, if it has one (pymletcheck.py):
    0 when it took them, else 2 (or the status it exited with) and why on stderr."""
    if not argv:
        print("usage: python -m packetlab.controller.pymlet --check TARGET [ARGS...]",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        check = getattr(load_mlet(argv[0]), "__globals__", {}).get("check")
        if callable(check):
            check(argv[1:])
    except SystemExit as e:
        return _exit_status(e)
    except Exception as e:
        print(f"mlet {argv[0]}: {describe_error(e)}", file=sys.stderr)
        return 2
    return 0


def _exit_status(e: SystemExit) -> int:
    """The status `sys.exit(code)` asks for (a text is said on stderr, status 1)."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
