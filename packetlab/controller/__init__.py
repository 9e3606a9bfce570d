"""The controller API: Twisted programs that drive PacketLab endpoints.

    from packetlab.controller import run_once, tcp_exchange

    async def experiment(session):
        got = await tcp_exchange(session, "192.0.2.1", 80, b"GET / HTTP/1.0\\r\\n\\r\\n")
        return got.data

    data = await run_once(reactor, "tcp:20556:interface=127.0.0.1", experiment)

See docs/controller.md.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from packetlab._lazy import lazy_attributes

# Each public name is imported from its module when first used (PEP 562), so that a
# program pays only for the parts it uses: `pktlab run traceroute` needs neither the
# exchanges, trains, filters (libpcap through ctypes), clock estimation nor publishing
# (`publish` imports `twisted.internet.endpoints`). The function `publish` has the name of
# its module, which the import system binds on this package whenever the module is
# imported (`setattr(package, "publish", module)`): `_Package` keeps the function there.
_MODULES: dict[str, tuple[str, ...]] = {
    "_deferred": ("deferred_api",),
    "addresses": ("AddressLike", "IPAddress", "parse_address", "unpack_address"),
    "clock": ("ClockEstimate", "ClockSample", "estimate_clock", "read_time", "sample_clock"),
    "errors": (
        "AnswerTimeout",
        "ConnectFailed",
        "ControllerError",
        "ProtocolViolation",
        "RequestFailed",
        "SendFailed",
        "SessionClosed",
        "SetupFailed",
        "SocketClosed",
        "Suspended",
    ),
    "exchange": (
        "Datagram",
        "SentDatagram",
        "TcpExchange",
        "UdpExchange",
        "tcp_exchange",
        "udp_exchange",
        "wait_connected",
    ),
    "filters": ("tcpdump_filter",),
    "info": (
        "SocketInfo",
        "SystemInfo",
        "TcpInfo",
        "decode_tcp_info",
        "read_socket_info",
        "read_socket_state",
        "read_system_info",
        "read_tcp_info",
        "set_notifmask",
        "set_rbufsz",
    ),
    "listener": ("Controller", "Outcome", "listen", "run_once"),
    "publish": (
        "Publication",
        "PublishCredentials",
        "PublishError",
        "PublishRefused",
        "make_xdescr",
        "publish",
    ),
    "requests": ("DEFAULT_RBUFSZ", "QueuedSend"),
    "session": ("EndpointSession",),
    "sockets": ("Note", "Socket"),
    "stop": ("StopSignal",),
    "train": ("STOP_WAIT_S", "TrainReport", "send_train"),
}
__getattr__, __dir__ = lazy_attributes(globals(), _MODULES)


class _Package(ModuleType):
    """This package's module type: binding the submodule `publish` on it binds the function
    `publish` instead, so `from packetlab.controller import publish` is the function
    whichever was imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "publish" and isinstance(value, ModuleType):
            value = value.publish
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:
    from packetlab.controller._deferred import deferred_api
    from packetlab.controller.addresses import AddressLike, IPAddress, parse_address, unpack_address
    from packetlab.controller.clock import (
        ClockEstimate,
        ClockSample,
        estimate_clock,
        read_time,
        sample_clock,
    )
    from packetlab.controller.errors import (
        AnswerTimeout,
        ConnectFailed,
        ControllerError,
        ProtocolViolation,
        RequestFailed,
        SendFailed,
        SessionClosed,
        SetupFailed,
        SocketClosed,
        Suspended,
    )
    from packetlab.controller.exchange import (
        Datagram,
        SentDatagram,
        TcpExchange,
        UdpExchange,
        tcp_exchange,
        udp_exchange,
        wait_connected,
    )
    from packetlab.controller.filters import tcpdump_filter
    from packetlab.controller.info import (
        SocketInfo,
        SystemInfo,
        TcpInfo,
        decode_tcp_info,
        read_socket_info,
        read_socket_state,
        read_system_info,
        read_tcp_info,
        set_notifmask,
        set_rbufsz,
    )
    from packetlab.controller.listener import Controller, Outcome, listen, run_once
    from packetlab.controller.publish import (
        Publication,
        PublishCredentials,
        PublishError,
        PublishRefused,
        make_xdescr,
        publish,
    )
    from packetlab.controller.requests import DEFAULT_RBUFSZ, QueuedSend
    from packetlab.controller.session import EndpointSession
    from packetlab.controller.sockets import Note, Socket
    from packetlab.controller.stop import StopSignal
    from packetlab.controller.train import STOP_WAIT_S, TrainReport, send_train

__all__ = [
    "DEFAULT_RBUFSZ", "STOP_WAIT_S", "AddressLike", "AnswerTimeout", "ClockEstimate", "ClockSample",
    "ConnectFailed",
    "Controller", "ControllerError", "Datagram", "EndpointSession", "IPAddress", "Note",
    "Outcome", "ProtocolViolation", "Publication", "PublishCredentials", "PublishError",
    "PublishRefused", "QueuedSend", "RequestFailed", "SendFailed",
    "SentDatagram", "SessionClosed", "SetupFailed", "Socket", "SocketClosed", "SocketInfo",
    "StopSignal",
    "Suspended", "SystemInfo", "TcpExchange", "TcpInfo", "TrainReport", "UdpExchange",
    "decode_tcp_info", "deferred_api", "estimate_clock", "listen", "make_xdescr",
    "parse_address", "publish",
    "read_socket_info",
    "read_socket_state",
    "read_system_info", "read_tcp_info", "read_time", "run_once", "sample_clock", "send_train",
    "set_notifmask", "set_rbufsz", "tcp_exchange", "tcpdump_filter", "udp_exchange",
    "unpack_address", "wait_connected",
]  # fmt: skip
