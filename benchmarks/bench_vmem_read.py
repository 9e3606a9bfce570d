"""`VirtualMemory.read` in-process, this checkout against another's `memory.py`
(`--baseline CHECKOUT`, e.g. /work/main), interleaved rounds, medians of per-round bests:
the system fast path (TIME), a socket field (STAT), a socket block's first 0x80 bytes,
and (ours only) SKT_TCPINFO sampled from a real loopback TCP connection's TCP_INFO.

    .venv/bin/python benchmarks/bench_vmem_read.py --baseline /work/main
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import statistics
import timeit
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from packetlab.endpoint import memory as ours
from packetlab.endpoint.budget import Budget
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.sockets import Skt
from packetlab.wire import vmem

NUMBER = 20000


def load(checkout: str) -> ModuleType:
    path = Path(checkout) / "packetlab" / "endpoint" / "memory.py"
    spec = importlib.util.spec_from_file_location("memory_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def memory(mod: ModuleType, **kw: Any) -> Any:
    cfg = EndpointConfig()
    sockets: list[Skt | None] = [None] * 256
    sockets[3] = Skt(3, 4, 6, 65536)
    return mod.VirtualMemory(mod.system_image(cfg), sockets, Budget(cfg.buf_max), lambda: 1,
                             lambda s, n: None, lambda s, m: None, **kw)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", metavar="CHECKOUT", help="another checkout's memory.py")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    srv = socket.create_server(("127.0.0.1", 0))
    conn = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()

    def hook(skt: Skt) -> bytes | None:
        raw = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return ours.tcp_info_region(raw)

    vms = {"ours": memory(ours, tcp_info=hook)}
    if args.baseline:
        vms["baseline"] = memory(load(args.baseline))
    cases = {
        "TIME (system fast path)": (vmem.TIME.addr, 8),
        "STAT (socket field)": (vmem.skt_addr(3, vmem.SKT_STAT), 1),
        "socket block 0x80": (vmem.skt_addr(3, vmem.Region(0, 0)), 0x80),
        "SKT_TCPINFO (getsockopt)": (vmem.skt_addr(3, vmem.SKT_TCPINFO), vmem.SKT_TCPINFO.size),
    }
    print("| read | " + " | ".join(f"{k} ns" for k in vms) + " | ratio ours/baseline |")
    print("|---|" + "---|" * len(vms) + "---|")
    for name, (addr, n) in cases.items():
        got: dict[str, list[float]] = {k: [] for k in vms}
        for _ in range(args.rounds):
            for k, vm in vms.items():
                best = min(timeit.repeat(partial(vm.read, addr, n), number=NUMBER, repeat=3))
                got[k].append(best / NUMBER * 1e9)
        med = {k: statistics.median(v) for k, v in got.items()}
        sampled = addr >= vmem.skt_addr(3, vmem.SKT_TCPINFO)  # the baseline has zeros there
        ratio = f"{med['ours'] / med['baseline']:.3f}" if "baseline" in med and not sampled \
            else "-"  # fmt: skip
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in med.values()) + f" | {ratio} |")
    for s in (conn, peer, srv):
        s.close()


if __name__ == "__main__":
    main()
