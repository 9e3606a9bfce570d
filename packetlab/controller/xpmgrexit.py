"""The experiment manager's exit status from its endpoints' outcomes (docs/xpmgr.md).

The spec does not say what the reference pktxpmgr does with its mlets' statuses
(PROTOCOL.md §7.3; BROKER-PROXY-OBSERVED.md: exit 1 on a broker's error result or a
failed bootstrap). This manager exited 0 whatever its mlets did, and a script running it
could not tell an experiment that ran nowhere from one that ran everywhere, so:

* 0: at least one endpoint's mlet succeeded (or no endpoint came);
* 2 (`EXIT_USAGE`, as argparse and the example C mlets): the first mlet to end, before
  any had succeeded, exited 2, the usage-error status, having written nothing on its
  fd 0: its arguments are wrong and would be wrong at every endpoint, so the manager
  stops greeting endpoints at once. An mlet that exits 2 after it spoke to its endpoint
  (a Python mlet's `sys.exit(2)` because that endpoint refused something) exits 2 for
  that endpoint's reason: an ordinary failure (session 32: it stopped the manager too);
* 3 (`EXIT_ALL_FAILED`): endpoints came and every one failed (its mlet, or its setup);
* the manager's own failures (1: config, publication, bootstrap, a failed singleton) and
  signals (130, 143, 129) come first.

With `-s` the singleton's own status is the experiment's (1 when it failed): these rules
are for one mlet per endpoint.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXIT_ALL_FAILED", "EXIT_USAGE", "all_failed_words", "usage_refusal", "verdict"]

EXIT_USAGE = 2
EXIT_ALL_FAILED = 3


def usage_refusal(process: Any, earlier: int, spoke: int) -> str | None:
    """The line that stops the manager when this mlet, the first to end (`earlier`: how
    many mlets ended before it), exited with the usage-error status before it wrote
    anything on its fd 0 (`spoke`: bytes it wrote there), else None. Its last stderr line
    (what it said was wrong) is quoted."""
    if process is None or earlier or spoke:
        return None
    if process.signal is not None or process.exit_code != EXIT_USAGE:
        return None
    said = [x for x in bytes(process.errors).decode("utf-8", "replace").splitlines() if x.strip()]
    why = f": {said[-1].strip()}" if said else ""
    return (
        f"xpmgr: the mlet exited with status {EXIT_USAGE} (a usage error) at the first "
        f"endpoint{why}; its arguments would fail at every endpoint: not starting it on more "
        f"(exit status {EXIT_USAGE})"
    )


def verdict(own: int, done: int, failed: int, usage: bool) -> int:
    """The exit status: `own` (the manager's failure or signal) first, then the mlets'."""
    if own:
        return own
    if usage:
        return EXIT_USAGE
    if failed and not done:
        return EXIT_ALL_FAILED
    return 0


def all_failed_words(failed: int) -> str:
    return f"xpmgr: no endpoint succeeded ({failed} failed): exit status {EXIT_ALL_FAILED}"
