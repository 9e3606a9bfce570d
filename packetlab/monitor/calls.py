"""The argument lists of the check calls (PROTOCOL.md §8.2), built from the messages.

Each function stages the message's address and port bytes in the instance's scratch
buffer (wasm memory) and returns the i32/i64 arguments, ending with the persistent
memory pointer and length. Absent byte strings are pointer 0, length 0. The message's
payload (nsend data, ndata data, the ncap filter) is not copied: the monitor reads it
through ``read_vmem_region(CURPKT_DATA, ...)`` from `Instance.curpkt`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from packetlab.monitor.abi import PM_LEN
from packetlab.wire.messages import Message, Ncap, Nclose, Ndata, Nopen, Nsend

if TYPE_CHECKING:  # the runtime (and wasmtime) load only when a monitor runs
    from packetlab.monitor.runtime import Instance

__all__ = ["KIND", "check_args", "ndata_args", "nopen_args", "nsend_args"]

KIND: dict[type, str] = {
    Nopen: "nopen",
    Nclose: "nclose",
    Nsend: "nsend",
    Ncap: "ncap",
    Ndata: "ndata",
}


def _port(p: int) -> bytes:
    return p.to_bytes(2, "big")


def nopen_args(inst: Instance, m: Nopen) -> tuple[int, ...]:
    laddr, raddr = m.laddr, m.raddr or b""
    lport = b"" if m.lport is None else _port(m.lport)
    rport = b"" if m.rport is None else _port(m.rport)
    base = inst.stage(laddr + lport + raddr + rport)
    p_lport = base + len(laddr)
    p_raddr = p_lport + len(lport)
    p_rport = p_raddr + len(raddr)
    return (
        m.sktid, m.family, m.proto, m.rbufsz,
        len(laddr), len(lport), len(raddr), len(rport),
        base if laddr else 0, p_lport if lport else 0,
        p_raddr if raddr else 0, p_rport if rport else 0,
        inst.pm, PM_LEN,
    )  # fmt: skip


def _addr_port(inst: Instance, raddr: bytes | None, rport: int | None) -> tuple[int, ...]:
    """(raddrlen, raddr*, rportlen, rport*) of a UDP message; zeros otherwise."""
    if raddr is None or rport is None:
        return 0, 0, 0, 0
    n = len(raddr)
    base = inst.stage(raddr + _port(rport))
    return n, base, 2, base + n


def nsend_args(inst: Instance, m: Nsend) -> tuple[int, ...]:
    return (
        m.sktid, m.family, m.proto, m.time, m.tag,
        *_addr_port(inst, m.raddr, m.rport), len(m.data), inst.pm, PM_LEN,
    )  # fmt: skip


def ndata_args(
    inst: Instance,
    sktid: int,
    family: int,
    proto: int,
    time: int,
    raddr: bytes | None,
    rport: int | None,
    length: int,
) -> tuple[int, ...]:
    return (sktid, family, proto, time, *_addr_port(inst, raddr, rport), length, inst.pm, PM_LEN)


def check_args(inst: Instance, msg: Message) -> tuple[str, tuple[int, ...], bytes]:
    """(kind, arguments, CURPKT_DATA) of any checked message. KeyError for other types."""
    kind = KIND[type(msg)]
    if isinstance(msg, Nopen):
        return kind, nopen_args(inst, msg), b""
    if isinstance(msg, Nclose):
        return kind, (msg.sktid, inst.pm, PM_LEN), b""
    if isinstance(msg, Nsend):
        return kind, nsend_args(inst, msg), msg.data
    if isinstance(msg, Ncap):
        return kind, (msg.sktid, msg.family, msg.proto, msg.endtime, inst.pm, PM_LEN), msg.filter
    assert isinstance(msg, Ndata)
    args = ndata_args(
        inst, msg.sktid, msg.family, msg.proto, msg.time, msg.raddr, msg.rport, len(msg.data)
    )
    return kind, args, msg.data
