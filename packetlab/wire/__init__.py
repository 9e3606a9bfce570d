"""The PacketLab 1.1 wire format, sans-IO (no Twisted, no sockets).

from packetlab.wire import Framer, encode, Nsend
frame = encode(Nsend(sktid=1, family=4, proto=6, time=0, tag=7, data=b"hi"))
for item in Framer().feed(frame): ...
"""

from packetlab.wire.codec import (
    UnknownType,
    construct_decode_body,
    construct_encode,
    decode_body,
    decode_frame,
    encode,
)
from packetlab.wire.constants import (
    BODY_MAX,
    HEADER_LEN,
    Family,
    HdrMod,
    MsgType,
    NctlCommand,
    NotifMask,
    NsendErr,
    NstatCode,
    ProgType,
    Proto,
    SocketState,
    Status,
    TransSup,
)
from packetlab.wire.errors import EncodeError, FrameTooLarge, MalformedMessage, WireError
from packetlab.wire.framer import Framer, Item, Malformed, Unknown
from packetlab.wire.messages import (
    ALL_MESSAGES,
    BY_NAME,
    BY_TYPE,
    HOT_MESSAGES,
    Cdata,
    Cont,
    End,
    Linfo,
    Mdata,
    Message,
    Mread,
    Mwrite,
    Nblock,
    Ncap,
    Nclose,
    Nctl,
    Ndata,
    Ndrop,
    Nopen,
    Nsend,
    Nstat,
    Ntag,
    Result,
    Resumd,
    Start,
    Suspd,
    Xcert,
    Xnotify,
    Xpub,
    Xreg,
    Xsub,
    Yield,
)

__all__ = [
    "ALL_MESSAGES", "BODY_MAX", "BY_NAME", "BY_TYPE", "HEADER_LEN", "HOT_MESSAGES",
    "Cdata", "Cont", "EncodeError", "End", "Family", "FrameTooLarge", "Framer", "HdrMod",
    "Item", "Linfo", "Malformed", "MalformedMessage", "Mdata", "Message", "Mread", "MsgType",
    "Mwrite", "Nblock", "Ncap", "Nclose", "Nctl", "NctlCommand", "Ndata", "Ndrop", "Nopen",
    "NotifMask", "Nsend", "NsendErr", "Nstat", "NstatCode", "Ntag", "ProgType", "Proto",
    "Result", "Resumd", "SocketState", "Start", "Status", "Suspd", "TransSup", "Unknown",
    "UnknownType", "WireError", "Xcert", "Xnotify", "Xpub", "Xreg", "Xsub", "Yield",
    "construct_decode_body", "construct_encode", "decode_body", "decode_frame", "encode",
]  # fmt: skip
