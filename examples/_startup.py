"""Imported first by every example: while the example is still starting (its imports,
~0.3 s), a Ctrl-C ends it at once with one line and status 130, as `pktlab`'s start-up
(packetlab/__main__.py), not with Python's KeyboardInterrupt traceback from the middle
of an import. `run_reactor` (`_common.react`) puts its own handling in place later; an
example that catches KeyboardInterrupt itself calls `restore()` first.

Only the standard library here, so that the guard is in place before anything slow is
imported; and only when an example is the program run (`python examples/NAME.py`), not
when a test imports one.
"""

import os
import signal
import sys


def _quit(signum: int, frame: object) -> None:
    os.write(2, f"\n{os.path.basename(sys.argv[0])}: interrupted\n".encode())
    os._exit(130)


def restore() -> None:
    """Ctrl-C raises KeyboardInterrupt again (Python's default)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def missing_packetlab(python: str = sys.executable) -> str | None:
    """The one line for a Python without packetlab (the README's `python
    examples/http_get.py` outside the .venv was a ModuleNotFoundError traceback from
    _common.py), or None when it is there."""
    import importlib.util

    if importlib.util.find_spec("packetlab") is not None:
        return None
    name = os.path.basename(sys.argv[0])
    return (
        f"{name}: packetlab is not installed in this Python ({python}): run "
        f"`bash scripts/setup.sh` once, then `.venv/bin/python examples/{name}`"
    )


_here = os.path.dirname(os.path.abspath(__file__))
_as_program = os.path.dirname(os.path.abspath(sys.argv[0])) == _here
if _as_program and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _quit)
if _as_program and __name__ != "__main__":
    _missing = missing_packetlab()
    if _missing is not None:
        sys.exit(_missing)

if __name__ == "__main__":  # a module, but `python examples/_startup.py` should say so
    sys.exit(
        f"{os.path.basename(sys.argv[0])}: a module the examples import, not an example: "
        "run examples/http_get.py, dns_query.py or udp_train.py (docs/controller.md)"
    )
