"""packetlab: a Twisted implementation of the PacketLab measurement endpoint interface."""

__version__ = "0.1.0.dev0"


def _arm_early_interrupt(*, force: bool = False) -> None:
    """The `pktlab` console script imports this package first (before `packetlab.__main__`
    and `packetlab.cli`): from here on a Ctrl-C ends the process with `pktlab:
    interrupted` and 130, as later in the run, rather than a KeyboardInterrupt traceback
    of an import (~20 ms of imports came before `cli.main`'s `quit_on_interrupt`, session
    24). Only in that process (see `_pktlab_process`; `force`: `packetlab.__main__` run
    as the main module), over Python's default handler (not over SIG_IGN: a background
    job's), in the main thread. `_signal`, not `signal`: the interpreter has loaded it
    already, `signal` (and its enum) would be one more import on the start-up path."""
    import os
    import sys

    if not force and not _pktlab_process(os.path.basename(sys.argv[0] if sys.argv else "")):
        return
    import _signal

    def quit_now(signum: int, frame: object) -> None:
        try:
            sys.stderr.write("\npktlab: interrupted\n")
            sys.stderr.flush()
        finally:
            os._exit(130)

    try:
        if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
            _signal.signal(_signal.SIGINT, quit_now)
    except ValueError:  # not the main thread: signals are not ours to set
        pass


def _pktlab_process(argv0: str) -> bool:
    """`pktlab ...`, or `python [OPTIONS] -m packetlab ...` (whose argv[0] is "-m" while
    the package is imported; `python -m packetlab.cli.run_ping` is not the command)."""
    import sys

    if argv0 == "pktlab":
        return True
    if argv0 != "-m":
        return False
    words = getattr(sys, "orig_argv", [])
    at = words.index("-m") if "-m" in words else -1
    return at >= 0 and words[at + 1 : at + 2] == ["packetlab"]


_arm_early_interrupt()
