"""endpt.conf parsing (PROTOCOL.md §7.4): defaults, every key, clear errors, warnings."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from packetlab.endpoint.config import (
    KNOWN_KEYS,
    ConfigError,
    EndpointConfig,
    load_config,
    parse_config,
)


def parse(text: str) -> EndpointConfig:
    return parse_config(text.splitlines(), "t.conf")


def test_reference_defaults() -> None:
    cfg = EndpointConfig()
    assert cfg.buf_max == 8388608
    assert cfg.transproto_sup == {"tcp", "udp"}
    assert [str(i) for i in cfg.ipv4] == ["127.0.0.1/24", "127.0.0.2/24"]
    assert cfg.ipv6 == [] and cfg.dns4 == [] and cfg.dns6 == []
    assert cfg.host_id == "pktendpt"


def test_every_used_key() -> None:
    cfg = parse(
        """
        # a comment line
        BufMax 65536   # trailing comment
        TransprotoSup udp
        VMemLocalAddrStrIPv4 10.0.0.1/255.255.0.0, 192.0.2.7
        VMemLocalAddrStrIPv6 ::1,fd00::2/64
        VMemLocalDNSAddrStrIPv4 9.9.9.9
        VMemLocalDNSAddrStrIPv6 2001:db8::53
        HostID my endpoint
        NoSubMode 1
        NoSubModeSNIKey abc123
        """
    )
    assert cfg.buf_max == 65536
    assert cfg.transproto_sup == {"udp"}
    assert [str(i) for i in cfg.ipv4] == ["10.0.0.1/16", "192.0.2.7/32"]
    assert cfg.ipv6 == [ipaddress.IPv6Address("::1"), ipaddress.IPv6Address("fd00::2")]
    assert [str(a) for a in cfg.dns4] == ["9.9.9.9"]
    assert [str(a) for a in cfg.dns6] == ["2001:db8::53"]
    assert cfg.host_id == "my endpoint"
    assert cfg.nosub_snikey == "abc123"
    assert cfg.warnings == []


def test_where_each_key_came_from_is_kept() -> None:
    cfg = parse("# c\nBufMax 10\nCpuLatencyUs 0\n")
    assert cfg.origins == {"BufMax": "t.conf:2", "CpuLatencyUs": "t.conf:3"}


def test_interface_names_export_their_addresses() -> None:
    cfg = parse("VMemLocalAddrStrIPv4 lo\nVMemLocalAddrStrIPv6 lo\n")
    assert ipaddress.IPv4Interface("127.0.0.1/8") in cfg.ipv4
    assert ipaddress.IPv6Address("::1") in cfg.ipv6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("BufMax lots", "t.conf:2: BufMax: expected an integer, got 'lots'"),
        ("BufMax 0", "t.conf:2: BufMax: 0 is out of range"),
        ("BufMax 4294967296", "out of range"),
        ("TransprotoSup tcp,sctp", "t.conf:2: TransprotoSup: unknown protocol(s) sctp"),
        ("VMemLocalAddrStrIPv4 300.1.1.1", "neither an IPv4 address[/mask] nor an interface"),
        ("VMemLocalAddrStrIPv4 nosuchif0", "interface 'nosuchif0' does not exist"),
        ("VMemLocalAddrStrIPv6 1.2.3.4", "neither an IPv6 address nor an interface name"),
        ("VMemLocalDNSAddrStrIPv4 ::1", "'::1' is not an IPv4 address"),
        ("VMemLocalDNSAddrStrIPv6 dns.example", "'dns.example' is not an IP address"),
        ("HostID " + "x" * 256, "256 bytes long, at most 255"),
        ("BrokerChannel zz", "'zz' is not a channel"),
        ("EndpointAttr hostid=a*;", "without wildcards"),
        ("MaxConcurrentExperiments 0", "out of range"),
        ("NoSubMode yes", "expected 0 or 1"),
        ("NoSubModeSNIKey Upper", "is not a snikey"),
    ],
)
def test_bad_values_name_the_line_and_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse("HostID fine\n" + line)
    assert message in str(e.value)


def test_too_many_dns_servers() -> None:
    servers = ",".join(f"10.0.0.{i}" for i in range(17))
    with pytest.raises(ConfigError, match="17 addresses, at most 16"):
        parse(f"VMemLocalDNSAddrStrIPv4 {servers}")


def test_unknown_and_unused_keys_warn() -> None:
    cfg = parse("Zzyzx 5\nWorkerBusyWaitMode 1\nBufMax 10\nBufMax 20\nRawModeLKM 1\n")
    assert cfg.buf_max == 20
    assert "t.conf:1: unknown key 'Zzyzx' ignored" in cfg.warnings
    assert any("WorkerBusyWaitMode is not used" in w for w in cfg.warnings)
    assert "t.conf:4: BufMax repeated (line 3); the last one wins: 20" in cfg.warnings
    assert any("RawModeLKM 1 is not supported" in w for w in cfg.warnings)
    assert cfg.reserved == {"WorkerBusyWaitMode": "1"}


def test_a_misspelled_key_stops_with_the_key_meant() -> None:
    """`NoSubMod 1` ignored would run the endpoint in another mode than written (was a
    warning in the log); a key like none we know stays a warning (above)."""
    with pytest.raises(
        ConfigError, match=r"^t.conf:2: unknown key 'BufMx' \(did you mean BufMax\?\)$"
    ):
        parse("BufMax 10\nBufMx 5\n")
    with pytest.raises(ConfigError, match="did you mean HostID"):
        parse("Hostid x\n")  # case alone


@pytest.mark.parametrize(
    "line", ["BufMax=100", "BufMax = 100", "BufMax= 100", "BufMax =  100  # bytes"]
)
def test_a_key_written_with_an_equals_sign_stops_with_the_line_as_it_should_be(
    line: str,
) -> None:
    """`BufMax=100` (the KEY=VALUE of most config files) was an unknown key 'BufMax=100',
    a warning in the log, and the endpoint ran on the default (session 35, op35)."""
    with pytest.raises(ConfigError) as e:
        parse(f"HostID h\n{line}\n")
    assert str(e.value).startswith("t.conf:2: ")
    assert str(e.value).endswith("not '=': write BufMax 100")
    assert parse("EndpointAttr os=linux;\n").endpoint_attr == "os=linux;"  # "=" in a value


def test_a_key_only_like_a_known_one_warns() -> None:
    """xpmgr.conf's BrokerCertRootPath in endpt.conf, or another version's key: ignored
    with a warning and the nearest key, not a stop."""
    cfg = parse("BrokerCertRootPath /x.pub\n")
    assert cfg.warnings == [
        "t.conf:1: unknown key 'BrokerCertRootPath' ignored (did you mean BrokerChainRootPath?)"
    ]


def test_broker_mode_keys() -> None:
    cfg = parse(
        "NoSubMode 0\nBrokerAddr 10.0.0.1\nBrokerChannel 7075626c6963,\n"
        "AutoExtractChannel 0\nEndpointAttr hostid=h1;\nMaxConcurrentExperiments 2\n"
    )
    assert not cfg.nosub_mode and cfg.broker_addr == "10.0.0.1"
    assert cfg.broker_channels == ["7075626c6963", ""]
    assert not cfg.auto_extract_channel
    assert cfg.endpoint_attr == "hostid=h1;" and cfg.max_experiments == 2


def test_raw_is_offered() -> None:
    cfg = parse("TransprotoSup raw,tcp")
    assert cfg.transproto_sup == {"raw", "tcp"}
    assert not cfg.warnings


def test_empty_lists_and_tabs() -> None:
    cfg = parse("VMemLocalAddrStrIPv4\nHostID\tfoo bar\n")
    assert cfg.ipv4 == [] and cfg.host_id == "foo bar"


def test_load_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "endpt.conf"
    conf.write_text("BufMax 1234\n")
    assert load_config(conf).buf_max == 1234
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.conf")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pktlab/endpt.conf: defaults
    assert load_config(None).buf_max == 8388608
    (tmp_path / ".pktlab").mkdir()
    (tmp_path / ".pktlab" / "endpt.conf").write_text("BufMax 77\n")
    assert load_config(None).buf_max == 77


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    """As the broker's and proxy's (paths.config_text): the line, not a byte offset."""
    conf = tmp_path / "endpt.conf"
    conf.write_bytes(b"BufMax 1234\nHostID caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        load_config(conf)
    assert str(e.value) == f"{conf}:2: not UTF-8 text (byte 0xe9)"


@pytest.mark.parametrize(
    ("key", "make"),
    [
        ("VMemLocalAddrStrIPv4", lambda i: f"10.0.{i // 250}.{i % 250 + 1}/24"),
        ("VMemLocalAddrStrIPv6", lambda i: f"fd00::{i + 1:x}"),
    ],
)
def test_at_most_255_local_addresses_as_ip4no_ip6no_are_one_byte(key: str, make: object) -> None:
    """IP4NO/IP6NO (§2.2) are u8: 256 addresses cannot be counted. The reference's count
    wraps to 0; here the config says so instead of a bare ValueError at start-up."""
    from packetlab.endpoint.memory import system_image

    assert callable(make)
    ok = parse_config([f"{key} " + ",".join(make(i) for i in range(255))])
    assert system_image(ok)[0:2] in (b"\xff\x00", b"\x02\xff")
    with pytest.raises(ConfigError, match="at most 255"):
        parse_config([f"{key} " + ",".join(make(i) for i in range(256))])


@settings(max_examples=400, deadline=None, database=None)
@given(
    key=st.sampled_from(KNOWN_KEYS),
    value=st.text(st.characters(blacklist_characters="\n\r#", codec="utf-8"), max_size=40)
    | st.sampled_from(["0", "-1", "0x10", "1_0", "1e3", "1/0", "1/1e-12", "99999999999", ""])
    | st.just("~nosuchuser8/x"),  # a path whose ~user does not exist: a ConfigError
)
@example(key="BrokerChainRootPath", value="~\x00")  # was a bare ValueError (expanduser)
@example(key="RLimDBPath", value="/tmp/a\x00b")
def test_any_value_of_any_key_is_taken_or_refused_with_a_config_error(key: str, value: str) -> None:
    """endpt.conf from a stranger: each line is applied or refused with a ConfigError that
    names the line and the key, and a config that parses gives a system image (§2.2)."""
    from packetlab.endpoint.memory import system_image

    try:
        cfg = parse_config([f"{key} {value}"], "endpt.conf")
    except ConfigError as e:
        assert str(e).startswith(f"endpt.conf:1: {key}: "), str(e)
        return
    system_image(cfg)


@pytest.mark.parametrize("value", ["x:y", "2", "-1", "yes", ""])
def test_a_reference_key_we_do_not_use_still_has_its_format_checked(value: str) -> None:
    # §7.4 WorkerBusyWaitMode [0] (0/1): any value was taken with a "not used" warning
    with pytest.raises(ConfigError, match=r"endpt\.conf:1: WorkerBusyWaitMode: expected 0 or 1"):
        parse_config([f"WorkerBusyWaitMode {value}"], "endpt.conf")
