"""`pktlab xpmgr`: the experiment manager, command line as the reference pktxpmgr (§7.1).

pktlab xpmgr [-hs] [-c XPMGR_CONF_PATH] [-a ADDR[:PORT]] [-p PUBLISH_ADDR[:PORT]]
             [-n ATTEMPT_CNT] [-i HOSTID] MLET [MLET_ARGS ...]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

USAGE = (
    "pktlab xpmgr [-hs] [-c XPMGR_CONF_PATH] [-a ADDR[:PORT]] [-p PUBLISH_ADDR[:PORT]] "
    "[-n ATTEMPT_CNT] [-i HOSTID] MLET [MLET_ARGS ...]"
)
EPILOG = """\
MLET is a program that speaks PacketLab unencrypted on fd 0 (EPADDR in its environment
holds the endpoint's address; a bare name is looked up on PATH), or a Python experiment: a
.py file or a module path whose `async def mlet(session, args)` gets a started controller
session (see docs/xpmgr.md). It is checked before anything listens (a program: as execve
would take it; `make -C examples/mlets` builds the C example mlets, test_http_get among
them).

Passive mode (default) listens on -a (default 0.0.0.0:20556). With `EnableProxyMode 1`
in xpmgr.conf, -a is the proxy's setup port (default port 20557) and the manager keeps
TargetBacklogConn backlog connections there per snikey.

Each endpoint's outcome is one JSON line (hostid, address, status, exit code, linfo,
output) in ResultsPath (xpmgr.conf) or --results (default ./xpmgr-results.jsonl); with -s
the singleton's own line (its output, status and the endpoints handed to it) ends it. The
counts (seen/running/done/failed) go to stderr: on a terminal one line redrawn in place
(after a second), elsewhere a line per change; the final counts end the run. The first
SIGINT wraps up (stop accepting, wait for running mlets), the second SIGTERMs the running
mlets (SIGKILL 2 s later for any left), records them as failed ("interrupted") and exits
130. SIGTERM and SIGHUP do both at once, with exit status 143 and 129.

Exit status otherwise: 0 when an endpoint's mlet succeeded (or none came); 2 when the
first mlet to end exited 2 having written nothing on its fd 0 (a usage error: the manager
stops at once; an mlet that spoke to its endpoint and then exits 2 is an ordinary
failure), or a Python mlet's check(args) refused them before listening; 3 when every
endpoint failed; 1 for the manager's own failure (config, publication, -s's singleton)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = USAGE
    parser.description = "Experiment manager: accept endpoints and run an mlet on each."
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("-s", action="store_true", dest="singleton",
                        help="singleton-mlet mode: one mlet gets every endpoint over fd 0 "
                        "(SCM_RIGHTS)")  # fmt: skip
    parser.add_argument("-c", dest="config", metavar="XPMGR_CONF_PATH",
                        help="config [~/.pktlab/xpmgr.conf, else ./xpmgr.conf]")  # fmt: skip
    parser.add_argument("-a", dest="address", metavar="ADDR[:PORT]",
                        help="listen address (passive) or proxy setup port (active)")  # fmt: skip
    parser.add_argument("-p", dest="publish", metavar="PUBLISH_ADDR[:PORT]",
                        help="controller address to publish (default: inferred)")  # fmt: skip
    parser.add_argument("-n", dest="attempts", type=_count, metavar="ATTEMPT_CNT",
                        help="wrap up after this many endpoints completed TLS setup")  # fmt: skip
    parser.add_argument("-i", dest="hostid", metavar="HOSTID",
                        help="publish hostid=HOSTID (a glob the broker matches)")  # fmt: skip
    parser.add_argument("--results", metavar="FILE",
                        help="per-endpoint JSON lines, with -s the singleton's line "
                        "last (default ResultsPath, else ./xpmgr-results.jsonl; '-' for "
                        "stdout)")  # fmt: skip
    parser.add_argument("mlet", metavar="MLET", help="the experiment program run per endpoint")
    rest = parser.add_argument("mlet_args", metavar="MLET_ARGS", nargs=argparse.REMAINDER,
                               help="its arguments")  # fmt: skip
    rest.required = False  # argparse counts a REMAINDER as required: "MLET, MLET_ARGS"


