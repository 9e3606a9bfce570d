"""curl's -:/--next in `pktlab run http`: the groups of options read as curl 7.88 reads
them (a --next before a group's first URL passed over, a last group without a URL
refused in curl's words), the global options one for all, the budget of every group."""

from __future__ import annotations

import pytest

from packetlab.cli.run_command import parse_args
from packetlab.cli.run_http import COMMAND, budget
from packetlab.cli.run_http_args import _groups


def takes(option: str) -> bool:
    return option in ("-o", "-w", "-d", "-A")


def test_groups_as_curl_reads_them() -> None:
    assert _groups(["--next", "--next", "U"], takes) == ["U"]
    assert _groups(["-w", "F", "--next", "U"], takes) == ["-w", "F", "U"]
    # -o's value "-:" is no group's end; joined to it (session 28), as argparse would
    # otherwise take "-:" for the option -: and say -o `expected one argument`
    assert _groups(["U", "-:", "-o", "-:", "V"], takes) == ["U", "-:", "-o-:", "V"]
    assert _groups(["U", "--", "--next"], takes) == ["U", "--", "--next"]


def test_next_groups_parsed_with_their_own_options() -> None:
    words = ["-d", "x=1", "-w", "%{method}", "http://h/a", "-:", "-I", "http://h/b",
             "http://h/c", "--next", "-v", "http://h/d"]  # fmt: skip
    args = parse_args(COMMAND, words)
    assert args.urls == ["http://h/a"] and args.data and args.write_out == "%{method}"
    b, d = args.next_groups
    assert b.urls == ["http://h/b", "http://h/c"] and b.head and not b.data
    assert b.write_out is None and b.next_groups == []
    assert d.urls == ["http://h/d"] and d.trace_opts == [("plain", "%")]
    assert budget(args) == 4 * (30 + 15)  # each group's URLs


def test_a_group_without_a_url_is_curls_error(capsys: pytest.CaptureFixture[str]) -> None:
    for words in (["http://h/a", "--next"], ["http://h/a", "-:", "-o", "f"]):
        with pytest.raises(SystemExit) as e:
            parse_args(COMMAND, words)
        assert e.value.code == 2
        assert "no URL specified!" in capsys.readouterr().err


def test_global_options_one_for_all_groups() -> None:
    from packetlab.cli.run_command import Progress
    from packetlab.cli.run_http_experiment import experiment

    args = parse_args(COMMAND, ["-w", "%{url}", "http://h/a", "-:", "-s", "--trace-ascii",
                                "-", "-o", "f", "http://h/b"])  # fmt: skip
    experiment(args, lambda r: None, Progress())
    group = args.next_groups[0]
    assert args.silent and group.silent  # curl's -s is global: the first group's too
    assert args.trace_opts == group.trace_opts == [("ascii", "-")]
    assert group.write_out == "" and group.output == ["f"] and args.output == []


def test_next_in_a_config_file_and_a_config_file_after_next(tmp_path: object) -> None:
    """eyes19b: a config file's `next` (or `-:`) line, and `--next -K FILE`, as curl 7.88.1
    reads them. Were: `'': no host` (`next` read as an option taking a value, the empty
    one), `-` fetched as a URL (`-:` cut at its colon), and `no URL specified!` (the -K
    after --next taken as its value, the file not read)."""
    from pathlib import Path

    where = Path(str(tmp_path))
    for i, between in enumerate(("next", "-:", "--next")):
        cfg = where / f"k{i}"
        cfg.write_text(f'url = "http://h/a"\noutput = f\n{between}\nurl = "http://h/b"\n')
        args = parse_args(COMMAND, ["-K", str(cfg)])
        assert args.urls == ["http://h/a"] and args.output == ["f"]
        (b,) = args.next_groups
        assert b.urls == ["http://h/b"] and b.output == []
    cfg = where / "k"
    cfg.write_text('url = "http://h/k"\n-A inner\n')
    args = parse_args(COMMAND, ["http://h/a", "--next", "-K", str(cfg), "-w", "%{url}"])
    assert args.urls == ["http://h/a"] and args.write_out is None
    (k,) = args.next_groups
    assert k.urls == ["http://h/k"] and k.user_agent == "inner" and k.write_out == "%{url}"
