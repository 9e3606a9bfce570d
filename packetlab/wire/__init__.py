"""The PacketLab 1.1 wire format, sans-IO (no Twisted, no sockets).

from packetlab.wire import Framer, encode, Nsend
frame = encode(Nsend(sktid=1, family=4, proto=6, time=0, tag=7, data=b"hi"))
for item in Framer().feed(frame): ...

Each name is imported from its submodule on first use (`packetlab._lazy`): a module that
needs only `packetlab.wire.constants` does not load the codec, the message classes and
their derived code (`pktlab init`, argparse set-up, docs/performance.md).
"""

from typing import TYPE_CHECKING

from packetlab._lazy import lazy_attributes

if TYPE_CHECKING:
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

# each public name under its submodule (the TYPE_CHECKING imports and __all__ name the
# same; tests/unit/test_public_names.py keeps the three in step)
_MODULES: dict[str, tuple[str, ...]] = {
    "codec": (
        "UnknownType",
        "construct_decode_body",
        "construct_encode",
        "decode_body",
        "decode_frame",
        "encode",
    ),
    "constants": (
        "BODY_MAX",
        "HEADER_LEN",
        "Family",
        "HdrMod",
        "MsgType",
        "NctlCommand",
        "NotifMask",
        "NsendErr",
        "NstatCode",
        "ProgType",
        "Proto",
        "SocketState",
        "Status",
        "TransSup",
    ),
    "errors": (
        "EncodeError",
        "FrameTooLarge",
        "MalformedMessage",
        "WireError",
    ),
    "framer": (
        "Framer",
        "Item",
        "Malformed",
        "Unknown",
    ),
    "messages": (
        "ALL_MESSAGES",
        "BY_NAME",
        "BY_TYPE",
        "HOT_MESSAGES",
        "Cdata",
        "Cont",
        "End",
        "Linfo",
        "Mdata",
        "Message",
        "Mread",
        "Mwrite",
        "Nblock",
        "Ncap",
        "Nclose",
        "Nctl",
        "Ndata",
        "Ndrop",
        "Nopen",
        "Nsend",
        "Nstat",
        "Ntag",
        "Result",
        "Resumd",
        "Start",
        "Suspd",
        "Xcert",
        "Xnotify",
        "Xpub",
        "Xreg",
        "Xsub",
        "Yield",
    ),
}
__getattr__, __dir__ = lazy_attributes(globals(), _MODULES)

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
