"""Which interface an exported address is on (the raw socket and capture open there)."""

from __future__ import annotations

import ipaddress

import pytest

from packetlab.endpoint import bpf

ADDRS = [
    ("lo", ipaddress.ip_address("127.0.0.1")),
    ("lo", ipaddress.ip_address("::1")),
    ("eth0", ipaddress.ip_address("10.0.0.1")),
]


@pytest.fixture(autouse=True)
def interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpf, "_all_addresses", lambda: list(ADDRS))


def test_an_interface_address_is_found() -> None:
    assert bpf.interface_for_address("10.0.0.1") == "eth0"
    assert bpf.interface_for_address("::1") == "lo"


def test_any_of_127_8_is_the_loopback_interfaces() -> None:
    # Linux's local route: 127.0.0.2 is bound and answered on lo (a DNS server there was
    # "ESKTNOADDR: 127.0.0.2 is not one of the endpoint's addresses (it has 127.0.0.2)").
    assert bpf.interface_for_address("127.0.0.2") == "lo"
    assert bpf.interface_for_address("127.255.0.9") == "lo"


def test_an_address_no_interface_has_is_an_error() -> None:
    for addr in ("10.0.0.2", "::2", "192.0.2.1"):
        with pytest.raises(ValueError, match=f"no interface has address {addr}"):
            bpf.interface_for_address(addr)
