"""Session 32 (hostp32): one reader of HOST[:PORT] (`hostport.split_host_port`) for
every option and config line, and what each caller made of the same text before."""

from __future__ import annotations

import argparse

import pytest

from packetlab.hostport import HostPortError, port_number, split_host_port

# Every form a caller accepts: text -> (host, port text) in the reference's reading
# (controller_addr, BrokerAddr, --broker, xpmgr -a/-p, --listen) and in the native
# tools' (run throughput/compare --server as iperf3 -c, dns --server as dig's @, wrap
# --dns-server); None: the same as the reference's.
FORMS: list[tuple[str, tuple[str, str | None], tuple[str, str | None] | None]] = [
    ("127.0.0.1", ("127.0.0.1", None), None),
    ("127.0.0.1:20556", ("127.0.0.1", "20556"), None),
    ("127.0.0.1:0", ("127.0.0.1", "0"), None),  # (xpmgr -a, --listen: a free port)
    ("127.0.0.1:", ("127.0.0.1", ""), None),  # (every caller: bad port)
    ("localhost", ("localhost", None), None),
    ("broker.example.org:20556", ("broker.example.org", "20556"), None),
    (":20556", ("", "20556"), None),  # (every caller: no host)
    ("[::1]", ("::1", None), None),
    ("[::1]:20556", ("::1", "20556"), None),
    ("[::1]:", ("::1", ""), None),
    ("[2001:db8::7]:65535", ("2001:db8::7", "65535"), None),
    ("[fe80::1%eth0]:7", ("fe80::1%eth0", "7"), None),
    ("::1", ("::1", None), None),  # (its last ':' leaves `:`, no address)
    ("2001:db8::1", ("2001:db8::1", None), None),  # (`2001:db8:` is no address)
    ("fe80::1%eth0", ("fe80::1%eth0", None), None),
    ("::ffff:192.0.2.1", ("::ffff:192.0.2.1", None), None),
    # the reference splits on the last ':' (PROTOCOL.md §1.4); iperf3 and dig take one host
    ("::1:20556", ("::1", "20556"), ("::1:20556", None)),
    ("2001:db8::1:2", ("2001:db8::1", "2"), ("2001:db8::1:2", None)),
    ("fe80::1%eth0:7", ("fe80::1%eth0", "7"), ("fe80::1%eth0:7", None)),
    (":::20556", ("::", "20556"), (":::20556", None)),
    # no reading makes an address of these: the caller says so in its words
    ("1:2:3", ("1:2:3", None), None),
    ("::1:20556x", ("::1:20556x", None), None),
    ("tcp6:20556:interface=\\:\\:1", ("tcp6:20556:interface=\\:\\:1", None), None),
]


@pytest.mark.parametrize(("text", "reference", "native"), FORMS)
def test_the_forms_every_caller_accepts(
    text: str, reference: tuple[str, str | None], native: tuple[str, str | None] | None
) -> None:
    assert split_host_port(text, reference=True) == reference
    assert split_host_port(text, reference=False) == (native or reference)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[::1", "expected [IPv6]:PORT"),
        ("[::1]x", "expected [IPv6]:PORT"),
        ("[::1]20556", "expected [IPv6]:PORT"),
        ("[localhost]:1", "'localhost' is not an IPv6 address"),
        ("[1.2.3.4]:5", "'1.2.3.4' is not an IPv6 address"),
        ("[]:5", "'' is not an IPv6 address"),
    ],
)
def test_a_bracket_is_an_ipv6_address(text: str, said: str) -> None:
    for reference in (True, False):
        with pytest.raises(HostPortError) as e:
            split_host_port(text, reference=reference)
        assert str(e.value) == said


@pytest.mark.parametrize(
    ("text", "lowest", "port"),
    [
        ("1", 1, 1),
        ("65535", 1, 65535),
        ("0", 1, None),
        ("0", 0, 0),
        ("65536", 1, None),
        ("", 1, None),
        ("-1", 0, None),
        ("http", 1, None),
        ("\u00b2", 1, None),  # `²`: isdigit, then int's `invalid literal`
        ("\u0663", 1, None),  # an Arabic-Indic 3: was port 3
        ("9" * 5000, 1, None),  # int's digit limit
    ],
)
def test_port_number(text: str, lowest: int, port: int | None) -> None:
    assert port_number(text, lowest) == port


# What each caller of the reference's reading makes of the same text: they agree.
AGREED = [
    ("127.0.0.1:5000", ("127.0.0.1", 5000)),
    ("[::1]:5000", ("::1", 5000)),
    ("::1:5000", ("::1", 5000)),
    ("2001:db8::1:2", ("2001:db8::1", 2)),  # xpmgr -a: was 2001:db8::1:2 port 20556
    ("::1", ("::1", 20556)),
    ("2001:db8::1", ("2001:db8::1", 20556)),
]


@pytest.mark.parametrize(("text", "want"), AGREED)
def test_the_reference_readers_agree(text: str, want: tuple[str, int]) -> None:
    from packetlab.controller.xpmgr import parse_host_port
    from packetlab.controller.xpmgrpub import _split
    from packetlab.endpoint.service import ControllerAddress

    a = ControllerAddress.parse(text)
    assert (a.host, a.port) == want  # the endpoint's controller_addr and --broker
    h = parse_host_port(text, 20556)
    assert (h.host, h.port) == want  # xpmgr -a
    assert _split(text, 20556) == want  # BrokerAddr, as the publication reads it


