"""Fuzz targets for the files an operator or a tool hands us (session 27): warts files,
endpt.conf, broker.conf, xpmgr.conf. The invariants are in each target's docstring;
`fuzz_decoders` lists them."""

from __future__ import annotations

# --------------------------------------------------------------------------------- warts


def fuzz_warts(data: bytes) -> None:
    """Any bytes as a warts file: `read_warts` returns its objects or raises WartsError
    (the module's declared error), nothing else."""
    from packetlab.measure.warts_format import WartsError
    from packetlab.measure.warts_read import WartsObject, read_warts

    try:
        objs = read_warts(data)
    except WartsError as e:
        assert str(e)
        return
    assert all(isinstance(o, WartsObject) for o in objs)


def _warts_seeds() -> list[bytes]:
    from packetlab.measure.warts_format import cycle_start_object, cycle_stop_object, list_object

    head = list_object(1, name="fuzz") + cycle_start_object(1_700_000_000)
    out = [head + cycle_stop_object(1_700_000_100)]
    out.append(_ping_file())
    return out


def _ping_file() -> bytes:
    """The warts file of a ping with replies, a lost probe and a duplicate."""
    from packetlab.measure.ping import PingReply, PingResult
    from packetlab.measure.warts_ping import ping_warts

    t0 = 1_796_403_716_440_364_000
    replies = (
        PingReply(1, "10.0.0.3", 21.4, 64, 64, t0, t0 + 21_400),
        PingReply(2, None, None, probe_send_ns=t0 + 200_000_000),
        PingReply(4, "10.0.0.3", 50.0, 64, 64, t0 + 600_000_000, t0 + 600_050_000, dup=True),
    )
    result = PingResult(dst="10.0.0.3", sent=4, replies=replies, src="10.0.0.2", start_ns=t0,
                        send_stamp="kernel", recv_stamp="kernel")  # fmt: skip
    return ping_warts(result, hostname="vm")


# ------------------------------------------------------------------------------- configs


def fuzz_config(data: bytes) -> None:
    """Any text as endpt.conf, broker.conf or xpmgr.conf (the first byte's low 7 bits
    pick which;
    the rest as UTF-8 with surrogates, as the readers take a file; a first byte of 0x80
    or more makes it one line of a known key, picked by the next byte, and the rest its
    value): a config, or the module's ConfigError naming the file (and the line, for a
    line's fault: `FILE:LINE: `), nothing else. An endpt.conf that parses goes on to what
    the daemon checks at startup (its capture filter compiled by libpcap: an error
    naming the file too)."""
    from packetlab.broker.config import KNOWN_KEYS as BROKER_KEYS
    from packetlab.broker.config import ConfigError as BrokerConfigError
    from packetlab.broker.config import parse_config as broker_config
    from packetlab.controller.xpmgrconf import KNOWN_KEYS as XPMGR_KEYS
    from packetlab.controller.xpmgrconf import XpmgrConfigError, parse_xpmgr_config
    from packetlab.endpoint import policy
    from packetlab.endpoint.config import KNOWN_KEYS as ENDPOINT_KEYS
    from packetlab.endpoint.config import ConfigError as EndpointConfigError
    from packetlab.endpoint.config import parse_config as endpoint_config

    if not data:
        return
    which = (data[0] & 0x7F) % 3
    name = ("endpt.conf", "broker.conf", "xpmgr.conf")[which]
    text = data[1:].decode("utf-8", "surrogateescape")
    if data[0] >= 0x80 and len(data) >= 2:
        keys = (ENDPOINT_KEYS, BROKER_KEYS, XPMGR_KEYS)[which]
        text = f"{keys[data[1] % len(keys)]} {data[2:].decode('utf-8', 'surrogateescape')}"
    try:
        if which == 0:
            cfg = endpoint_config(text.splitlines(), name)
            policy.from_config(cfg)
        elif which == 1:
            broker_config(text.splitlines(), name)
        else:
            parse_xpmgr_config(text, name)
    except (EndpointConfigError, BrokerConfigError, XpmgrConfigError) as e:
        assert str(e).startswith(name), f"an error not naming the file: {e}"


def _config_seeds() -> list[bytes]:
    endpt = (
        "BufMax 65536\nTransProto raw,tcp,udp\nIPv4Addr 127.0.0.1\nNoSubMod 0\n"
        "ExpSendRatePkt 100/10\nCaptureSnaplen 96\n# comment\n"
    )
    broker = "PublishPort 8000\nSubscribePort 8001\nErrorDelay 1s\nMaxPublications 100\n"
    xpmgr = (
        "EnableExpPublication 1\nControllerPrivkeyPath keys/k\nBrokerAddr 127.0.0.1:8000\n"
        "PubAgentCertPath certs/a.cert\n"
        "ExpExec 1:ab:certs/exppriv.cert,certs/pubcmd.cert:certs/eop.pub:00ff:name=v:prog\n"
    )
    return [
        b"\x00" + endpt.encode(),
        b"\x01" + broker.encode(),
        b"\x02" + xpmgr.encode(),
        b"\x80\x08" + b"udp port 53 and not host 10.0.0.1",  # CaptureFilter
        b"\x81\x00" + b"b.pem",
        b"\x80\x00" + b"1",
        b"\x82\x00" + b"1",
    ]
