"""Named network namespaces (``ip netns``): create, delete, run commands and code inside.

Three ways to do work in a namespace:

* :meth:`NetNS.run` / :meth:`NetNS.popen`: a command through ``ip netns exec``;
* :meth:`NetNS.enter`: switch the *calling thread* into the namespace (``setns``). Sockets
  created inside stay in the namespace after leaving it, so a reactor in the root namespace
  can serve sockets that live in a testbed;
* :meth:`NetNS.call`: run a Python callable in a fresh thread that has entered the namespace.

Needs root (CAP_SYS_ADMIN) and iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x4000_0000
NETNS_RUN_DIR = "/run/netns"
_libc: Any = None


class TestbedError(RuntimeError):
    """A testbed (namespace, link, address, route, shaping) operation failed."""

    __test__ = False  # not a pytest test class despite the name


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def ip_binary() -> str:
    path = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)
    if path is None:
        raise TestbedError("the 'ip' command (Debian package iproute2) is not installed")
    return path


def run_cmd(
    argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command, raising TestbedError with its stderr when ``check`` and it fails."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestbedError(f"{' '.join(argv)}: {exc}") from exc
    if check and proc.returncode != 0:
        # one line: `ip -batch` adds `Command failed -:N` under the error
        detail = "; ".join(
            ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()
        )
        raise TestbedError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc


def ip_batch(lines: Sequence[str], *, netns: str | None = None, force: bool = False) -> None:
    """Run ``ip`` commands (without the leading ``ip``) in one process."""
    if not lines:
        return
    argv = [ip_binary()]
    if netns is not None:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    run_cmd([*argv, "-batch", "-"], input="".join(f"{ln}\n" for ln in lines))


def list_netns() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if not n.startswith("."))
    except FileNotFoundError:
        return []


class NetNS:
    """A named network namespace (``/run/netns/NAME``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = os.path.join(NETNS_RUN_DIR, name)

    def __repr__(self) -> str:
        return f"NetNS({self.name!r})"

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def create(self) -> None:
        run_cmd([ip_binary(), "netns", "add", self.name])

    def pids(self) -> list[int]:
        proc = run_cmd([ip_binary(), "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def kill_all(self, grace: float = 1.0) -> None:
        """End the processes running inside: SIGTERM, then SIGKILL after ``grace`` s."""
        pids = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                if pids:
                    time.sleep(0.02)
            if not pids:
                return

    def delete(self) -> None:
        """Kill what runs inside, then remove the namespace (its links go with it)."""
        if not self.exists():
            return
        self.kill_all()
        run_cmd([ip_binary(), "netns", "delete", self.name], check=False)

    # -- doing work inside ----------------------------------------------------------------

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return [ip_binary(), "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside and wait for it (text output captured)."""
        return run_cmd(self.exec_argv(argv), input=input, timeout=timeout, check=check)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside; the caller owns the process (Testbed.popen tracks it)."""
        return subprocess.Popen(self.exec_argv(argv), **kwargs)

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Switch the calling thread into the namespace for the ``with`` body."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:  # a namespace deleted under us: one line, not an OSError traceback
                target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                finally:
                    os.close(target)
            except OSError as exc:
                raise TestbedError(
                    f"cannot enter namespace {self.name}: {exc.strerror or exc}"
                ) from exc
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def call(
        self, fn: Callable[..., T], /, *args: Any, timeout: float | None = 60.0, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a new thread inside the namespace; return its result.

        Exceptions propagate; TestbedError if it does not finish within ``timeout`` seconds.
        """
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                with self.enter():
                    box["result"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc

        worker = threading.Thread(target=body, name=f"netns-{self.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise TestbedError(f"{fn!r} in {self.name} did not finish in {timeout} s")
        if "error" in box:
            raise box["error"]
        result: T = box["result"]
        return result

    def set_sysctls(self, values: Mapping[str, str | int]) -> None:
        """Write ``net.*`` sysctls of this namespace (keys with dots, as in sysctl.conf)."""

        def write() -> None:
            for key, value in values.items():
                path = "/proc/sys/" + key.replace(".", "/")
                try:
                    with open(path, "w") as fh:
                        fh.write(str(value))
                except OSError as exc:
                    raise TestbedError(f"sysctl {key}={value} in {self.name}: {exc}") from exc

        self.call(write)

    def get_sysctl(self, key: str) -> str:
        def read() -> str:
            with open("/proc/sys/" + key.replace(".", "/")) as fh:
                return fh.read().strip()

        return self.call(read)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, already dead but not yet reaped, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
