"""Build and tear down a :class:`Topology` as network namespaces joined by veth pairs.

Names: a testbed is ``plab-XXXXXX`` (random hex, or ``plab-NAME``); node N lives in the
namespace ``plab-XXXXXX-N``. Every veth is created directly inside its namespaces, so the
root namespace is never touched and deleting the namespaces removes everything.

Cleanup is guaranteed three ways: the context manager (``with Testbed(...) as tb``), an
atexit hook for testbeds this process brought up (unless ``persist=True``), and
:func:`down_all`, which removes every namespace with the ``plab-`` prefix.
A JSON state file per testbed (``/run/packetlab/testbeds``, or ``$PKTLAB_TESTBED_DIR``)
lets ``pktlab testbed status/down`` find testbeds made by other processes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import fcntl
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from packetlab.testbed.netns import (
    NetNS,
    TestbedError,
    ip_batch,
    ip_binary,
    list_netns,
    run_cmd,
)
from packetlab.testbed.topology import Address, Interface, Shape, Topology

T = TypeVar("T")

PREFIX = "plab-"
PREFIX_ENV = "PKTLAB_TESTBED_PREFIX"  # another prefix keeps test runs apart from each other
_NAME = re.compile(r"[a-z0-9]{1,12}")
STATE_ENV = "PKTLAB_TESTBED_DIR"
DEFAULT_STATE_DIR = "/run/packetlab/testbeds"

# Every node: no ICMP rate limiting (each traceroute probe is answered), no IPv6 DAD.
COMMON_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv4.icmp_msgs_per_sec": 1_000_000,
    "net.ipv4.icmp_msgs_burst": 1_000_000,
    "net.ipv6.icmp.ratelimit": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.default.accept_ra": 0,
}
ROUTER_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
}
OPTIONAL_SYSCTLS = ("net.ipv4.icmp_msgs_per_sec", "net.ipv4.icmp_msgs_burst")
SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17

_live: dict[str, Testbed] = {}
_live_lock = threading.Lock()


def state_dir() -> str:
    return os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR


def prefix() -> str:
    """Namespace prefix of testbeds: ``plab-``, or ``$PKTLAB_TESTBED_PREFIX``."""
    value = os.environ.get(PREFIX_ENV) or PREFIX
    if not re.fullmatch(r"[a-z][a-z0-9]{0,11}-", value):
        raise TestbedError(f"{PREFIX_ENV}={value!r}: 1-12 lowercase letters/digits and a '-'")
    return value


def full_name(name: str | None = None) -> str:
    """``plab-<name>`` (validated), or a fresh random one."""
    pre = prefix()
    if name is None:
        return pre + secrets.token_hex(3)
    short = name[len(pre) :] if name.startswith(pre) else name
    if not _NAME.fullmatch(short):
        raise TestbedError(f"testbed name {name!r}: 1-12 lowercase letters or digits")
    return pre + short


@dataclass(frozen=True, slots=True)
class TestbedInfo:
    """A testbed seen through its state file (``pktlab testbed status``)."""

    __test__ = False

    name: str
    topology: Topology
    created: str
    pid: int
    persist: bool
    live: bool  # all its namespaces exist


class Testbed:
    """A running (or to-be-run) topology. Use as a context manager, or up()/down()."""

    __test__ = False

    def __init__(
        self, topology: Topology, *, name: str | None = None, tx_checksum_offload: bool = False
    ) -> None:
        self.topology = topology
        self.name = full_name(name)
        # veth offloads TX checksums by default, so packets the kernel builds with
        # CHECKSUM_PARTIAL (UDP from sockets, TCP over IPv6, ...) cross the link with only
        # the pseudo-header sum in the checksum field, and routers quote them so. A real
        # NIC finishes them; with False (the default) the kernel does it before the veth.
        self.tx_checksum_offload = tx_checksum_offload
        self.persist = False
        self.is_up = False
        self._procs: list[subprocess.Popen[Any]] = []
        # The namespaces this object's up() made, while it has not succeeded; None: all
        # of them are ours (up() done, or a recorded testbed). down() deletes only those:
        # two `up`s of one name at once each deleted the other's, and a fixture's down()
        # after a refused up() deleted the namespaces it had clashed with.
        self._mine: list[str] | None = None

    def __repr__(self) -> str:
        return f"Testbed({self.name!r}, nodes={list(self.topology.nodes)})"

    # -- naming -----------------------------------------------------------------------------

    def netns_name(self, node: str) -> str:
        self.topology._node(node)
        return f"{self.name}-{node}"

    def ns(self, node: str) -> NetNS:
        return NetNS(self.netns_name(node))

    def namespaces(self) -> list[NetNS]:
        return [self.ns(n) for n in self.topology.nodes]

    def interfaces(self, node: str) -> list[Interface]:
        return self.topology.interfaces(node)

    def iface(self, node: str, peer: str | None = None) -> str:
        """Interface name of ``node`` (toward ``peer``; the first one if None)."""
        for i in self.topology.interfaces(node):
            if peer is None or i.peer == peer:
                return i.name
        raise TestbedError(f"node {node!r} has no interface toward {peer!r}")

    def addr(self, node: str, family: int = 4) -> Address:
        """The node's first IPv4 (family 4) or IPv6 (family 6) address."""
        return self.topology.address(node, family)

    # -- life cycle -------------------------------------------------------------------------

    def up(self, *, persist: bool = False) -> Testbed:
        """Create namespaces, links, addresses, routes and shaping. Undone on failure."""
        if self.is_up:
            return self
        self._mine = []
        # Checked before anything is made, for a clear message; the failure path deletes
        # only the namespaces made here (`_mine`), never someone else's.
        clash = [ns.name for ns in self.namespaces() if ns.exists()]
        if clash:
            short = self.name[len(prefix()) :]
            hint = (
                f"testbed {self.name} is up: `pktlab testbed down {short}` removes it"
                if os.path.exists(self._state_path())
                else "`pktlab testbed status` says whose they are"
            )
            raise TestbedError(f"namespaces exist already: {', '.join(clash)} ({hint})")
        self.persist = persist
        with _live_lock:
            if not persist:
                _live[self.name] = self
        try:
            self._build()
            self.is_up = True
            self._write_state()
            self._mine = None
        except BaseException:
            self._undo()
            raise
        return self

    def _undo(self) -> None:
        """`down()` after a failed or interrupted `up()`, carried through to the end: a
        Ctrl-C while it runs (a person pressing it again) would otherwise leave the rest
        of the testbed behind, unrecorded. `down()` is idempotent, so it starts again."""
        for _ in range(20):
            try:
                self.down()
            except KeyboardInterrupt:
                continue
            return

    def _build(self) -> None:
        topo = self.topology
        for ns in self.namespaces():  # one by one, to know which are ours
            try:
                ns.create()
            except TestbedError as exc:
                if ns.exists():  # made since the check: another `up` of this name
                    raise TestbedError(
                        f"namespace {ns.name} was made meanwhile by another process (another "
                        f"`up` of {self.name}?); removing what this one made"
                    ) from exc
                raise
            if self._mine is not None:
                self._mine.append(ns.name)
        for node in topo.nodes.values():
            values = dict(COMMON_SYSCTLS)
            if node.router:
                values.update(ROUTER_SYSCTLS)
            ns = self.ns(node.name)
            optional = {k: v for k, v in values.items() if k in OPTIONAL_SYSCTLS}
            ns.set_sysctls({k: v for k, v in values.items() if k not in OPTIONAL_SYSCTLS})
            with contextlib.suppress(TestbedError):  # per-namespace only on newer kernels
                ns.set_sysctls(optional)
        links = []
        for lk in topo.links:
            a, b = topo.link_interfaces(lk)
            # Distinct ifindexes on the two ends: with equal ones (both would be 2 in fresh
            # namespaces) the kernel defers the carrier-up event by up to a second, and
            # IPv6 neighbour discovery ignores solicitations until it runs.
            links.append(
                f"link add name {a.name} index {100 + 2 * lk.number} "
                f"netns {self.netns_name(a.node)} type veth "
                f"peer name {b.name} index {101 + 2 * lk.number} netns {self.netns_name(b.node)}"
            )
        ip_batch(links)
        for name in topo.nodes:
            lines = ["link set lo up"]
            for i in topo.interfaces(name):
                lines += [
                    f"addr add {i.ipv4} dev {i.name}",
                    f"addr add {i.ipv6} dev {i.name} nodad",
                    f"link set {i.name} up",
                ]
            lines += [r.ip_command() for r in topo.routes(name)]
            ip_batch(lines, netns=self.netns_name(name))
        for lk in topo.links:
            if lk.shape is not None:
                self._apply_shape(lk.number, lk.shape)
        if not self.tx_checksum_offload:
            for name in topo.nodes:
                ifnames = [i.name for i in topo.interfaces(name)]
                self.ns(name).call(_set_offloads, ifnames, False)
        self._wait_links_up()

    def _wait_links_up(self, timeout: float = 3.0) -> None:
        """Return once every veth reports operstate UP (normally at once)."""
        deadline = time.monotonic() + timeout
        pending = {n: {i.name for i in self.topology.interfaces(n)} for n in self.topology.nodes}
        while True:
            for node, names in list(pending.items()):
                out = run_cmd([ip_binary(), "-n", self.netns_name(node), "-o", "link"]).stdout
                up = {
                    ln.split(":")[1].strip().split("@")[0]
                    for ln in out.splitlines()
                    if "state UP" in ln
                }
                names -= up
                if not names:
                    del pending[node]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"links not up after {timeout} s: {pending}")
            time.sleep(0.02)

    def _apply_shape(self, number: int, shape: Shape | None) -> None:
        for end in self.topology.link_interfaces(self.topology.link(number)):
            argv = ["tc", "-n", self.netns_name(end.node), "qdisc"]
            if shape is None:
                run_cmd([*argv, "del", "dev", end.name, "root"], check=False)
            else:
                run_cmd([*argv, "replace", "dev", end.name, "root", *shape.tbf_args()])

    def shape(self, a: str, b: str, shape: Shape | None) -> None:
        """Shape (or, with None, unshape) the link between nodes ``a`` and ``b`` now."""
        number = self.topology.link_between(a, b).number
        self.topology.set_shape(number, shape)
        if self.is_up:
            self._apply_shape(number, shape)
            self._write_state()

    def down(self) -> None:
        """Stop tracked processes, then delete the namespaces (links and qdiscs go with them).

        Safe to call more than once and on a half-built testbed.
        """
        for proc in self._procs:
            _stop(proc)
        self._procs.clear()
        whole = self._mine is None
        mine = self.namespaces() if whole else [NetNS(n) for n in self._mine or ()]
        for ns in mine:
            ns.delete()
        left = [ns.name for ns in mine if ns.exists()]
        self.is_up = False
        with _live_lock:
            _live.pop(self.name, None)
        if whole:  # else the state file, if any, is another process's
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(self._state_path())
            if not left:  # this object owns nothing now: a later down() of it (a
                self._mine = []  # fixture's, after the test's) leaves a new testbed alone
        if left:
            raise TestbedError(_not_deleted(left, self.name))

    def __enter__(self) -> Testbed:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- doing work inside ------------------------------------------------------------------

    def run(
        self, node: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in ``node``'s namespace and wait for it."""
        return self.ns(node).run(argv, check=check, timeout=timeout)

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command in ``node``'s namespace; it is stopped at :meth:`down`."""
        proc = self.ns(node).popen(argv, **kwargs)
        self._procs.append(proc)
        return proc

    def wait_listening(self, node: str, port: int, timeout: float = 10.0) -> None:
        """Return once something in ``node`` listens on TCP ``port`` (a server just
        started with :meth:`popen` is not ready at once, least of all on a loaded host)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(node, ["ss", "-ltnH", f"sport = :{port}"], check=False).stdout
            if out.strip():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on TCP port {port} in {node} after {timeout:g} s"
                )
            time.sleep(0.05)

    def enter(self, node: str) -> AbstractContextManager[None]:
        """Switch the calling thread into ``node``'s namespace for a ``with`` body."""
        return self.ns(node).enter()

    def call(self, node: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a thread inside ``node``'s namespace."""
        return self.ns(node).call(fn, *args, **kwargs)

    # -- description and state --------------------------------------------------------------

    def describe(self) -> str:
        lines = [f"testbed {self.name} ({self.topology.kind})"]
        for node in self.topology.nodes.values():
            role = "router" if node.router else "host"
            lines.append(f"  {node.name:<4} {role:<6} netns {self.netns_name(node.name)}")
            for i in self.topology.interfaces(node.name):
                extra = ""
                lk = self.topology.link(i.link)
                if lk.shape is not None:
                    extra = f"  tbf {lk.shape.rate_bit} bit/s"
                lines.append(f"         {i.name:<8} {i.ipv4!s:<15} {i.ipv6}{extra}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "persist": self.persist,
            "namespaces": {n: self.netns_name(n) for n in self.topology.nodes},
            "topology": self.topology.to_dict(),
        }

    def _state_path(self) -> str:
        return os.path.join(state_dir(), f"{self.name}.json")

    def _write_state(self) -> None:
        tmp = f"{self._state_path()}.{os.getpid()}.tmp"
        try:
            os.makedirs(state_dir(), exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(self.to_dict(), fh, indent=2)
            os.replace(tmp, self._state_path())
        except OSError as exc:
            raise TestbedError(f"cannot write the state file {self._state_path()}: {exc}") from exc

    @classmethod
    def from_state(cls, name: str) -> Testbed:
        """The testbed recorded under ``name`` (``plab-`` prefix optional)."""
        info = _read_state(os.path.join(state_dir(), f"{full_name(name)}.json"))
        if info is None:
            raise TestbedError(f"no testbed named {full_name(name)}")
        tb = cls(info.topology, name=info.name)
        tb.is_up, tb.persist = info.live, info.persist
        return tb


def set_tx_checksum_offload(ifname: str, enabled: bool) -> None:
    """``ethtool -K IFNAME tx on|off`` (ETHTOOL_STXCSUM) in the calling thread's namespace."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, int(enabled)), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock, SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise TestbedError(f"cannot set TX checksum offload on {ifname}: {exc}") from exc


def _set_offloads(ifnames: Sequence[str], enabled: bool) -> None:
    for ifname in ifnames:
        set_tx_checksum_offload(ifname, enabled)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(2.0)


def _read_state(path: str) -> TestbedInfo | None:
    try:
        with open(path) as fh:
            data = json.load(fh)
        topo = Topology.from_dict(data["topology"])
        name = str(data["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    live = all(NetNS(f"{name}-{n}").exists() for n in topo.nodes)
    return TestbedInfo(
        name=name,
        topology=topo,
        created=str(data.get("created", "")),
        pid=int(data.get("pid", 0)),
        persist=bool(data.get("persist", False)),
        live=live,
    )


def list_testbeds() -> list[TestbedInfo]:
    """Testbeds with a state file, live or stale."""
    try:
        files = sorted(f for f in os.listdir(state_dir()) if f.endswith(".json"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    infos = [_read_state(os.path.join(state_dir(), f)) for f in files]
    return [i for i in infos if i is not None]


def missing_parts(info: TestbedInfo) -> list[str]:
    """What of a recorded testbed is gone: each namespace (``NS``) and each interface of
    the namespaces left (``NS:IFACE``; deleting a veth by hand takes its peer too). Not
    knowable (no permission to look inside): nothing said."""
    out = []
    for node in info.topology.nodes:
        ns = f"{info.name}-{node}"
        if not NetNS(ns).exists():
            out.append(ns)
            continue
        proc = run_cmd([ip_binary(), "-n", ns, "-o", "link", "show"], check=False)
        if proc.returncode != 0:
            continue
        have = {ln.split(":")[1].strip().split("@")[0] for ln in proc.stdout.splitlines()}
        want = [i.name for i in info.topology.interfaces(node)]
        out += [f"{ns}:{name}" for name in want if name not in have]
    return out


def orphan_namespaces() -> list[str]:
    """``plab-`` namespaces that belong to no recorded testbed."""
    known = {f"{i.name}-{n}" for i in list_testbeds() for n in i.topology.nodes}
    return [n for n in list_netns() if n.startswith(prefix()) and n not in known]


def down_all() -> list[str]:
    """Remove every namespace and state file with the prefix; returns the namespaces removed."""
    pre = prefix()
    gone = [n for n in list_netns() if n.startswith(pre)]
    for name in gone:
        NetNS(name).delete()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for f in os.listdir(state_dir()):
            if f.startswith(pre) and f.endswith(".json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(state_dir(), f))
    left = [n for n in list_netns() if n.startswith(pre)]
    if left:
        raise TestbedError(_not_deleted(left, "--all"))
    return gone


def down_by_name(name: str) -> list[str]:
    """Tear down a recorded testbed, or failing that every namespace ``<name>-*`` (an
    `up` killed before it wrote its state file); returns the namespaces removed, none
    when there was nothing to remove (not an error: `down` is idempotent)."""
    full = full_name(name)
    mine = [n for n in list_netns() if n.startswith(full + "-")]
    try:
        tb = Testbed.from_state(full)
    except TestbedError:
        for n in mine:
            NetNS(n).delete()
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(os.path.join(state_dir(), f"{full}.json"))  # unreadable, if any
        left = [n for n in list_netns() if n.startswith(full + "-")]
        if left:
            raise TestbedError(_not_deleted(left, full)) from None
        return mine
    tb.down()
    return mine


def _not_deleted(left: Sequence[str], name: str) -> str:
    return (
        f"could not delete namespaces: {', '.join(left)} (`ip netns pids NS` lists what "
        f"still runs there; `pktlab testbed down {name}` tries again)"
    )


@contextlib.contextmanager
def testbed(topology: Topology, *, name: str | None = None) -> Iterator[Testbed]:
    """``with testbed(chain(2)) as tb:`` — up on entry, down on exit (even on error)."""
    tb = Testbed(topology, name=name)
    with tb:
        yield tb


testbed.__test__ = False  # type: ignore[attr-defined]


@atexit.register
def _down_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live.values())
    for tb in leftovers:
        with contextlib.suppress(Exception):
            tb.down()
