"""The mlet contract a reference C mlet relies on (PROTOCOL.md §7.3 step 4), at the
system-call level: the endpoint's socket on fd 0 and only `EPADDR=<address>` in the
environment; in `-s` mode the socket passed over the control socket with SCM_RIGHTS, the
payload being the NUL-terminated address."""

from __future__ import annotations

import io
import os
import socket
from typing import Any

from tls_world import home_fixture

from packetlab.controller.xpmgr import Manager
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.controller.xpmgrhand import HandOver
from packetlab.ppks import PktlabHome


class SpawnRecorder:
    """A reactor that records spawnProcess calls (nothing runs)."""

    def __init__(self) -> None:
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(self, proto: Any, path: str, args: list[str], env: dict[str, str],
                     childFDs: dict[int, Any]) -> Any:  # fmt: skip
        self.spawned.append({"path": path, "args": args, "env": env, "fds": childFDs})

        class Proc:
            pid = 4242

        return Proc()


class Worker:
    address = "192.0.2.7"
    process: Any = None


home = home_fixture(command=False)


def manager(home: PktlabHome, reactor: Any, *, singleton: bool = False) -> Manager:
    r = home.root
    text = (
        f"EnableExpPublication 0\nControllerPrivkeyPath {r}/keys/k_xc\n"
        f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:::\n"
    )
    return Manager(reactor, parse_xpmgr_config(text), ["/bin/true", "arg1", "-x"],
                   singleton=singleton, progress=io.StringIO())  # fmt: skip


def test_each_mlet_gets_the_socket_on_fd_0_and_only_epaddr(home: PktlabHome) -> None:
    reactor = SpawnRecorder()
    m = manager(home, reactor)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        m._launch(Worker(), theirs)  # type: ignore[arg-type]
        [s] = reactor.spawned
        assert s["path"] == "/bin/true" and s["args"] == ["/bin/true", "arg1", "-x"]
        assert s["env"] == {"EPADDR": "192.0.2.7"}  # nothing else of ours leaks in
        assert s["fds"][0] == theirs.fileno()


def test_singleton_mode_sends_the_socket_with_its_nul_terminated_address(
    home: PktlabHome,
) -> None:
    m = manager(home, SpawnRecorder(), singleton=True)
    control, mlet_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # session 29: the control socket is written through a non-blocking HandOver
    m._control = HandOver(m.reactor, control, m._single_took, m._single_deaf, m._single_refused)
    ours, theirs = socket.socketpair()
    with control, mlet_end, ours, theirs:
        m._launch(Worker(), theirs)  # type: ignore[arg-type]
        msg, fds, _, _ = socket.recv_fds(mlet_end, 256, 4)
        assert msg == b"192.0.2.7\0" and len(fds) == 1
        try:
            assert os.fstat(fds[0]).st_ino == os.fstat(theirs.fileno()).st_ino
        finally:
            os.close(fds[0])
