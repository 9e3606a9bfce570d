"""Session 18 (iperf18): `-J` printed as iperf3 3.12 prints it (cJSON 1.7.15's layout).
throughput_native_P2.json is native `iperf3 -c 127.0.0.1 -p PORT -J -P 2 -t 1`
(Debian bookworm's 3.12) against `iperf3 -s`, captured on loopback as it came."""

from __future__ import annotations

import json
from pathlib import Path

from packetlab.measure.throughput_cjson import dumps
from packetlab.measure.throughput_json import document, printed

NATIVE = (Path(__file__).parent / "throughput_native_P2.json").read_text()

REFUSED = """{
\t"start":\t{
\t\t"connected":\t[],
\t\t"version":\t"iperf 3.12",
\t\t"system_info":\t"Linux vm 6.18.44-fc-v1252 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
\t},
\t"intervals":\t[],
\t"end":\t{
\t},
\t"error":\t"unable to connect to server: Connection refused"
}"""


def test_native_document_printed_byte_for_byte() -> None:
    """Arrays `[{` ... `}, {` ... `}]`, integral numbers without `.0`, %.17g floats and
    the buffer keys once per data connection, as native's (was: json.dumps's layout,
    every array broken over lines, the buffer keys once)."""
    assert printed(json.loads(NATIVE)) + "\n" == NATIVE


def test_refused_document_as_native() -> None:
    """Never connected: `start` has only `connected`, `version`, `system_info`, `end` is
    `{` newline `}` (was: the whole `start` and `{}`)."""
    r = {"type": "throughput", "protocol": "tcp", "server": "127.0.0.1", "port": 1,
         "parallel": 1, "error": "unable to connect to server: Connection refused"}  # fmt: skip
    doc = document(None, [], r, 0.0, "iperf 3.12")
    doc["start"]["system_info"] = "Linux vm 6.18.44-fc-v1252 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
    assert printed(doc) == REFUSED


def test_cjson_numbers_and_strings() -> None:
    assert dumps([1.0, 0.0, -3, 2949120000.0, 0.5, 7899572244.4833832, float("nan")]) == (
        "[1, 0, -3, 2949120000, 0.5, 7899572244.4833832, null]"
    )
    assert dumps({"s": 'a"\\\n\x01é', "t": True, "n": None, "e": []}) == (
        '{\n\t"s":\t"a\\"\\\\\\n\\u0001é",\n\t"t":\ttrue,\n\t"n":\tnull,\n\t"e":\t[]\n}'
    )
