"""dig 9.18.49 ignores a value after a switch that takes none (`+nsid=1` is `+nsid`,
`+noall=x` is `+noall`): its plus_option reads the value only where the switch has one.
`+nosplit=N` is its one refusal (`Invalid option`). Before session 21 (dig21) each was
refused as an option not supported. Also dig's lines for a bad number, and the servers
of both families the in-process endpoint exports for `@127.0.0.1 @::1`."""

from __future__ import annotations

import argparse

import pytest

import packetlab.cli as cli
from packetlab.cli import run_dns, run_dns_words
from packetlab.cli.run import RunError


def parse(*argv: str) -> argparse.Namespace:
    a = cli.parse(["run", "dns", *argv])
    run_dns_words.dig_style(a)
    return a


def options(*argv: str) -> dict[str, object]:
    """What the words set, but the words themselves."""
    return {k: v for k, v in vars(parse(*argv)).items() if k not in ("cmdline", "_argv")}


@pytest.mark.parametrize(
    "words",
    [("+tcp", "+nsid", "a.test"), ("+short", "a.test"), ("+nocmd", "+noall", "+answer", "a.test"),
     ("+norec", "+nodnssec", "+noedns", "a.test"), ("+multiline", "+nottlid", "a.test"),
     ("+showsearch", "+noednsflags", "+noednsopt", "+noopcode", "+nosubnet", "a.test")],
)  # fmt: skip
def test_a_value_after_a_switch_that_takes_none_is_ignored_as_dig(words: tuple[str, ...]) -> None:
    valued = [f"{w}=1" if w.startswith("+") else w for w in words]
    assert options(*valued) == options(*words)


def test_noqid_is_a_random_id_again_as_dig() -> None:
    assert parse("+qid=7", "+noqid", "a.test").qid is None
    assert parse("+qid=7", "+noqid=1", "a.test").qid is None


def test_nosplit_with_a_value_is_refused_as_dig() -> None:
    with pytest.raises(RunError, match=r"^\+nosplit=3: invalid option"):
        parse("+nosplit=3", "a.test")
    assert parse("+nosplit", "a.test").split == 0


@pytest.mark.parametrize(
    ("word", "line"),
    [("+time=x", "invalid timeout 'x': not a valid number"),
     ("+timeout=-1", "invalid timeout '-1': not a valid number"),
     ("+tries=99999999999", "invalid tries '99999999999': out of range"),
     ("+retry=1_0", "invalid retries '1_0': not a valid number"),
     ("+bufsize=65536", "invalid buffer size '65536': out of range"),
     ("+edns=256", "invalid edns '256': out of range"),
     ("+ndots=x", "invalid ndots 'x': not a valid number"),
     ("+padding= 5", "invalid padding ' 5': not a valid number"),
     ("+qid=65536", "invalid qid '65536': out of range"),
     ("+opcode=16", "invalid opcode '16': out of range"),
     ("+ednsflags=0x10000", "invalid ednsflags '0x10000': out of range"),
     ("+ednsflags=+5", "invalid ednsflags '+5': not a valid number")],
)  # fmt: skip
def test_a_bad_number_is_digs_two_lines(
    word: str, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """dig's parse_uint says what it could not read on stdout (`invalid DESC 'VALUE':
    REASON`), then `dig: Couldn't parse DESC` on stderr, status 10 (ours: the stderr line
    is ours, with the same words). Before session 21 only our stderr line came."""
    with pytest.raises(RunError) as e:
        parse(word, "a.test")
    assert capsys.readouterr().out == line + "\n"
    desc = line.split(" '")[0].removeprefix("invalid ")
    assert str(e.value).startswith(f"{word}: Couldn't parse {desc} (")
    assert getattr(e.value, "dig_status", None) == 10


def test_a_port_out_of_range_is_digs_two_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RunError, match=r"^-p 70000: Couldn't parse port number \(out of range\)"):
        parse("-p", "70000", "@127.0.0.1", "a.test")
    assert capsys.readouterr().out == "invalid port number '70000': out of range\n"


def test_the_first_server_of_each_family_is_the_endpoint_s() -> None:
    """`@127.0.0.1 @::1`: both families exported (the first server of each, in order:
    run_command takes one a family); it was the first server's family only, so asking
    ::1 after 127.0.0.1 failed (ESKTNOPRFAM, exit 2)."""
    assert run_dns.target(parse("@127.0.0.1", "@::1", "@127.0.0.2", "a.test")) == [
        "127.0.0.1", "::1", "127.0.0.2"]  # fmt: skip
    assert run_dns.target(parse("-6", "@127.0.0.1", "@::1", "a.test")) == ["::1"]
    assert run_dns.target(parse("@::1", "a.test", "@127.0.0.1")) == ["::1", "127.0.0.1"]