def test_xpmgr_a_reads_an_ipv6_address_and_port_as_the_reference_does() -> None:
    """`-a ::1:20600` was refused (`an IPv6 address with a port is written [ADDR]:PORT`)
    and `-a 2001:db8::1:2` listened on port 20556 while `-p 2001:db8::1:2`, BrokerAddr
    and the endpoint read port 2: -a is the reference's option, read as its others."""
    from packetlab.controller.xpmgr import HostPort, parse_host_port

    assert parse_host_port("::1:20600", 20556) == HostPort("::1", 20600)
    assert parse_host_port("2001:db8::1:2", 20556) == HostPort("2001:db8::1", 2)
    assert parse_host_port("::1:0", 20556) == HostPort("::1", 0)


@pytest.mark.parametrize("text", ["127.0.0.1:\u00b2", "127.0.0.1:\u0663", "[::1]:\u00b2"])
def test_a_port_of_other_digits_is_a_bad_port_everywhere(text: str) -> None:
    """`²` raised int's `invalid literal for int() with base 10` (the endpoint's
    --broker, --listen, dns --server, the publication's broker), and `٣` was port 3
    (the endpoint) or `tcp:٣` (--listen)."""
    from packetlab.cli.linkargs import LinkError, listen_description
    from packetlab.cli.run import RunError
    from packetlab.cli.run_dns_words import split_server
    from packetlab.cli.wrap import dns_server
    from packetlab.controller.publish import PublishError, _broker_endpoint
    from packetlab.endpoint.service import ControllerAddress

    with pytest.raises(ValueError, match=r"bad controller address .*port must be 1\.\.65535"):
        ControllerAddress.parse(text)
    with pytest.raises(LinkError, match="bad port"):
        listen_description(text)
    with pytest.raises(RunError, match="bad port"):
        split_server(text)
    with pytest.raises(argparse.ArgumentTypeError, match="bad port"):
        dns_server(text)
    with pytest.raises(PublishError, match="bad broker address"):
        _broker_endpoint(None, text)


@pytest.mark.parametrize("text", ["[::1]x", "[::1]5201", "[localhost]:5201"])
def test_a_bracket_that_is_no_ipv6_address_is_refused(text: str) -> None:
    """`--server [::1]x` went to port 5201 and `[localhost]:5201` to localhost (iperf3
    -c: `unable to connect`); wrap's `--dns-server [::1]x` to port 53."""
    from packetlab.cli.run import RunError
    from packetlab.cli.run_throughput import split_host_port as server
    from packetlab.cli.wrap import dns_server

    with pytest.raises(RunError, match="--server"):
        server(text, 5201)
    with pytest.raises(argparse.ArgumentTypeError):
        dns_server(text)


@pytest.mark.parametrize("addr", ["::1:0", "[::1]:0", "[::1]:99999", "[x]:5", "[::1"])
def test_the_broker_refuses_a_controller_addr_no_endpoint_can_reach(addr: str) -> None:
    """`controller_addr=::1:0` was published (the endpoint reads port 0 of ::1, as
    127.0.0.1:0, which was refused), and so were `[::1]:0`, `[::1]:99999`, `[x]:5`."""
    from packetlab.broker.auth import Refusal, _xdescr_fields
    from packetlab.wire.constants import Status
    from packetlab.wire.nvlist import NVPair

    got = _xdescr_fields([NVPair("controller_addr", addr)], 0)
    assert isinstance(got, Refusal) and got.status == Status.EPUBBADADDR
    for good in ("::1:7", "[::1]:7", "::1", "2001:db8::1:2", "127.0.0.1"):
        assert not isinstance(_xdescr_fields([NVPair("controller_addr", good)], 0), Refusal)


@pytest.mark.parametrize("text", ["127.0.0.1:\u00b2", "[::1]x", "[::1]:0"])
def test_the_examples_target_reads_as_run_server(text: str) -> None:
    """examples/_common.py's --target: `127.0.0.1:²` raised int's ValueError (argparse:
    `invalid parse value`), `[::1]x` took the default port."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from _common import address_port

    with pytest.raises(argparse.ArgumentTypeError):
        address_port(9)(text)
    assert address_port(9)("::1") == ("::1", 9)
    assert address_port(9)("[::1]:53") == ("::1", 53)


def test_xpmgr_p_in_the_reference_form_passes_the_command_line_check(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-p ::1:20600` was refused before anything ran (`-p '::1:20600': bad address ...:
    not an IPv6 address`, exit 2), though it is the form the endpoint reads."""
    from packetlab.cli.init import init_home
    from packetlab.cli.xpmgr import add_arguments, run
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at(tmp_path_factory.mktemp("p") / "home")
    init_home(home)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    conf = str(home.root / "xpmgr.conf")
    # (-a [::1]:x stops it after the -p check: nothing listens)
    argv = ["-c", conf, "-p", "::1:20600", "-a", "[::1]:x", "x"]
    assert run(parser.parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert "-a: bad address" in err and "-p '" not in err, err
