"""PROTOCOL.md's numbers, transcribed literally (session 16 endpoint audit).

The other wire tests compare the code with itself (`Status.ESKTOPNDENY` on both sides) or
with golden frames that cover some values only; these tables are copied from the spec
text, so a constant that drifts from it fails here. Each table names its section.
"""

from __future__ import annotations

import pytest

from packetlab.wire import constants as k
from packetlab.wire import vmem
from packetlab.wire.constants import (
    HdrMod,
    MsgType,
    NctlCommand,
    NotifMask,
    NsendErr,
    NstatCode,
    ProgType,
    SocketState,
    Status,
    TransSup,
)
from packetlab.wire.program import MAX_FILTER_LEN

# §1.2 message types.
MESSAGE_TYPES = {
    "CDATA": 0x20, "START": 0x21, "END": 0x22, "YIELD": 0x23, "CONT": 0x24,
    "MREAD": 0x28, "MWRITE": 0x29, "NOPEN": 0x2A, "NCLOSE": 0x2B, "NSEND": 0x2C,
    "NCAP": 0x2D, "NCTL": 0x2E, "XCERT": 0x30, "XPUB": 0x31, "XSUB": 0x38,
    "RESULT": 0x40, "MDATA": 0x41, "NTAG": 0x60, "NSTAT": 0x61, "NDATA": 0x62,
    "NDROP": 0x63, "NBLOCK": 0x64, "LINFO": 0x65, "SUSPD": 0x68, "RESUMD": 0x69,
    "XNOTIFY": 0x70, "XREG": 0x80,
}  # fmt: skip

# §1.3 status codes.
STATUSES = {
    "SUCCESS": 0, "ECTLBADMSG": 0x10, "ECTLNOTSUP": 0x11, "ECTLMONREJ": 0x12,
    "ECTLMONUKN": 0x13, "ECRTBADHDAT": 0x20, "ECRTNOHDAT": 0x21, "ECRTBADFRM": 0x22,
    "ECRTNOSPACE": 0x23, "ECRTBADHINT": 0x24, "ESYSNOBUFS": 0x30, "ESYSNOPERM": 0x31,
    "ESKTINUSE": 0x32, "ESKTNOTOPEN": 0x33, "ESKTNOPRFAM": 0x34, "ESKTNOPROTO": 0x35,
    "ESKTNOADDR": 0x36, "ESKTNOMATCH": 0x37, "ESKTBADFILT": 0x38, "ESKTPKTDENY": 0x39,
    "ESKTOPNDENY": 0x3A, "ETCPNOPORT": 0x40, "EPKTNOTSENT": 0x41, "EUDPNOPORT": 0x42,
    "EPKTTRUNC": 0x43, "ENORES": 0x44, "EMEMBADADR": 0x48, "EPUBBADCHL": 0x50,
    "EPUBBADCHN": 0x51, "EPUBBADADDR": 0x52, "EPUBBADPR": 0x53, "EPUBBADXD": 0x54,
    "ESUBBADCHL": 0x60, "ESUBBADCHN": 0x61, "ESUBBADDA": 0x62, "EUNKFAULT": 0xFFFF,
}  # fmt: skip

# §3.2 socket states, §1.2 nstat codes, §3.3 NSENDERR, §2.4 NOTIFMASK, §2.3 nctl.
SOCKET_STATES = {
    "FREE": 0, "OPENING": 1, "OPEN": 2, "EOF": 3, "WFIN": 4, "END": 5,
    "REFUSED": -1, "RESET": -2, "TIMEDOUT": -3, "UNREACH": -4, "UNKFAULT": -128,
}  # fmt: skip
NSTAT_CODES = {"ESTABLISHED": 0, "RESET": 1, "TIMEOUT": 2, "PEERCLOSED": 3, "UNKNOWN": 0xFF}
NSENDERR = {
    "SUCCESS": 0, "NORES": 1, "BADPKT": 2, "TIMEDOUT": 3, "RESET": 4, "UNREACH": 5,
    "WFIN": 6, "UNKFAULT": 127,
}  # fmt: skip
NOTIFMASK = {"NTAG": 0x02, "NSTAT": 0x04, "NDATA": 0x08, "NDROP": 0x10, "NBLOCK": 0x20}


@pytest.mark.parametrize(
    ("enum", "table"),
    [
        (MsgType, MESSAGE_TYPES),
        (Status, STATUSES),
        (SocketState, SOCKET_STATES),
        (NstatCode, NSTAT_CODES),
        (NsendErr, NSENDERR),
    ],
    ids=["msgtype", "status", "socketstate", "nstat", "nsenderr"],
)
def test_enum_is_the_spec_table(enum: type, table: dict[str, int]) -> None:
    got = {m.name: int(m.value) for m in enum}  # type: ignore[attr-defined]
    assert got == table


def test_notification_mask_bits_and_nctl_command() -> None:
    got = {m.name: int(m.value) for m in NotifMask if m.value}
    assert got == NOTIFMASK
    assert int(NctlCommand.TCP_FIN) == 1


