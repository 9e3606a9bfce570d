"""Start the wrapped program pointed at the SOCKS server, and report how it ended.

Interception (docs/wrap.md): by default proxychains-ng's LD_PRELOAD library
(Debian's proxychains4) hooks connect() and the name lookup calls of every dynamically
linked program and its children and sends them through our SOCKS server, names resolved
remotely (`proxy_dns`). `socks_env` instead only sets ALL_PROXY for SOCKS-aware tools.
With timing fidelity the clock shim is preloaded too.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

EXIT_WRAP_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND = 125, 126, 127


class LaunchError(Exception):
    def __init__(self, text: str, status: int = EXIT_WRAP_FAILED) -> None:
        super().__init__(text)
        self.status = status


def proxychains_conf(host: str, port: int, read_timeout: float) -> str:
    return (
        "# written by pktlab wrap\n"
        "strict_chain\n"
        "quiet_mode\n"
        "proxy_dns\n"
        "remote_dns_subnet 224\n"
        f"tcp_read_time_out {int(read_timeout * 1000)}\n"
        "tcp_connect_time_out 10000\n"
        "[ProxyList]\n"
        f"socks5 {host} {port}\n"
    )


def child_env(
    base: dict[str, str],
    *,
    host: str,
    port: int,
    conf_path: str | None,
    preload: Sequence[str],
    clock_path: str | None,
) -> dict[str, str]:
    """The program's environment: ours plus the proxy settings."""
    env = dict(base)
    url = f"socks5h://{host}:{port}"
    env["PKTLAB_WRAP_SOCKS"] = f"{host}:{port}"
    if conf_path is None:  # SOCKS-aware tools only
        env["ALL_PROXY"] = env["all_proxy"] = url
        for k in ("NO_PROXY", "no_proxy"):
            env.pop(k, None)
    else:
        env["PROXYCHAINS_CONF_FILE"] = conf_path
        env["PROXYCHAINS_QUIET_MODE"] = "1"
        # A proxy setting would make SOCKS-aware tools talk to us through ourselves.
        for k in ("ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY",
                  "https_proxy"):  # fmt: skip
            env.pop(k, None)
    if clock_path is not None:
        env["PKTLAB_WRAP_CLOCK"] = clock_path
    if preload:
        old = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = " ".join([*preload, old]).strip()
    return env


def find_program(name: str) -> str:
    if os.sep in name:
        if not os.path.exists(name):
            raise LaunchError(f"{name}: no such file", EXIT_NOT_FOUND)
        if not os.access(name, os.X_OK) or os.path.isdir(name):
            raise LaunchError(f"{name}: not executable", EXIT_NOT_EXECUTABLE)
        return name
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"{name}: command not found", EXIT_NOT_FOUND)
    return found


def preload_ignored(path: str, euid: int | None = None) -> bool:
    """Will the dynamic loader ignore LD_PRELOAD for `path` (set-user/group-ID or file
    capabilities it would gain: "secure execution")? Then nothing of it is intercepted
    (Debian's ping has cap_net_raw). Not for root, who gains nothing."""
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def exit_status(reason: Failure) -> int:
    """The shell's view: the exit code, or 128 + the signal that killed the program."""
    value: Any = reason.value
    sig = getattr(value, "signal", None)
    if sig:
        return 128 + int(sig)
    code = getattr(value, "exitCode", None)
    return int(code) if code is not None else EXIT_WRAP_FAILED


class Child(ProcessProtocol):
    """The wrapped program, with our stdin/stdout/stderr: nothing is copied."""

    def __init__(self) -> None:
        self.ended: Deferred[int] = Deferred()
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid if self.transport is not None else None

    def processEnded(self, reason: Failure) -> None:
        if not self.ended.called:
            self.ended.callback(exit_status(reason))

    def forward(self, signo: int) -> None:
        """Pass on a signal we got, unless the terminal sent it to the program already."""
        if self.pid is None or not terminal_sent(signo, _pgid(self.pid), foreground_pgrp()):
            self.signal(signo)

    def signal(self, signo: int) -> None:
        if self.transport is not None and not self.ended.called:
            try:
                self.transport.signalProcess(signo)
            except Exception:  # already gone
                pass


def forward_signal(pid: int, signo: int) -> None:
    """Pass a signal we got on to `pid` (a process the program left running), unless the
    terminal sent it there already."""
    if not terminal_sent(signo, _pgid(pid), foreground_pgrp()):
        try:
            os.kill(pid, signo)
        except OSError:  # gone meanwhile
            pass


def inherited_fds() -> list[int]:
    """Descriptors past 0-2 given to us by whoever ran us (`3<file`, a shell's `<(...)`
    as /dev/fd/63), for the program to get as natively. Ours are all close-on-exec
    (Python makes every descriptor it opens non-inheritable, PEP 446); given ones are
    not. Before session 25 (wrapb25) only 0-2 were passed: `sh -c 'cat <&3' 3<file`
    read proxychains' pipe at fd 3 instead and hung, `curl -K <(...)` found no file."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    fds = []
    for name in names:
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return sorted(fds)


def spawn(reactor: Any, argv: Sequence[str], env: dict[str, str]) -> Child:
    path = find_program(argv[0])
    child = Child()
    fds: dict[int, Any] = {0: 0, 1: 1, 2: 2}
    fds.update((fd, fd) for fd in inherited_fds())
    reactor.spawnProcess(child, path, list(argv), env=env, childFDs=fds)
    return child


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a terminal sends to its whole foreground process group (Ctrl-C, hang-up).
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP)


def terminal_sent(signo: int, child_pgid: int | None, fg_pgrp: int | None) -> bool:
    """Did the terminal deliver `signo` to the program itself? A Ctrl-C reaches every
    process of the terminal's foreground group, the program (which shares our group)
    included; forwarding it too gave the program two SIGINTs where a native run gets one.
    (A `kill -INT` of our pid alone, while we run in the foreground, is then not passed
    on: Ctrl-C, or SIGTERM, is.)"""
    return signo in TERMINAL_SIGNALS and child_pgid is not None and child_pgid == fg_pgrp


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def foreground_pgrp() -> int | None:
    """The foreground process group of our controlling terminal (None: no terminal)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd)
        except OSError:
            continue
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return None
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
