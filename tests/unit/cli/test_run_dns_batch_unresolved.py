"""dig 9.18 -f FILE: a line with a server name this host does not resolve is skipped,
its `couldn't get address for 'NAME': not found: skipping lookup` on stderr in its turn,
the other lines asked and the status unchanged (session 26, dns26: ours refused the whole
file before any query, exit 2; dig 9.18.49's lines, compared side by side in
tests/integration/test_dns_requeue_dig.py). On the command line it stays an error, as
dig's (fatal)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl_fakes import Rig
from test_cli_dns import parse

import packetlab.cli.run as run_module
from packetlab.cli import run_dns
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, begun, measure
from packetlab.controller.stop import StopSignal

SKIP = "couldn't get address for 'nowhere.invalid': not found: skipping lookup\n"


@pytest.fixture(autouse=True)
def no_such_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's resolver: `nowhere.invalid` not found (no resolver asked)."""

    def resolve(target: str, family: int | None = None, like: Any = None) -> Any:
        raise RunError(f"cannot resolve {target!r}: Name or service not known")

    monkeypatch.setattr(run_module, "resolve_target", resolve)


def answering(rig: Rig, asked: list[str] | None = None) -> None:
    """A server at 192.0.2.53 answering every name 192.0.2.1 (the names it was asked
    appended to `asked`)."""

    def server(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        if asked is not None:
            asked.append(q.question[0].name.to_text())
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server


def test_a_batch_line_with_a_server_not_resolved_is_skipped_as_dig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig()
    answering(rig)
    f = tmp_path / "batch"
    f.write_text("a.test\n@nowhere.invalid b.test\n@192.0.2.53 @nowhere.invalid c.test\nd.test\n")
    both = io.StringIO()  # stdout and stderr as `2>&1` shows them
    monkeypatch.setattr(sys, "stderr", both)
    args = parse("@192.0.2.53", "+short", "-f", str(f))
    assert run_dns.target(args) == ["192.0.2.53"]  # the exported address: the others'

    async def link(reactor: object, a: argparse.Namespace, emit: object, p: Progress) -> None:
        await begun(a._command.experiment(a, emit, p), p)(rig.session)

    rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), both, run=link)))
    assert both.getvalue() == f"192.0.2.1\n{SKIP}{SKIP}192.0.2.1\n"  # dig: any of its servers


def test_on_the_command_line_it_stays_an_error() -> None:
    args = parse("@nowhere.invalid", "a.test")
    with pytest.raises(RunError, match=r"nowhere\.invalid"):
        run_dns.target(args)


def test_on_the_command_line_dig_s_words_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    """dig 9.18.49 `dig @nowhere.invalid a.test`: `dig: couldn't get address for
    'nowhere.invalid': not found` on stderr, exit 1, nothing on stdout (session 26, odds26:
    ours said `--server nowhere.invalid: cannot resolve ...`)."""
    from packetlab.cli import run_dns_exits

    args = parse("@nowhere.invalid", "a.test")
    with pytest.raises(RunError) as e:
        run_dns.target(args)
    assert str(e.value) == "couldn't get address for 'nowhere.invalid': not found"
    args.dig_exit_codes = True
    assert run_dns_exits.error_status(args, e.value) == 1  # dig's fatal()
    assert capsys.readouterr().out == ""
