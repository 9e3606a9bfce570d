"""`pktlab run http --json DATA` (curl 7.82's) and curl 7.88.1 side by side: one loopback
server echoes the request it read (its line, fields in order, body); both tools must send
the same bytes (the same -A given), print the same stdout and exit alike. Also: the
`--json` output flag still works next to it, and a word like JSON that is not is one
line."""

from __future__ import annotations

import json
from pathlib import Path

from test_http_curl_side_by_side import pytestmark  # noqa: F401
from test_http_options16_curl_side_by_side import UA, both, http, same, tool  # noqa: F401


def test_json_data_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "g.json").write_bytes(b"[1,\r\n2]\n")
    for args in (
        ["--json", '{"a":1}'],
        ["--json", '{"a":1}', "--json", "[2]"],  # joined without &
        ["-d", "x=1", "--json", '{"a":1}'],
        ["--json", '{"a":1}', "-d", "x=1"],  # a -d after it: &
        ["--json", "@g.json", "--json", "@g.json"],  # the file as is
        ["--json", "@-"],
        ["--json", "{}", "-d", "@g.json", "--data-urlencode", "a=b c"],
        ["--json", "{}", "-H", "X-A: 1", "-b", "c=d", "-e", "r"],  # after the -H fields
        ["--json", "{}", "-H", "accept: text/x"],  # a -H of its names wins
        ["--json", "{}", "-H", "Content-Type:", "-H", "Accept;"],  # removed, empty
        ["--json", "{}", "-X", "PUT"],
        ["--json", "{}", "-G"],  # the query; the fields still sent
        ["--json", "-1"],  # a number that looks like an option
        ["--json", '"s"', "--json", "null"],
    ):
        curl, ours = both(*UA, "-o", "-", *args, f"{http}/p", cwd=tmp_path,
                          stdin=b'{"in":1}\n')  # fmt: skip
        same(curl, ours)
        assert b"application/json" in curl.stdout or "Content-Type:" in args


def test_json_data_refused_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    for args in (["--json", "{}", "-I"], ["--json", "{}", "-F", "a=b"]):
        curl, ours = both(*UA, *args, f"{http}/p", cwd=tmp_path)
        assert curl.returncode == ours.returncode == 2, ours.stderr
        assert ours.stdout == b""


def test_json_flag_and_data_together(http: str, tmp_path: Path) -> None:  # noqa: F811
    # the flag: a URL after it; the data: JSON after it; --json=DATA: sent as is
    ours = tool("ours", "-A", "x", "--json", f"{http}/p", "--json", "[1]", cwd=tmp_path)
    records = [json.loads(x) for x in ours.stdout.splitlines()]
    assert ours.returncode == 0 and records[0]["method"] == "POST", ours.stderr
    assert records[0]["body_len"] > 0 and records[-1]["type"] == "summary"
    # curl sends "{bad" as is (it has no --json=): ours with --json={bad, the same bytes
    curl = tool("curl", *UA, "-o", "-", "--json", "{bad", f"{http}/p", cwd=tmp_path)
    ours = tool("ours", *UA, "-o", "-", "--json={bad", f"{http}/p", cwd=tmp_path)
    assert ours.stdout == curl.stdout and curl.stdout.endswith(b"\n\n{bad")
    ours = tool("ours", *UA, "-o", "-", "--json", "{bad", f"{http}/p", cwd=tmp_path)
    assert ours.returncode == 2 and ours.stdout == b""
    assert ours.stderr.decode().count("\n") == 1 and "--json={bad" in ours.stderr.decode()


def test_empty_field_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # -H 'X-E;': an empty X-E (ours refused it: "expected 'NAME: VALUE'", exit 2)
    curl, ours = both(*UA, "-o", "-", "-H", "X-E;", "-H", "Host:", "-H", "X-G:",
                      f"{http}/p", cwd=tmp_path)  # fmt: skip
    same(curl, ours)
    assert b"\nX-E: \n" in curl.stdout and b"Host" not in curl.stdout
