"""xpmgr.conf (PROTOCOL.md §7.2): every key, ExpExec fields, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packetlab.controller.xpmgrconf import XpmgrConfigError, parse_xpmgr_config

FULL = """\
# every key of the reference template
EnableExpPublication 1
BrokerAddr broker.example.org:20556
PubAgentCertPath certs/agent_xc_xc.cert
BrokerCertRootPath keys/bop.pub,keys/bop2.pub
PubControllerAddr 192.0.2.1:20600
PubPeriod 30000000000
PubExpPriority 7
PubCountry USA,GBR
PubLocation IO91*,FN*
GreetPeriodAfterPubEnd 5000000000
ControllerPrivkeyPath keys/k_xc
ProgramDirPath progs
EnableProxyMode 1
BacklogConnAgentCertPath certs/agent_xc_xc.cert
ProxyCertRootPath keys/bop.pub
TargetBacklogConn 10
BacklogConnTimeout 3000000000
BootstrapBacklogTimeout 9000000000
ResultsPath out.jsonl
ExpExec 1::certs/exppriv.cert,certs/pubcmd.cert:keys/eop.pub::
ExpExec 0:snic0:certs/a.cert:keys/eop.pub:7075626c6963,:foo=a:b;bar=c;
"""


def test_every_key() -> None:
    c = parse_xpmgr_config(FULL)
    assert c.enable_publication and c.broker_addr == "broker.example.org:20556"
    assert c.broker_cert_roots == ["keys/bop.pub", "keys/bop2.pub"]
    assert (c.pub_period_ns, c.pub_exp_priority) == (30_000_000_000, 7)
    assert c.pub_country == ["USA", "GBR"] and c.pub_location == ["IO91*", "FN*"]
    assert c.greet_after_pub_end_ns == 5_000_000_000
    assert c.enable_proxy and c.target_backlog == 10
    assert (c.backlog_timeout_ns, c.bootstrap_timeout_ns) == (3_000_000_000, 9_000_000_000)
    assert c.program_dir == "progs" and c.results_path == "out.jsonl"
    first, second = c.exp_exec
    assert first.is_default and first.snikey is None
    assert first.chain == ["certs/exppriv.cert", "certs/pubcmd.cert"]
    assert first.pub_channels == [b""]  # the root EOp's keyid
    assert not second.is_default and second.snikey == "snic0"
    assert second.pub_channels == [b"public", b""]
    assert second.override == "foo=a:b;bar=c;"  # the last field takes the rest of the line
    assert c.default_exp is first


def test_defaults() -> None:
    c = parse_xpmgr_config("EnableExpPublication 0\nControllerPrivkeyPath k\nExpExec 0::c:::\n")
    assert (c.target_backlog, c.backlog_timeout_ns, c.bootstrap_timeout_ns) == (
        2,
        2_000_000_000,
        5_000_000_000,
    )
    assert not c.enable_proxy and c.default_exp is None
    # §7.2: GreetPeriodAfterPubEnd 0; no PubPeriod, no pub_end
    assert c.greet_after_pub_end_ns == 0 and c.pub_period_ns is None


BASE = "EnableExpPublication 0\nControllerPrivkeyPath k\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ControllerPrivkeyPath k\nExpExec 1::c:::\n", "EnableExpPublication is required"),
        ("EnableExpPublication 0\nExpExec 1::c:::\n", "ControllerPrivkeyPath is required"),
        (BASE, "at least one ExpExec"),
        (BASE + "ExpExec 1::c::\n", "needs 6 ':'-separated fields"),
        (BASE + "ExpExec 2::c:::\n", "IS_DEFAULT must be 0 or 1"),
        (BASE + "ExpExec 1:Abc:c:::\n", "SNIKEY 'Abc' must be 1..63 of [a-z0-9]"),
        (BASE + "ExpExec 1:" + "a" * 64 + ":c:::\n", "must be 1..63"),
        (BASE + "ExpExec 1:::::\n", "EXPPRIVCHAIN_PATH is required"),
        (BASE + "ExpExec 1::c:::\nExpExec 1::d:::\n", "a second default ExpExec"),
        (BASE + "ExpExec 0:k:c:::\nExpExec 0:k:d:::\n", "same SNIKEY"),
        (  # both lines named (session 28: was `x.conf: two ExpExec lines have ...`)
            BASE + "ExpExec 0:k:c:::\nExpExec 0:j:c:::\nExpExec 0:k:d:::\n",
            "x.conf:5: ExpExec has the same SNIKEY 'k' as x.conf:3",
        ),
        (BASE + "ExpExec 0::c::zz:\n", "PUB_CHANNEL 'zz' is not hex"),
        # quotes kept: `certificate file 'c': No such file` read as the path c (session 28)
        (BASE + "ExpExec 0::c,'d e':::\n", "x.conf:3: ExpExec \"'d e'\" is quoted"),
        (BASE + 'ExpExec 0::c:"k.pub"::\n', "ExpExec '\"k.pub\"' is quoted"),
        (BASE + 'ExpExec "0::c:::"\n', "ExpExec '\"0::c:::\"' is quoted: xpmgr.conf"),
        (BASE + "ExpExec 0::c:::sni_key=x;\n", "may not set 'sni_key'"),
        (BASE + "ExpExec 0::c:::hostid=h1;\n", "may not set 'hostid'"),
        (BASE + "ExpExec 0::c:::novalue;\n", "is not name=value"),
        (BASE + "TargetBacklogConn 0\nExpExec 0::c:::\n", "must be at least 1"),
        (BASE + "EnableProxyMode yes\nExpExec 0::c:::\n", "expected 0 or 1"),
        (BASE + "PubCountry usa\nExpExec 0::c:::\n", "ISO 3166-1 alpha-3"),
        (BASE + "PubLocation IO91*,FN;x\nExpExec 0::c:::\n", "'FN;x': characters"),
        (BASE + "PubControllerAddr 1.2.3.4;a=b\nExpExec 0::c:::\n", "cannot hold: ';='"),
        (BASE + "TargetBacklog 3\nExpExec 0::c:::\n", "did you mean TargetBacklogConn"),
        ("EnableExpPublication 1\nControllerPrivkeyPath k\nExpExec 0::c:::\n", "needs BrokerAddr"),
        (
            "EnableExpPublication 1\nBrokerAddr b\nControllerPrivkeyPath k\nExpExec 0::c:::\n",
            "needs TRUSTEDEOP_PATH",
        ),
        (  # was found once listening, when the first publication failed (xpmgr: FATAL)
            "EnableExpPublication 1\nBrokerAddr b\nControllerPrivkeyPath k\nExpExec 0::c:k.pub::\n",
            "EnableExpPublication 1 needs PubAgentCertPath",
        ),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(XpmgrConfigError, match=None) as e:
        parse_xpmgr_config(text, "x.conf")
    assert message in str(e.value)
    assert str(e.value).startswith("x.conf")


def test_tabs_and_runs_of_blanks_separate_key_and_value() -> None:
    """A C config reader splits on any blank: `Key<TAB>value`, `Key   value`, leading
    blanks, CRLF line ends and a comment after the value all read as `Key value`."""
    text = (
        "EnableExpPublication\t0\r\n"
        "  ControllerPrivkeyPath \t keys/k_xc   # the manager's key\r\n"
        "TargetBacklogConn\t\t10\n"
        "\t# a comment line\n"
        "ExpExec\t1::certs/a.cert,certs/b.cert:keys/eop.pub::\n"
    )
    c = parse_xpmgr_config(text)
    assert c.controller_privkey == "keys/k_xc" and c.target_backlog == 10
    assert c.exp_exec[0].chain == ["certs/a.cert", "certs/b.cert"]
    assert c.exp_exec[0].trusted_eop == ["keys/eop.pub"]


def test_a_repeated_key_warns_and_the_last_one_wins() -> None:
    c = parse_xpmgr_config(BASE + "TargetBacklogConn 3\nTargetBacklogConn 5\nExpExec 0::c:::\n",
                           "x.conf")  # fmt: skip
    assert c.target_backlog == 5
    assert c.warnings == ["x.conf:4: TargetBacklogConn repeated (line 3); the last one wins: 5"]


@pytest.mark.parametrize("override", ["foo=bad value!;", "foo=a;b", "f o=1;", "foo=\u00e9;"])
def test_override_that_no_xdescr_can_hold_is_refused_at_start(override: str) -> None:
    with pytest.raises(XpmgrConfigError, match="OVERRIDE_XDESCRNVP") as e:
        parse_xpmgr_config(BASE + f"ExpExec 0::c:::{override}\n", "x.conf")
    assert str(e.value).startswith("x.conf:3:")


def test_bytes_that_are_not_utf8_in_a_comment_or_path(tmp_path: Path) -> None:
    """A C reader takes any bytes: a Latin-1 comment must not stop the manager, and a
    path keeps its bytes (surrogate-escaped, as os functions take them)."""
    from packetlab.controller.xpmgrconf import load_xpmgr_config

    conf = tmp_path / "xpmgr.conf"
    conf.write_bytes(BASE.encode() + b"# caf\xe9\nProgramDirPath /tmp/pr\xf6g\nExpExec 0::c:::\n")
    c = load_xpmgr_config(conf)
    assert os.fsencode(c.program_dir or "") == b"/tmp/pr\xf6g"


def test_help_says_what_the_second_sigint_does(capsys: pytest.CaptureFixture[str]) -> None:
    """`pktlab xpmgr --help` said the second SIGINT "exits at once"; it SIGTERMs the running
    mlets, records them as failed and exits 130 (xpmgr.md, controller/xpmgr.py)."""
    from packetlab import cli

    with pytest.raises(SystemExit):
        cli.main(["xpmgr", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exits at once" not in text
    assert (
        "the second SIGTERMs the running mlets (SIGKILL 2 s later for any left), records "
        "them as failed" in text
    )
    assert "exits 130" in text


_NUMBER_KEYS = ("PubPeriod", "PubExpPriority", "GreetPeriodAfterPubEnd", "TargetBacklogConn",
                "BacklogConnTimeout", "BootstrapBacklogTimeout")  # fmt: skip


@pytest.mark.parametrize("key", _NUMBER_KEYS)
@pytest.mark.parametrize(
    "value", ["x", "-1", "1e9", "0x10", "\u0663", "\u00b2", "9" * 23, "1" * 5000, "nan"]
)
def test_every_number_key_refuses_what_is_no_number_of_its_size(key: str, value: str) -> None:
    # "\u0663" (an Arabic-Indic 3) and 23 nines were taken; "\u00b2" gave int()'s words
    text = f"EnableExpPublication 0\nControllerPrivkeyPath k\nExpExec 0::c:::\n{key} {value}\n"
    with pytest.raises(XpmgrConfigError) as e:
        parse_xpmgr_config(text, "x.conf")
    assert str(e.value).startswith(f"x.conf:4: {key} ")
    assert "\n" not in str(e.value) and "invalid literal" not in str(e.value)


@pytest.mark.parametrize(
    ("key", "top"),
    [("PubExpPriority", 2**32 - 1), ("TargetBacklogConn", 4096), ("PubPeriod", 2**63)],
)
def test_numbers_at_their_bound_are_taken_and_one_past_is_not(key: str, top: int) -> None:
    # exp_priority is a u32 (PROTOCOL.md §5.6): 2**32 was published, then refused by every
    # broker and endpoint; 10**6 backlogs opened until the descriptors ran out
    base = "EnableExpPublication 0\nControllerPrivkeyPath k\nExpExec 0::c:::\n"
    parse_xpmgr_config(f"{base}{key} {top}\n", "x.conf")
    with pytest.raises(XpmgrConfigError, match=f"at most {top}"):
        parse_xpmgr_config(f"{base}{key} {top + 1}\n", "x.conf")


def test_relative_paths_are_found_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference template writes `ExpExec 1::certs/exppriv.cert,...:keys/eop.pub::`
    into ~/.pktlab/xpmgr.conf: from any directory but ~/.pktlab every relative path failed
    (`No such file or directory: 'keys/k_xc'`). A path found from the current directory
    still wins; one found nowhere stays as written, for its error to name it."""
    from packetlab.controller.xpmgrconf import load_xpmgr_config

    home = tmp_path / ".pktlab"
    for name in ("keys/k_xc", "keys/eop.pub", "certs/exppriv.cert", "certs/pubcmd.cert",
                 "certs/agent.cert", "progs/m.wasm"):  # fmt: skip
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("x")
    (home / "xpmgr.conf").write_text(
        "EnableExpPublication 0\nControllerPrivkeyPath keys/k_xc\nProgramDirPath progs\n"
        "BacklogConnAgentCertPath certs/agent.cert\nProxyCertRootPath keys/eop.pub\n"
        "ExpExec 1::certs/exppriv.cert,certs/pubcmd.cert:keys/eop.pub,keys/gone.pub::\n"
    )
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keys").mkdir(parents=True)
    (elsewhere / "keys/eop.pub").write_text("here")
    monkeypatch.chdir(elsewhere)
    cfg = load_xpmgr_config(home / "xpmgr.conf")
    assert cfg.controller_privkey == str(home / "keys/k_xc")
    assert cfg.program_dir == str(home / "progs")
    assert cfg.backlog_agent_cert == str(home / "certs/agent.cert")
    assert cfg.proxy_cert_roots == ["keys/eop.pub"]  # the current directory's
    [x] = cfg.exp_exec
    assert x.chain == [str(home / "certs/exppriv.cert"), str(home / "certs/pubcmd.cert")]
    assert x.trusted_eop == ["keys/eop.pub", "keys/gone.pub"]