def test_field_constants_and_size_limits() -> None:
    # §1.1 framing, §1.2 field constants and size limits, §3.4, §5.1, §5.2, §4.1.
    assert (k.HEADER_LEN, k.BODY_MAX) == (4, 0xFFFFFF)
    assert (int(k.Family.IP4), int(k.Family.IP6)) == (4, 6)
    assert (int(k.Proto.RAW), int(k.Proto.TCP), int(k.Proto.UDP)) == (0x00, 0x06, 0x11)
    assert (int(ProgType.EBPF), int(ProgType.WASM)) == (0x00, 0x01)
    assert (k.MREAD_MAX, k.NDATA_MAX, k.LINFO_INFO_MAX, k.FILTER_MAX) == (0x10000,) * 4
    assert k.NSEND_MAX == 0xFFFFFF - 31
    assert MAX_FILTER_LEN == 0x10000  # FILT_BUFSZ: ncap filters above it are ESKTBADFILT (§3.4)
    assert k.MAX_SKT_CNT == 0x100
    assert (k.CHANNEL_MAX, k.SNIKEY_MAX, k.KEYID_LEN) == (32, 63, 32)
    assert (k.CDATA_HINT_FILTER, k.CDATA_HINT_MONITOR) == (b"filter", b"monitor")
    assert (k.DEFAULT_CONTROLLER_PORT, k.DEFAULT_PUB_PORT, k.DEFAULT_SUB_PORT) == (
        20556,
        20556,
        20557,
    )
    assert k.DEFAULT_PROXY_SETUP_PORT == 20557


# §2.2: (address, size) of every map entry, as the spec's tables give them.
VMEM_MAP = {
    "CURPKT_DATA": (0x00000000, 0x1000000),
    "CURPKT_LEN": (0x1000000, 4),
    "CURPKT_SKTID": (0x1000010, 1),
    "IP4NO": (0x10000000, 1),
    "IP6NO": (0x10000001, 1),
    "TRANSSUP": (0x10000002, 4),
    "BUFMAXDUP": (0x10000006, 4),
    "IP4LS": (0x10000100, 256 * 8),
    "IP6LS": (0x10001000, 256 * 16),
    "TIME": (0x10010000, 8),
    "BUFMAX": (0x10010010, 4),
    "BUFUSED": (0x10010014, 4),
    "IP4DNSNO": (0x10020000, 1),
    "IP6DNSNO": (0x10020001, 1),
    "IP4DNSLS": (0x10020010, 16 * 4),
    "IP6DNSLS": (0x10020100, 16 * 16),
    "IP4HDRMOD": (0x10020200, 12),
    "IP6HDRMOD": (0x10020210, 8),
    "HOSTID": (0x10030000, 256),
    "LATLONG": (0x10030100, 64),
    "OSINFO": (0x10030200, 512),
    "NSENDTSTP": (0x30000000, 0x10000 * 8),
    "MONSCRATCH": (0x40000000, 256 << 20),
    "MONPERSIST": (0x50000000, 256 << 20),
}
# §2.2 socket block offsets, and which are writable (RW).
SKT_FIELDS = {
    "SKT_FAMILY": (0x00, 1),
    "SKT_PROTO": (0x01, 1),
    "SKT_STAT": (0x02, 1),
    "SKT_LADDR": (0x10, 16),
    "SKT_RADDR": (0x20, 16),
    "SKT_LPORT": (0x30, 2),
    "SKT_RPORT": (0x32, 2),
    "SKT_RBUFSZ": (0x40, 4),
    "SKT_RBUFUSED": (0x44, 4),
    "SKT_DROPBYTES": (0x50, 4),
    "SKT_DROPPKTS": (0x54, 4),
    "SKT_NSENDERR": (0x60, 1),
    "SKT_NSENDERRTAG": (0x61, 2),
    "SKT_NOTIFMASK": (0x70, 2),
    "SKT_CTFL": (0x100, 128),
}
SKT_RW = {"SKT_RBUFSZ", "SKT_NSENDERR", "SKT_NSENDERRTAG", "SKT_NOTIFMASK", "SKT_CTFL"}


def test_vmem_map_is_the_spec_map() -> None:
    got = {name: tuple(getattr(vmem, name)) for name in VMEM_MAP}
    assert got == VMEM_MAP
    assert (vmem.SYS_BASE, vmem.SYS_SPAN) == (0x10000000, 0x30400)


def test_socket_blocks_are_the_spec_blocks() -> None:
    assert (vmem.SKT_BASE, vmem.SKT_STRIDE, vmem.SKT_COUNT) == (0x20000000, 0x400, 256)
    assert vmem.SKT_SPAN == 0x40000
    got = {name: tuple(getattr(vmem, name)) for name in SKT_FIELDS}
    assert got == SKT_FIELDS
    writable = {n for n in SKT_FIELDS if tuple(getattr(vmem, n)) in map(tuple, vmem.SKT_WRITABLE)}
    assert writable == SKT_RW
    # pktif_mwrite_notifmask writes 0x20000000 + sktid*0x400 + 0x70 (§2.4).
    assert vmem.skt_addr(7, vmem.SKT_NOTIFMASK) == 0x20000000 + 7 * 0x400 + 0x70


def test_transsup_bits_and_header_modification_codes() -> None:
    # §2.2: TRANSSUP bit0 raw, bit1 tcp, bit2 udp; IP4HDRMOD 0 NOCHG, 1 CHG, 2 0FILL.
    assert (int(TransSup.RAW), int(TransSup.TCP), int(TransSup.UDP)) == (1, 2, 4)
    assert (int(HdrMod.NOCHG), int(HdrMod.CHG), int(HdrMod.ZEROFILL)) == (0, 1, 2)
