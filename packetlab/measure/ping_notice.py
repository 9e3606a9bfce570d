"""ICMP messages about an echo request that are not errors: a source quench or a
redirect (IPv4). iputils ping prints them (``From ADDR: icmp_seq=N Source Quench``,
``... Redirect Host(New nexthop: GW)``) but counts them nowhere: the request may still
be answered. `parse_reply` (shared with traceroute) knows only the errors, so ping reads
these itself."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PingNotice", "parse_notice"]

SOURCE_QUENCH, REDIRECT = 4, 5
_REDIRECT_WORDS = {
    0: "Redirect Network",
    1: "Redirect Host",
    2: "Redirect Type of Service and Network",
    3: "Redirect Type of Service and Host",
}


# The first ICMP type ping's raw socket filter (ICMP_FILTER, a 32-bit mask) cannot
# block: iputils -v prints any message of such a type, from anyone, quoting anything
FIRST_UNFILTERED = 32


@dataclass(frozen=True, slots=True)
class PingNotice:
    """A source quench or redirect quoting echo request `seq`, from `addr`; or (`seq`
    None) any ICMP message of a type from 32 on, which ping -v prints as `Bad ICMP type`."""

    seq: int | None
    addr: str
    icmp_type: int
    code: int
    gateway: str | None = None  # a redirect's new next hop
    reply_recv_ns: int | None = None
    quoted: str = ""  # hex: the IP header it quotes (ping -v prints it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, shown: Callable[[str], str] = str) -> str:
        """iputils' words (pr_icmph), the gateway as `shown` names it."""
        if self.icmp_type == SOURCE_QUENCH:
            return "Source Quench"
        if self.icmp_type != REDIRECT:
            return f"Bad ICMP type: {self.icmp_type}"
        words = _REDIRECT_WORDS.get(self.code, f"Redirect, Bad Code: {self.code}")
        return f"{words}(New nexthop: {shown(self.gateway or '0.0.0.0')})"

    def header_dump(self) -> str:
        """iputils -v's pr_iph of the quoted IP header (no newline at the end): its
        16-bit fields as a little-endian host reads them from the wire, as ping prints
        them (a length of 84 is `5400`). Its options (`quoted_options`) are the
        report's to print, as it prints a reply's."""
        ip = bytes.fromhex(self.quoted)
        if len(ip) < 20:
            return ""
        length, ident, frag = struct.unpack_from("<HHH", ip, 2)
        (check,) = struct.unpack_from("<H", ip, 10)
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        out = "Vr HL TOS  Len   ID Flg  off TTL Pro  cks      Src      Dst Data\n"
        out += f" {ip[0] >> 4:1x}  {ip[0] & 0x0F:1x}  {ip[1]:02x} {length:04x} {ident:04x}"
        out += f"   {(frag & 0xE000) >> 13:1x} {frag & 0x1FFF:04x}"
        out += f"  {ip[8]:02x}  {ip[9]:02x} {check:04x} {src}  {dst} "
        return out

    def quoted_options(self) -> bytes:
        """The IPv4 options of the quoted header (b'' for none)."""
        return bytes.fromhex(self.quoted)[20:]


def parse_notice(data: bytes, ident: int, target: str, recv_ns: int) -> PingNotice | None:
    """`data` (an IPv4 packet) as a source quench or redirect about one of our echo
    requests (identifier `ident`, to `target`), as iputils matches them, or as an ICMP
    message of a type its filter lets through unasked (32 on); else None."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != 1:
        return None
    icmp = data[(data[0] & 0x0F) * 4 :]
    if len(icmp) >= 8 and icmp[0] >= FIRST_UNFILTERED:  # (whatever it quotes, if anything)
        src = str(ipaddress.IPv4Address(data[12:16]))
        return PingNotice(None, src, icmp[0], icmp[1], reply_recv_ns=recv_ns)
    if len(icmp) < 8 + 20 + 8 or icmp[0] not in (SOURCE_QUENCH, REDIRECT):
        return None
    quoted = icmp[8:]
    qihl = (quoted[0] & 0x0F) * 4
    echo = quoted[qihl : qihl + 8]
    if quoted[9] != 1 or len(echo) < 8 or echo[0] != 8:
        return None
    qident, seq = struct.unpack("!HH", echo[4:8])
    if qident != ident or str(ipaddress.IPv4Address(quoted[16:20])) != target:
        return None
    src = str(ipaddress.IPv4Address(data[12:16]))
    gateway = str(ipaddress.IPv4Address(icmp[4:8])) if icmp[0] == REDIRECT else None
    return PingNotice(seq, src, icmp[0], icmp[1], gateway, recv_ns, quoted[:qihl].hex())
