"""What a real `twistd pktendpoint` over TLS keeps out of memory until it is needed
(issue 14, Memory): SQLite (~1.9 MiB of RSS) is loaded only when a controller chain
with limits needs the accounting store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init

from packetlab.ppks import CertLimits, PktlabHome
from packetlab.wire import vmem


def sqlite_mapped(pid: int) -> bool:
    """SQLite's library (or the module linking it in) is mapped into the process."""
    return "sqlite3" in Path(f"/proc/{pid}/maps").read_text()


def session(
    home: PktlabHome, chain: list[Path], workdir: Path, check: Callable[[int], None]
) -> None:
    """One session of a controller with `chain` against a fresh endpoint; `check` its pid
    while the session is up."""
    workdir.mkdir()
    ctl = TLSController(chain, home.key_path("k_xc"), workdir)
    ep = TLSEndpoint(home, ctl.address, workdir)
    try:
        c = ctl.accept()
        c.start()
        c.mread(vmem.HOSTID.addr, vmem.HOSTID.size)  # the session is up and answering
        check(ep.proc.pid)
        c.close()
    finally:
        ep.stop()
        ctl.close()


def test_sqlite_only_for_a_chain_with_limits(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    unlimited = controller_chain(home, tmp_path / "free")

    def not_loaded(pid: int) -> None:
        assert not sqlite_mapped(pid), "SQLite loaded for a chain without limits"

    session(home, unlimited, tmp_path / "a", not_loaded)
    assert (home.root / "endpt.rlim.sqlite3").exists()  # checked (created) at start-up

    limited = controller_chain(home, tmp_path / "lim", limits=CertLimits(max_send_byte=10**6))

    def loaded(pid: int) -> None:
        assert sqlite_mapped(pid), "a chain with limits must open the accounting store"

    session(home, limited, tmp_path / "b", loaded)