def _count(text: str) -> int:
    """ASCII decimals, as the reference's strtoul reads them (int() also took " 3", "3_0"
    and other scripts' digits such as "\u0663")."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number of endpoints, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from packetlab.controller.xpmgrconf import (
        XpmgrConfigError,
        default_config_path,
        load_xpmgr_config,
    )

    if args.attempts is not None and args.attempts < 1:
        print("pktlab xpmgr: -n must be at least 1", file=sys.stderr)
        return 2
    for opt, value, glob in (("-p", args.publish, False), ("-i", args.hostid, True)):
        why = None if value is None else _xdescr_value_problem(value, glob)
        if not why and opt == "-p" and value is not None:
            from packetlab.controller.xpmgr import parse_host_port

            try:
                if parse_host_port(value, 20556).port == 0:  # the broker would refuse it
                    why = "port 0 cannot be published: endpoints connect to the port given"
            except ValueError as e:
                why = str(e)
        if why:
            print(f"pktlab xpmgr: {opt} {value!r}: {why}", file=sys.stderr)
            return 2
    path = Path(args.config) if args.config else default_config_path()
    try:
        cfg = load_xpmgr_config(path)
    except XpmgrConfigError as e:
        hint = "" if args.config else " (run `pktlab init` to write a demo one, or give -c)"
        print(f"pktlab xpmgr: config: {e}{hint}", file=sys.stderr)
        return 1
    for warning in cfg.warnings:
        print(f"pktlab xpmgr: config: warning: {warning}", file=sys.stderr)
    given = [opt for opt, v in (("-p", args.publish), ("-i", args.hostid)) if v is not None]
    if given and not cfg.enable_publication:  # they were ignored without a word
        print(
            f"pktlab xpmgr: warning: {' and '.join(given)} only shape a publication, and "
            f"{cfg.path} has EnableExpPublication 0: nothing is published (set it to 1, with "
            "BrokerAddr and PubAgentCertPath; docs/xpmgr.md)",
            file=sys.stderr,
        )
    results_path = args.results or cfg.results_path or "xpmgr-results.jsonl"
    from packetlab.controller.pymletcheck import precheck

    refused = precheck(args.mlet, list(args.mlet_args))  # (a Python mlet's own `check`)
    if refused:
        print(f"pktlab xpmgr: the mlet's check(args) refused them: {refused}", file=sys.stderr)
        return 2
    return _serve(args, cfg, results_path)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or no file
        return False


def _xdescr_value_problem(value: str, glob: bool) -> str | None:
    """Why `value` cannot be an xdescr value (-p's controller_addr, -i's hostid)."""
    from packetlab.wire.nvlist import GLOB_CHARS, VALUE_CHARS

    if not value:
        return "empty"
    if len(value) > 255:
        return f"{len(value)} characters (at most 255)"
    allowed = VALUE_CHARS | GLOB_CHARS if glob else VALUE_CHARS
    bad = sorted({c for c in value if c not in allowed})
    if bad:
        return f"characters an xdescr value cannot hold: {''.join(bad)!r}"
    return None


def _serve(args: argparse.Namespace, cfg: Any, results_path: str) -> int:
    from twisted.internet import defer, task
    from twisted.logger import (
        FilteringLogObserver,
        ILogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from packetlab.cli.xpmgr_screen import Screen
    from packetlab.controller.xpmgr import Manager, ManagerError, parse_host_port
    from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT, DEFAULT_PROXY_SETUP_PORT

    port = DEFAULT_PROXY_SETUP_PORT if cfg.enable_proxy else DEFAULT_CONTROLLER_PORT
    try:
        address = parse_host_port(args.address, port) if args.address else None
    except ValueError as e:
        print(f"pktlab xpmgr: -a: {e}", file=sys.stderr)
        return 2
    results = sys.stdout
    if results_path != "-":
        try:
            results = open(results_path, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as e:
            where = "--results" if args.results else f"{cfg.path}: ResultsPath"
            print(f"pktlab xpmgr: {where}: cannot write {results_path}: {e.strerror}",
                  file=sys.stderr)  # fmt: skip
            return 1
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    # "Main loop terminated." after every run, also right after a one-line start error
    predicate.setLogLevelForNamespace("twisted.internet.base", LogLevel.warn)
    screen = Screen(sys.stdout, sys.stderr) if _is_terminal(sys.stderr) else None
    log_out: ILogObserver = textFileLogObserver(sys.stderr)
    if screen is not None:
        log_out = screen.observer(log_out)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(log_out, [predicate])], redirectStandardIO=False
    )
    code = [1]

    async def main(reactor: Any) -> None:
        from packetlab import clockstep

        clockstep.install(reactor)  # a stepped wall clock: the timers keep their delays
        try:
            manager = Manager(
                reactor,
                cfg,
                [args.mlet, *args.mlet_args],
                address=address,
                attempts=args.attempts,
                singleton=args.singleton,
                results=results,
                lines=screen is None,
                publish_addr=args.publish,
                hostid=args.hostid,
            )
        except ManagerError as e:
            print(f"pktlab xpmgr: {e}", file=sys.stderr)
            return
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(manager.interrupt))
        # SIGTERM (kill, a supervisor) and SIGHUP (a closed terminal): at their default
        # (or the reactor's SIGTERM stop) the running mlets were left orphaned, still
        # running, and their result lines lost. Once the reactor runs: it installs its
        # own SIGTERM handler as it starts, over one set before.
        handler = _terminator(reactor, manager)
        reactor.callWhenRunning(signal.signal, signal.SIGTERM, handler)
        signal.signal(signal.SIGHUP, handler)
        if screen is not None:
            # (none once the final counts are printed: a tick before the exit would
            # draw them again under themselves)
            screen.start(reactor, lambda: "" if manager.finished.called else manager.summary())
        try:
            await manager.start()
        except Exception as e:
            if screen is not None:
                screen.stop()
            print(f"pktlab xpmgr: cannot start: {e}", file=sys.stderr)
            return
        code[0] = await manager.finished

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
    except SystemExit:
        pass
    finally:
        if screen is not None:
            screen.stop()
        if results is not sys.stdout:
            try:
                results.close()
            except OSError:  # what it could not take was said, and went to stderr
                pass
    return code[0]


def _terminator(reactor: Any, manager: Any) -> Any:
    """A signal handler: `manager.terminate` with the signal's name and 128 + its number."""

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        reactor.callFromThread(manager.terminate, name, 128 + signum)

    return handler
