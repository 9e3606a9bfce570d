"""What the manager publishes (PROTOCOL.md §5.4, §5.6; BROKER-PROXY-OBSERVED.md §3.2-3.3):
xdescr field order, overrides reversed, controller_addr rules, channels, xcerts only with
a TRUSTEDEOP key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from packetlab.cli.init import init_home
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.controller.xpmgrpub import controller_addr, override_pairs, publication_items
from packetlab.ppks import PktlabHome, key_id, read_public_key


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("pub") / "home")
    init_home(h)
    return h


def conf(home: PktlabHome, *lines: str) -> str:
    r = home.root
    chain = f"{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert"
    return "\n".join([
        "EnableExpPublication 1", "BrokerAddr 127.0.0.1:20556",
        f"PubAgentCertPath {r}/certs/agent_xc_xc.cert", f"ControllerPrivkeyPath {r}/keys/k_xc",
        *lines,
    ]).replace("CHAIN", chain).replace("EOP", f"{r}/keys/k_eop.pub") + "\n"  # fmt: skip


def test_xdescr_in_pktxpmgr_order(home: PktlabHome) -> None:
    cfg = parse_xpmgr_config(conf(home, "PubPeriod 30000000000", "PubExpPriority 7",
                                  "PubCountry USA,GBR", "PubLocation IO91*",
                                  "ExpExec 1:snic0:CHAIN:EOP::foo=a:b;bar=c;"))  # fmt: skip
    [item] = publication_items(cfg, {id(cfg.exp_exec[0]): "snic0"}, addr="127.0.0.1:20600",
                               hostid="myhost*", now_ns=1_000)  # fmt: skip
    assert item.xdescr == (
        b"hostid=myhost*;endpoint_location=IO91*;endpoint_country=GBR;endpoint_country=USA;"
        b"exp_priority=7;pub_end=30000001000;controller_addr=127.0.0.1:20600;sni_key=snic0;"
        b"bar=c;foo=a:b;"
    )
    eop = read_public_key(home.pubkey_path("k_eop"))
    assert item.channels == [key_id(eop)]  # empty PUB_CHANNEL: the root EOp's keyid
    assert [c.cert_type.label for c in item.credentials.chain] == ["pubcmd", "exppriv"]


def test_public_channel_without_trusted_eop_sends_no_chain(home: PktlabHome) -> None:
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0::CHAIN::7075626c6963:"))
    [item] = publication_items(cfg, {id(cfg.exp_exec[0]): "k"}, addr="a")
    assert item.channels == [b"public"] and list(item.credentials.chain) == []
    assert item.xdescr == b"controller_addr=a;sni_key=k;"


def test_channels_in_place_and_reverse_config_order(home: PktlabHome) -> None:
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0:one:CHAIN:EOP:7075626c6963,:",
                                  "ExpExec 0:two:CHAIN:EOP:,7075626c6963:"))  # fmt: skip
    keys = {id(e): e.snikey or "" for e in cfg.exp_exec}
    items = publication_items(cfg, keys, addr="a")
    assert [i.snikey for i in items] == ["two", "one"]
    root = key_id(read_public_key(home.pubkey_path("k_eop")))
    assert items[0].channels == [root, b"public"] and items[1].channels == [b"public", root]


def test_controller_addr_rules(home: PktlabHome) -> None:
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0::CHAIN:EOP::"))
    kw: dict[str, Any] = {"active": False, "address": ("127.0.0.1", 20600), "address_given": True}
    assert controller_addr(cfg, publish_arg="192.0.2.9:3333", **kw) == "192.0.2.9:3333"
    assert controller_addr(cfg, publish_arg=None, **kw) == "127.0.0.1:20600"
    active: dict[str, Any] = {
        "active": True,
        "address": ("198.51.100.2", 20557),
        "address_given": True,
    }
    assert controller_addr(cfg, publish_arg=None, **active) == "198.51.100.2"  # no port
    anyaddr: dict[str, Any] = {
        "active": False,
        "address": ("0.0.0.0", 20556),
        "address_given": False,
    }
    assert controller_addr(cfg, publish_arg=None, **anyaddr) == "127.0.0.1"  # toward broker
    # `-a 0.0.0.0:PORT`: the address toward the broker with the port we listen on; it was
    # `127.0.0.1` alone, and the endpoints went to port 20556 and gave up (session 32)
    for wild in ("0.0.0.0", "::"):
        given = dict(anyaddr, address=(wild, 36383), address_given=True)
        assert controller_addr(cfg, publish_arg=None, **given) == "127.0.0.1:36383"
    cfg.pub_controller_addr = "203.0.113.1"
    assert controller_addr(cfg, publish_arg=None, **kw) == "203.0.113.1"


def test_override_pairs_reversed() -> None:
    assert override_pairs("foo=a:b;bar=c;") == [("bar", "c"), ("foo", "a:b")]
    assert override_pairs("") == []


def test_publishing_needs_the_agent_cert(home: PktlabHome, tmp_path: Path) -> None:
    text = conf(home, "ExpExec 0::CHAIN:EOP::").replace("PubAgentCertPath", "# ")
    with pytest.raises(ValueError, match="needs PubAgentCertPath"):  # at start (session 13)
        parse_xpmgr_config(text)
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0::CHAIN:EOP::"))
    cfg.pub_agent_cert = None  # and where publishing is asked anyway
    with pytest.raises(ValueError, match="needs PubAgentCertPath"):
        publication_items(cfg, {id(cfg.exp_exec[0]): "k"}, addr="a")


def test_an_ipv6_controller_addr_in_the_form_the_reference_endpoint_reads(
    home: PktlabHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference endpoint splits controller_addr on its last ':' and has no brackets
    (PROTOCOL.md §1.4): `[::1]:37585` was published (its host `[::1]`, no address) and a
    bare `::1` in proxy mode and toward the broker (its host `:`, port 1). Ours reads
    both forms; session 32 (dual32)."""
    from packetlab.controller import xpmgrpub

    monkeypatch.setattr(xpmgrpub, "local_address_toward", lambda broker: "2001:db8::7")
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0::CHAIN:EOP::"))
    passive: dict[str, Any] = {"active": False, "address": ("::1", 37585), "address_given": True}
    assert controller_addr(cfg, publish_arg=None, **passive) == "::1:37585"
    assert controller_addr(cfg, publish_arg="[::1]:3333", **passive) == "::1:3333"
    assert controller_addr(cfg, publish_arg="[2001:db8::9]", **passive) == "2001:db8::9:20556"
    assert controller_addr(cfg, publish_arg="::1:3333", **passive) == "::1:3333"  # as given
    active: dict[str, Any] = {"active": True, "address": ("::1", 20557), "address_given": True}
    assert controller_addr(cfg, publish_arg=None, **active) == "::1:20556"
    wild = dict(passive, address=("::", 36383))
    assert controller_addr(cfg, publish_arg=None, **wild) == "2001:db8::7:36383"
    none = dict(passive, address=("0.0.0.0", 20556), address_given=False)
    assert controller_addr(cfg, publish_arg=None, **none) == "2001:db8::7:20556"
    cfg.pub_controller_addr = "[fe80::1%eth0]:20600"
    assert controller_addr(cfg, publish_arg=None, **passive) == "fe80::1%eth0:20600"
    assert controller_addr(cfg, publish_arg="[x", **passive) == "[x"  # no address: as given


def test_a_link_local_address_is_not_published(home: PktlabHome) -> None:
    """`-a [fe80::1%eth0]:0` was sent, and the broker refused it (`'%' is not allowed in
    a value`); without its zone no endpoint could reach it. Session 32 (dual32)."""
    cfg = parse_xpmgr_config(conf(home, "ExpExec 0::CHAIN:EOP::"))
    for active in (False, True):
        kw: dict[str, Any] = {"active": active, "address": ("fe80::1%eth0", 5),
                              "address_given": True}  # fmt: skip
        with pytest.raises(ValueError, match="fe80::1%eth0 is link-local, no address to publish"):
            controller_addr(cfg, publish_arg=None, **kw)
