"""iperf3's `-I FILE` (`--pidfile`) for `pktlab run throughput`: this process's PID
written to FILE before the test and the file removed when the command ends, as iperf3
3.12's client does (iperf_create_pidfile / iperf_delete_pidfile): a script that runs the
client in the background finds the process to signal there (SIGINT and SIGTERM stop the
test with its totals, as native's)."""

from __future__ import annotations

import atexit
import os

from packetlab.cli.run import RunError

__all__ = ["ANOTHER", "PidFile"]

#: iperf3 3.12's words when FILE names a live process (it leaves the file alone)
ANOTHER = "Another instance of iperf3 appears to be running"


def _running(path: str) -> bool:
    """FILE holds the PID of a live process, as iperf3 reads it: atoi() of its first 7
    bytes, then kill(pid, 0) (another user's process, EPERM, counts as not running)."""
    try:
        with open(path, "rb") as f:
            head = f.read(7)
    except OSError:
        return False
    digits = head.lstrip().decode("ascii", "replace")
    n = len(digits) - len(digits.lstrip("+-0123456789"))  # atoi's prefix, roughly
    try:
        pid = int(digits[:n]) if n else 0
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class PidFile:
    """FILE written at `create()` (iperf3's words if it cannot be) and removed once at
    `remove()`, or at the interpreter's exit if the command ended before (a failure
    before the test ran)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False

    def create(self) -> None:
        if _running(self.path):
            raise RunError(ANOTHER)
        try:  # iperf3: O_WRONLY|O_CREAT|O_TRUNC, 0600, the PID without a newline
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise RunError(f"error - unable to write PID file: {e.strerror or e}") from None
        self.written = True
        atexit.register(self.remove)

    def remove(self) -> None:
        if not self.written:
            return
        self.written = False
        atexit.unregister(self.remove)
        try:
            os.unlink(self.path)
        except OSError:  # gone already (removed by hand): nothing to tidy
            pass
