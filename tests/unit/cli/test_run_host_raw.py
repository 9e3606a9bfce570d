"""`check_raw_permission`: the line a run without raw sockets stops with, and the
commands that check it before their in-process endpoint starts (session 23, doctour23:
`run alias` and `compare ping|traceroute` said `nopen failed: EUNKFAULT` instead). The
whole commands, with CAP_NET_RAW dropped: tests/integration/test_pktlab_run.py."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from packetlab.cli import run_host
from packetlab.cli.run import RunError


def refused(*args: Any, **kw: Any) -> socket.socket:
    raise PermissionError(1, "Operation not permitted")


@pytest.mark.parametrize("listen", [True, False])
def test_the_line(monkeypatch: pytest.MonkeyPatch, listen: bool) -> None:
    monkeypatch.setattr(run_host.socket, "socket", refused)
    with pytest.raises(RunError) as e:
        run_host.check_raw_permission(listen=listen)
    assert str(e.value).startswith("the in-process endpoint needs raw sockets: run as root")
    assert ("--listen" in str(e.value)) is listen


def test_alias_needs_them_and_dns_only_offers_them() -> None:
    from packetlab.cli.run_alias import COMMAND as ALIAS
    from packetlab.cli.run_dns import COMMAND as DNS

    assert ALIAS.raw and ALIAS.raw_needed
    assert DNS.raw and not DNS.raw_needed  # a closed port's ICMP only: it runs without
