"""Protocol constants of PacketLab 1.1 (PROTOCOL.md §1.2, §1.3, §2.4, §3.2, §3.3)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

HEADER_LEN = 4
BODY_MAX = 0xFFFFFF
DEFAULT_CONTROLLER_PORT = 20556
DEFAULT_PUB_PORT = 20556
DEFAULT_SUB_PORT = 20557
DEFAULT_PROXY_SETUP_PORT = 20557

MREAD_MAX = 0x10000
NDATA_MAX = 0x10000
NSEND_MAX = 0xFFFFFF - 31
LINFO_INFO_MAX = 0x10000
MAX_SKT_CNT = 0x100
# An endpoint stops reading requests while this many messages wait for the controller
# (PROTOCOL.md §1.4 step 4).
MAX_MSGQ_LEN = 100
FILTER_MAX = 0x10000
CHANNEL_MAX = 32
SNIKEY_MAX = 63
KEYID_LEN = 32


class MsgType(IntEnum):
    """Message type codes (byte 0 of every frame)."""

    CDATA = 0x20
    START = 0x21
    END = 0x22
    YIELD = 0x23
    CONT = 0x24
    MREAD = 0x28
    MWRITE = 0x29
    NOPEN = 0x2A
    NCLOSE = 0x2B
    NSEND = 0x2C
    NCAP = 0x2D
    NCTL = 0x2E
    XCERT = 0x30
    XPUB = 0x31
    XSUB = 0x38
    RESULT = 0x40
    MDATA = 0x41
    NTAG = 0x60
    NSTAT = 0x61
    NDATA = 0x62
    NDROP = 0x63
    NBLOCK = 0x64
    LINFO = 0x65
    SUSPD = 0x68
    RESUMD = 0x69
    XNOTIFY = 0x70
    XREG = 0x80


class Status(IntEnum):
    """`enum pktlab_status` (u16), carried by result, ntag and monitor paths. Each member
    carries `meaning`, one line for a person (PROTOCOL.md §1.3)."""

    meaning: str

    def __new__(cls, value: int, meaning: str = "") -> Status:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    SUCCESS = 0, "success"
    ECTLBADMSG = 0x10, "malformed message, or an unknown nctl command"
    ECTLNOTSUP = 0x11, "message type not supported by this endpoint (or nctl on a non-TCP socket)"
    ECTLMONREJ = 0x12, "a monitor rejected the request"
    ECTLMONUKN = 0x13, "a monitor failed (crashed, did not load or initialise)"
    ECRTBADHDAT = 0x20, "program refused: undecodable, bad eBPF, or not in the certificate chain"
    ECRTNOHDAT = 0x21, "not every monitor the certificate chain requires was supplied"
    ECRTBADFRM = 0x22, "bad program format"
    ECRTNOSPACE = 0x23, "no space for the program"
    ECRTBADHINT = 0x24, 'cdata hint is neither "filter" nor "monitor"'
    ESYSNOBUFS = 0x30, "the endpoint's send buffer (BufMax) is full"
    ESYSNOPERM = 0x31, "not permitted"
    ESKTINUSE = 0x32, "that socket id is already in use"
    ESKTNOTOPEN = 0x33, "that socket is not open"
    ESKTNOPRFAM = 0x34, "address family not supported by the endpoint"
    ESKTNOPROTO = 0x35, "transport protocol not offered by the endpoint (TransprotoSup)"
    ESKTNOADDR = 0x36, "the local address is not one the endpoint exports, or cannot be bound"
    ESKTNOMATCH = 0x37, "family or protocol differ from the socket's"
    ESKTBADFILT = 0x38, "capture filter refused (too large, undecodable, or by the kernel)"
    ESKTPKTDENY = (
        0x39,
        (
            "send denied: destination not allowed, spoofed source, over limits, or the "
            "endpoint's accounting database failing (its log says which)"
        ),
    )
    ESKTOPNDENY = 0x3A, "connection denied: destination not allowed (valid_dest)"
    ETCPNOPORT = 0x40, "TCP port already in use"
    EPKTNOTSENT = 0x41, "the queued packet was not sent"
    EUDPNOPORT = 0x42, "UDP port already in use"
    EPKTTRUNC = 0x43, "the packet was truncated"
    ENORES = 0x44, "no resources left: the socket quota is used up"
    EMEMBADADR = 0x48, "memory address or range not readable/writable"
    EPUBBADCHL = 0x50, "broker: bad channel list"
    EPUBBADCHN = 0x51, "broker: bad channel"
    EPUBBADADDR = 0x52, "broker: bad controller address"
    EPUBBADPR = 0x53, "broker: bad priority"
    EPUBBADXD = 0x54, "broker: bad experiment description"
    ESUBBADCHL = 0x60, "broker: bad channel list"
    ESUBBADCHN = 0x61, "broker: bad channel"
    ESUBBADDA = 0x62, "broker: bad descriptor attribute"
    EUNKFAULT = 0xFFFF, "failure on the endpoint (e.g. a raw socket could not be opened)"


def status_name(code: int) -> str:
    """`ESKTINUSE` for 0x32; `0x1234` for a code the protocol does not define (the
    controller's errors and the endpoint's session-end lines both say it this way)."""
    try:
        return Status(code).name
    except ValueError:
        return f"0x{code:04x}"


class Family(IntEnum):
    IP4 = 4
    IP6 = 6


class Proto(IntEnum):
    RAW = 0x00
    TCP = 0x06
    UDP = 0x11


ADDR_LEN: dict[int, int] = {Family.IP4: 4, Family.IP6: 16}


class NstatCode(IntEnum):
    ESTABLISHED = 0
    RESET = 1
    TIMEOUT = 2
    PEERCLOSED = 3
    UNKNOWN = 0xFF


class SocketState(IntEnum):
    """STAT field of a socket block (i8)."""

    FREE = 0
    OPENING = 1
    OPEN = 2
    EOF = 3
    WFIN = 4
    END = 5
    REFUSED = -1
    RESET = -2
    TIMEDOUT = -3
    UNREACH = -4
    UNKFAULT = -128


class NsendErr(IntEnum):
    """NSENDERR field of a socket block (i8)."""

    SUCCESS = 0
    NORES = 1
    BADPKT = 2
    TIMEDOUT = 3
    RESET = 4
    UNREACH = 5
    WFIN = 6
    UNKFAULT = 127


class NotifMask(IntFlag):
    """NOTIFMASK bits: a set bit holds that notification type back (§2.4)."""

    NONE = 0
    NTAG = 1 << 1
    NSTAT = 1 << 2
    NDATA = 1 << 3
    NDROP = 1 << 4
    NBLOCK = 1 << 5


class NctlCommand(IntEnum):
    TCP_FIN = 1


class ProgType(IntEnum):
    """Byte 0 of an encoded program (§3.4)."""

    EBPF = 0x00
    WASM = 0x01


# As plain ints, for the byte compares of the load paths (here, not in program.py, so that
# checking a program's type does not import the program codec: idle endpoint memory).
PKTLAB_EBPF = int(ProgType.EBPF)  # 0x00
PKTLAB_WASM = int(ProgType.WASM)  # 0x01


class TransSup(IntFlag):
    """TRANSSUP bits in the system block."""

    RAW = 1 << 0
    TCP = 1 << 1
    UDP = 1 << 2


class HdrMod(IntEnum):
    """IP4HDRMOD / IP6HDRMOD per-field values."""

    NOCHG = 0
    CHG = 1
    ZEROFILL = 2


CDATA_HINT_FILTER = b"filter"
CDATA_HINT_MONITOR = b"monitor"
