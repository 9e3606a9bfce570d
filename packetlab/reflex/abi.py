"""The reflex host ABI (docs/reflexes.md), as data.

A reflex is built and loaded like a monitor (same memory import, same `malloc`/`free`,
same encoded-program digest ``SHA-256(0x01 || wasm)``); it differs in what it exports
(`reflex_packet`, optionally `reflex_init`, `reflex_timer`, `reflex_configure`) and in the
host functions it may import: the monitors' plus `reflex_send`, `reflex_report`,
`reflex_now` and `reflex_timer_at`.
"""

from __future__ import annotations

from typing import Final

from packetlab.monitor import abi as mon
from packetlab.monitor.abi import I32, I64, Sig

__all__ = [
    "CTX_LEN",
    "EXPORTS",
    "HOST_FUNCS",
    "MAX_EMITS",
    "MAX_MODULE",
    "MAX_REPORT",
    "PARAMS_LEN",
    "PASS",
    "PKT_BUF",
    "STATE_LEN",
    "digest",
]

PARAMS_LEN = 1024  # ctx[0:1024]: parameters, written by the controller (mwrite)
STATE_LEN = 1024  # ctx[1024:2048]: the reflex's state, read by the controller (mread)
CTX_LEN = PARAMS_LEN + STATE_LEN
PKT_BUF = 0x10000  # the received packet is copied here (NDATA_MAX)
MAX_EMITS = 64  # sends one call may queue
MAX_REPORT = 1024  # bytes of one rreport record
PASS = 1  # reflex_packet's return bit: deliver the packet to the controller too
MAX_MODULE = 1 << 20  # largest module an endpoint takes (its MAX_MODULE, shared with monitors)

#: Host functions a reflex may import from module "env" (the monitors' ones too).
HOST_FUNCS: Final[dict[str, Sig]] = {
    **mon.HOST_FUNCS,
    # (sktid, data*, len, raddr*, raddrlen, rport, time:i64, tag) -> 0 queued, -1 refused
    "reflex_send": ((I32, I32, I32, I32, I32, I32, I64, I32), (I32,)),
    "reflex_report": ((I32, I32), (I32,)),  # (data*, len) -> 0, -1 refused
    "reflex_now": ((), (I64,)),  # the endpoint clock, ns since the epoch
    "reflex_timer_at": ((I64,), (I32,)),  # (time:i64) -> 0: reflex_timer runs then
}

#: Exports: name -> (signature, required).
EXPORTS: Final[dict[str, tuple[Sig, bool]]] = {
    # (sktid, family, proto, time:i64, raddr*, raddrlen, rport, data*, len, ctx*) -> flags
    "reflex_packet": ((((I32,) * 3) + (I64,) + ((I32,) * 6), (I32,)), True),
    "reflex_init": (((I32, I32), (I32,)), False),  # (ctx*, sktid) -> 0 ok, else refuse
    "reflex_configure": (((I32,), (I32,)), False),  # (ctx*) after the controller's mwrite
    "reflex_timer": (((I64, I32), (I32,)), False),  # (now:i64, ctx*)
}


def digest(wasm: bytes) -> bytes:
    """SHA-256(0x01 || wasm): what a certificate's ``reflex=`` limit lists."""
    return mon.digest(wasm)
