"""This host's side of an in-process `pktlab run traceroute|ping`: the endpoint runs here,
so its raw sockets, addresses, interfaces and route MTUs are this host's."""

from __future__ import annotations

import ipaddress
import socket

from packetlab.cli.linkargs import RunError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_raw_permission(listen: bool = True) -> None:
    """The in-process endpoint needs raw sockets; say so before starting anything (and,
    with `listen`, that --listen and an endpoint that has them is the other way)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        other = ", or use --listen and an endpoint that has them" if listen else ""
        raise RunError(
            "the in-process endpoint needs raw sockets: run as root (or give this Python "
            f"CAP_NET_RAW and CAP_BPF){other}"
        ) from None


def check_local_address(src: Address) -> None:
    """The in-process endpoint sends from this host: --src must be one of its addresses."""
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(src), 0))
        except OSError as e:
            raise RunError(
                f"--src {src} is not an address of this host ({e.strerror}), where the "
                "in-process endpoint runs: give one of its addresses, or use --listen and "
                "an endpoint that has it"
            ) from None


def interface_address(
    name: str, version: int, proc: str = "/proc/net/if_inet6", option: str = "-I"
) -> Address:
    """The IPv`version` address of this host's interface `name` (ping -I IFNAME with the
    in-process endpoint, which sends from this host): IPv4 by SIOCGIFADDR, IPv6 from
    `proc` (a global address before a link-local one). RunError when there is none,
    naming `option` (traceroute's is -i)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise RunError(
            f"{option} {name}: no such interface on this host, where the in-process endpoint "
            "runs (give an interface name or one of its addresses)"
        ) from None
    if version == 4:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                got = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                raise RunError(f"{option} {name}: the interface has no IPv4 address") from None
        return ipaddress.IPv4Address(got[20:24])
    found: list[ipaddress.IPv6Address] = []
    try:
        with open(proc, encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 6 and fields[5] == name:
                    found.append(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    except OSError:
        pass
    if not found:
        raise RunError(f"{option} {name}: the interface has no IPv6 address")
    return min(found, key=lambda a: a.is_link_local)


def route_mtus(dst: Address, sys_net: str = "/sys/class/net") -> tuple[int, ...]:
    """The MTUs of this host's way to `dst`, where the in-process endpoint's --mtu
    probes start shrinking: the interface's (`ip route get`, then `sys_net`/DEV/mtu; what
    traceroute starts from) and the path MTU the kernel cached from an earlier "too big"
    (a connected socket's IP_MTU), which a raw send cannot exceed either."""
    got = [m for m in (_device_mtu(dst, sys_net), path_mtu(dst)) if m is not None]
    # (loopback's 65536: no packet is longer than 65535 bytes, so none needs cutting)
    return tuple(sorted({min(m, 0xFFFF) for m in got}, reverse=True))


def path_mtu(dst: Address) -> int | None:
    af, level, opt = (
        (socket.AF_INET, socket.IPPROTO_IP, 14)  # IP_MTU
        if dst.version == 4
        else (socket.AF_INET6, socket.IPPROTO_IPV6, 24)  # IPV6_MTU
    )
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        try:
            s.connect((str(dst), 33434))
            mtu = int(s.getsockopt(level, opt))
        except OSError:
            return None
    return mtu if mtu >= 68 else None


def _device_mtu(dst: Address, sys_net: str) -> int | None:
    import subprocess

    try:
        out = subprocess.run(
            ["ip", "-o", f"-{dst.version}", "route", "get", str(dst)],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.split()  # fmt: skip
        dev = out[out.index("dev") + 1]
        with open(f"{sys_net}/{dev}/mtu", encoding="ascii") as f:
            mtu = int(f.read())
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None
    return mtu if mtu >= 68 else None
