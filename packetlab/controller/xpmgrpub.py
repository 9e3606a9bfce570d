"""The manager's publications (PROTOCOL.md §5.4, §5.6; BROKER-PROXY-OBSERVED.md §3).

From `xpmgr.conf` and the command line this builds, per ExpExec, what `publish()`
(`packetlab.controller.publish`) sends: the experiment chain as xcerts (only with a
TRUSTEDEOP key, as pktxpmgr), the channels (an empty PUB_CHANNEL entry is the root EOp's
keyid, in place), and the xdescr in pktxpmgr's field order with `controller_addr`:

* ``-p``, else ``PubControllerAddr``;
* proxy mode: the proxy host without port (endpoints use the default port 20556);
* ``-a ADDR:PORT`` in passive mode (the port actually bound when it was 0); a wildcard
  ADDR (``0.0.0.0``, ``::``) is replaced by the local address toward the broker;
* else (no ``-a``) the local address toward the broker, without port.

An IPv6 address goes without brackets and always with its port (``::1:20600``,
``::1:20556``): the reference endpoint splits controller_addr on its last ':' (session 32).

ExpExec entries are published in reverse config order, each on its own broker link; a
publication lives exactly as long as its link.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packetlab.controller.publish import PublishCredentials, make_xdescr
from packetlab.controller.xpmgrconf import ExpExec, XpmgrConfig
from packetlab.hostport import HostPortError, port_number, split_host_port
from packetlab.ppks import key_id, load_certificates, raw_public_key, read_public_key
from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT, DEFAULT_PUB_PORT

__all__ = [
    "PubItem",
    "controller_addr",
    "override_pairs",
    "publication_items",
    "reference_form",
]


@dataclass
class PubItem:
    snikey: str
    xdescr: bytes
    credentials: PublishCredentials
    channels: list[bytes]


def override_pairs(text: str) -> list[tuple[str, str]]:
    """OVERRIDE_XDESCRNVP pairs in the order pktxpmgr sends them (reversed)."""
    pairs = []
    for item in filter(None, text.split(";")):
        name, _, value = item.partition("=")
        pairs.append((name, value))
    return list(reversed(pairs))


def _split(addr: str, default_port: int) -> tuple[str, int]:
    try:
        host, port = split_host_port(addr, reference=True)
    except HostPortError:  # (BrokerAddr was checked when the config was read)
        return addr.strip("[]"), default_port
    number = None if port is None else port_number(port)
    return host, default_port if number is None else number


def local_address_toward(broker: str) -> str:
    """The local address the kernel would use to reach `broker` (no packet is sent)."""
    host, port = _split(broker, DEFAULT_PUB_PORT)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    info = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0]
    with socket.socket(info[0], socket.SOCK_DGRAM) as s:
        s.connect(info[4])
        return str(s.getsockname()[0])


def controller_addr(
    cfg: XpmgrConfig,
    *,
    publish_arg: str | None,
    active: bool,
    address: tuple[str, int] | None,
    address_given: bool,
) -> str:
    """`address` is the proxy (active) or where we listen (passive, bound port). An IPv6
    address is published as the reference endpoint reads it (`reference_form`)."""
    if publish_arg:
        return reference_form(publish_arg)
    if cfg.pub_controller_addr:
        return reference_form(cfg.pub_controller_addr)
    if active and address is not None:
        return _host_only(_publishable(address[0]))
    if address_given and address is not None:
        host, port = address
        if host in ("0.0.0.0", "::"):
            # a wildcard is no address to publish, but its port is where we listen:
            # without it the endpoints went to 20556 and gave up (session 32)
            host = local_address_toward(cfg.broker_addr or "")
        return f"{_publishable(host)}:{port}"
    return _host_only(_publishable(local_address_toward(cfg.broker_addr or "")))


def reference_form(addr: str) -> str:
    """``[v6]:PORT`` as ``v6:PORT``, ``[v6]`` as ``v6:20556``: the reference endpoint
    splits controller_addr on its last ':' and has no brackets (PROTOCOL.md §1.4), so a
    bracket was part of the host it looked up (ours reads both forms). Other text as
    written (``::1:20600`` is already the reference's form)."""
    if not addr.startswith("["):
        return addr
    try:
        host, port = split_host_port(addr, reference=True)
    except HostPortError:
        return addr
    if port is None:
        return _host_only(host)
    return addr if port_number(port) is None else f"{host}:{port}"


def _publishable(host: str) -> str:
    """`host`, unless it is a link-local IPv6 address: its zone names one of this host's
    interfaces, not the endpoint's, and an xdescr value has no '%' (the broker said
    `bad_value_char at offset 69: '%' is not allowed in a value`)."""
    import ipaddress

    try:
        link_local = ipaddress.IPv6Address(host).is_link_local
    except ValueError:
        return host
    if link_local:
        raise ValueError(
            f"{host} is link-local, no address to publish (an endpoint would need its own "
            "interface's name): listen on a global address, or give one with -p"
        )
    return host


def _host_only(host: str) -> str:
    """A host published without port, as pktxpmgr does (endpoints take 20556); but an
    IPv6 address gets the port: a reference endpoint reads ``::1`` as host ``:`` port 1."""
    return f"{host}:{DEFAULT_CONTROLLER_PORT}" if ":" in host else host


def _credentials(cfg: XpmgrConfig, spec: ExpExec) -> tuple[PublishCredentials, bytes | None]:
    if not cfg.pub_agent_cert:
        raise ValueError("EnableExpPublication 1 needs PubAgentCertPath (the agent cert)")
    chain: Sequence[str] = spec.chain if spec.trusted_eop else ()
    eop_path = None
    if spec.trusted_eop:
        # the root EOp: the trusted key whose keyid the chain's top certificate names
        akis = {c.authority_key_id for p in spec.chain
                for c in load_certificates(Path(p).read_bytes())}  # fmt: skip
        eop_path = next(
            (p for p in spec.trusted_eop if key_id(read_public_key(p)) in akis),
            spec.trusted_eop[0],
        )
    creds = PublishCredentials.load(
        cfg.pub_agent_cert,
        cfg.controller_privkey or "",
        chain,
        eop_path,
        cfg.broker_cert_roots,
    )
    eop = raw_public_key(read_public_key(eop_path)) if eop_path else None
    return creds, eop


def publication_items(
    cfg: XpmgrConfig,
    snikeys: dict[int, str],
    *,
    addr: str,
    hostid: str | None = None,
    now_ns: int | None = None,
) -> list[PubItem]:
    """One item per ExpExec (reverse config order). `snikeys` maps id(ExpExec) to the
    snikey in use (random ones were drawn at start-up). Raises ValueError."""
    now = time.time_ns() if now_ns is None else now_ns
    pub_end = now + cfg.pub_period_ns if cfg.pub_period_ns else None
    items = []
    for spec in reversed(cfg.exp_exec):
        creds, eop = _credentials(cfg, spec)
        channels = []
        for ch in spec.pub_channels:
            if ch:
                channels.append(ch)
            elif eop is not None:
                channels.append(key_id(eop))
            else:
                raise ValueError(f"{spec.where}: an empty PUB_CHANNEL needs TRUSTEDEOP_PATH")
        snikey = snikeys[id(spec)]
        xdescr = make_xdescr(
            addr,
            sni_key=snikey,
            pub_end_ns=pub_end,
            exp_priority=cfg.pub_exp_priority,
            hostid=hostid,
            countries=cfg.pub_country,
            locations=cfg.pub_location,
            extra=override_pairs(spec.override),
        )
        items.append(PubItem(snikey, xdescr, creds, channels))
    return items
