"""Operator policy without WebAssembly (beyond the reference; docs/endpoint.md).

``endpt.conf`` keys applied to every experiment on the endpoint:

* ``CaptureFilter EXPR``: a tcpdump expression ANDed with every ncap filter: a captured
  packet reaches the experiment only if both the experiment's filter and this one match
  (libpcap compiles it for raw IP packets; ``pcap_offline_filter`` runs it per packet).
* ``CaptureSnaplen N``: captured packets are cut to at most N bytes.
* ``CaptureAnonMask4 MASK`` / ``CaptureAnonMask6 MASK``: the source and destination
  addresses of captured packets are ANDed with the mask (e.g. ``255.255.255.0`` keeps the
  /24); the IPv4 header checksum is recomputed, transport checksums are left as they are.
* ``ExpSendRatePkt COUNT/SECONDS`` and ``ExpSendRateByte COUNT/SECONDS``: at most COUNT
  packets (bytes) sent in any window of SECONDS per experiment; a send over the cap is
  refused with ESKTPKTDENY, as a certificate's burst rate (§4.5).

The capture keys act on the packets a raw socket captures, before the session sees them
(`PolicyNetwork` wraps the session's events for raw sockets); the rate caps are a
`RequestGate` in front of the certificate limits (`PolicyGate`), after the monitors.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packetlab.endpoint.checks import RequestGate
from packetlab.endpoint.config import ConfigError, EndpointConfig
from packetlab.endpoint.limits import BurstWindow
from packetlab.endpoint.sockets import Network, Skt
from packetlab.ppks import BurstRate
from packetlab.wire.constants import Status
from packetlab.wire.messages import Message, Nsend, Result

if TYPE_CHECKING:  # libpcap is loaded only for a CaptureFilter (idle RSS, docs/performance.md)
    from packetlab.endpoint.capturefilter import CaptureFilter

__all__ = [
    "CaptureFilter",
    "CapturePolicy",
    "PolicyGate",
    "PolicyNetwork",
]

_DENY = Result(errid=int(Status.ESKTPKTDENY))


def __getattr__(name: str) -> Any:
    if name == "CaptureFilter":  # in its own module, with libpcap: imported when asked for
        from packetlab.endpoint.capturefilter import CaptureFilter

        return CaptureFilter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class CapturePolicy:
    """The capture keys of the config (None/empty: not set)."""

    filter: CaptureFilter | None = None
    snaplen: int | None = None
    mask4: bytes | None = None
    mask6: bytes | None = None

    @property
    def active(self) -> bool:
        return bool(self.filter or self.snaplen is not None or self.mask4 or self.mask6)

    def apply(self, packet: bytes) -> bytes | None:
        """The packet as the experiment may see it, or None when it must not."""
        f = self.filter
        if f is not None and not f.matches(packet):
            return None
        if packet:
            v = packet[0] >> 4
            if v == 4 and self.mask4 is not None and len(packet) >= 20:
                packet = _anon4(packet, self.mask4)
            elif v == 6 and self.mask6 is not None and len(packet) >= 40:
                packet = _anon6(packet, self.mask6)
        if self.snaplen is not None and len(packet) > self.snaplen:
            packet = packet[: self.snaplen]
        return packet


def _and(a: bytes, m: bytes) -> bytes:
    return bytes(x & y for x, y in zip(a, m, strict=True))


def _anon4(p: bytes, mask: bytes) -> bytes:
    ihl = (p[0] & 0x0F) * 4
    b = bytearray(p)
    b[12:16] = _and(p[12:16], mask)
    b[16:20] = _and(p[16:20], mask)
    if 20 <= ihl <= len(b):
        b[10:12] = b"\0\0"
        s = sum(struct.unpack(f">{ihl // 2}H", bytes(b[:ihl])))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        b[10:12] = struct.pack(">H", ~s & 0xFFFF)
    return bytes(b)


def _anon6(p: bytes, mask: bytes) -> bytes:
    return p[:8] + _and(p[8:24], mask) + _and(p[24:40], mask) + p[40:]


class _PolicyEvents:
    """The session's events for one raw socket, with the capture policy in front."""

    def __init__(self, events: Any, policy: CapturePolicy) -> None:
        self._events = events
        self._policy = policy

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        packet = self._policy.apply(data)
        if packet is not None:
            self._events.raw_received(skt, packet, time)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)


def from_config(cfg: EndpointConfig) -> tuple[CapturePolicy, BurstRate | None, BurstRate | None]:
    """The policy of the config's keys (`ConfigError` for a bad filter expression)."""
    capture_filter = None
    if cfg.capture_filter:
        from packetlab.endpoint.capturefilter import CaptureFilter

        try:
            capture_filter = CaptureFilter(cfg.capture_filter)
        except ConfigError as e:
            # Compiled at startup, after parsing: say where it came from, as a bad value
            # found while parsing does (`endpt.conf:7: CaptureFilter: ...`); the daemon's
            # line named neither the file nor the key.
            where = cfg.origins.get("CaptureFilter")
            raise ConfigError(f"{where}: CaptureFilter: {e}" if where else str(e)) from None
    capture = CapturePolicy(
        filter=capture_filter,
        snaplen=cfg.capture_snaplen,
        mask4=cfg.capture_anon_mask4,
        mask6=cfg.capture_anon_mask6,
    )
    return capture, cfg.exp_send_rate_pkt, cfg.exp_send_rate_byte


class PolicyNetwork:
    """A `Network` whose raw sockets report captures through the capture policy."""

    def __init__(self, network: Network, policy: CapturePolicy) -> None:
        self._network = network
        self._policy = policy

    def open_raw(self, skt: Skt, laddr: bytes, events: Any) -> Any:
        return self._network.open_raw(skt, laddr, _PolicyEvents(events, self._policy))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)


class PolicyGate:
    """Per-experiment send rate caps, in front of `inner` (the certificate limits)."""

    def __init__(
        self,
        inner: RequestGate,
        clock: Callable[[], int],
        pkt: BurstRate | None,
        byte: BurstRate | None,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self._pkt = BurstWindow(pkt) if pkt is not None else None
        self._byte = BurstWindow(byte) if byte is not None else None
        self.checks_ndata = inner.checks_ndata
        self.denied = 0
        # The rest of the gate is the inner one's.
        self.program = inner.program
        self.start = inner.start
        self.check_ndata = inner.check_ndata
        self.close = inner.close

    def check(self, msg: Message) -> Result | None:
        if type(msg) is Nsend:
            assert isinstance(msg, Nsend)
            n = len(msg.data)
            when = max(msg.time, self.clock())  # an immediate send (time 0) goes now
            pkt, byte = self._pkt, self._byte
            if (pkt is not None and not pkt.fits(when, 1)) or (
                byte is not None and not byte.fits(when, n)
            ):
                self.denied += 1
                return _DENY
            verdict = self.inner.check(msg)
            if verdict is None:
                if pkt is not None:
                    pkt.add(when, 1)
                if byte is not None:
                    byte.add(when, n)
            return verdict
        return self.inner.check(msg)

    def done(self, msg: Message, errid: int) -> None:
        if errid and type(msg) is Nsend:
            # Refused after our check (ESKTNOTOPEN, ESYSNOBUFS...): never sent, so it
            # gives its place in the windows back.
            assert isinstance(msg, Nsend)
            if self._pkt is not None:
                self._pkt.take_back(1)
            if self._byte is not None:
                self._byte.take_back(len(msg.data))
        self.inner.done(msg, errid)

    def __getattr__(self, name: str) -> Any:  # required_digests, certs, ... of the inner
        return getattr(self.inner, name)
