"""A peer flooding KeyUpdates cannot make the record layer queue answers without bound
(session 20, hard20). Each KeyUpdate with update_requested used to be answered at once
with a record of our own, so a controller that sent KeyUpdates and read nothing grew the
endpoint by one 27-byte record per KeyUpdate (RSS +19 MB for 800,000). Now at most one
answer until we next send application data (RFC 8446 §4.6.3: "a single update" answers
many), and more than 32 in a row without application data end the link (OpenSSL's
MAX_KEY_UPDATE_MESSAGES, BoringSSL's kMaxKeyUpdates)."""

from __future__ import annotations

import pytest

from packetlab.tls.records import (
    APPLICATION_DATA,
    MAX_KEY_UPDATES,
    SUITES,
    UNEXPECTED_MESSAGE,
    PeerAlert,
    RecordError,
    RecordLayer,
)


def pair() -> tuple[RecordLayer, RecordLayer]:
    """(controller, endpoint) layers of one connection."""
    suite = SUITES["TLS_AES_128_GCM_SHA256"]
    c, s = bytes(range(32)), bytes(range(100, 132))
    return RecordLayer(suite, s, c), RecordLayer(suite, c, s)


def updates_in(layer: RecordLayer, wire: bytes) -> tuple[int, list[bytes]]:
    """How many of `wire`'s records are not application data (our KeyUpdates), and the
    application data, opened by `layer`."""
    got = layer.receive(wire)
    return got.records - len(got.chunks), got.chunks


def test_many_requests_in_one_read_get_one_answer() -> None:
    ctl, ep = pair()
    wire = b"".join(ctl.key_update(request=True) for _ in range(MAX_KEY_UPDATES))
    got = ep.receive(wire)
    assert updates_in(ctl, got.out) == (1, [])  # was 32 answers


def test_requests_while_we_send_nothing_get_no_more_answers_until_we_do() -> None:
    """Answers used to go out one per request whatever the peer read: the requests of
    later reads wait for the update owed before our next application data."""
    ctl, ep = pair()
    answers = 0
    for _ in range(200):
        wire = b"".join(ctl.key_update(request=True) for _ in range(4)) + ctl.seal(b"x")
        answers += updates_in(ctl, ep.receive(wire).out)[0]
    assert answers == 1  # was 800
    # The owed update goes before the next frame; the controller reads that frame.
    assert updates_in(ctl, ep.seal(b"mdata")) == (1, [b"mdata"])
    assert updates_in(ctl, ep.seal_many([b"a", b"b"])) == (0, [b"a", b"b"])
    # After our data, a new request is answered at once again.
    assert updates_in(ctl, ep.receive(ctl.key_update(request=True)).out) == (1, [])
    assert updates_in(ctl, ep.seal_many([b"c"])) == (0, [b"c"])
    assert ctl.read.secret == ep.write.secret and ep.read.secret == ctl.write.secret


def test_more_than_32_in_a_row_without_data_end_the_link() -> None:
    ctl, ep = pair()
    ep.receive(b"".join(ctl.key_update(request=False) for _ in range(MAX_KEY_UPDATES)))
    with pytest.raises(RecordError) as e:
        ep.receive(ctl.key_update(request=False))
    assert e.value.alert == UNEXPECTED_MESSAGE
    assert "33 KeyUpdates without application data" in str(e.value)


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "read-by-read"])
def test_application_data_between_them_resets_the_count(split: bool) -> None:
    ctl, ep = pair()
    parts = []
    for _ in range(10):
        parts += [ctl.key_update(request=False) for _ in range(MAX_KEY_UPDATES)]
        parts.append(ctl.seal(b"d"))
    if split:
        chunks = [c for p in parts for c in ep.receive(p).chunks]
        assert chunks == [b"d"] * 10
    else:
        assert ep.receive(b"".join(parts)).chunks == [b"d"] * 10


def test_empty_records_do_not_reset_the_count() -> None:
    ctl, ep = pair()
    wire = b"".join(
        ctl.key_update(request=False) + ctl.write.seal(b"", APPLICATION_DATA)
        for _ in range(MAX_KEY_UPDATES + 1)
    )
    with pytest.raises(RecordError):
        ep.receive(wire)


def test_the_alert_after_an_answered_flood_is_readable() -> None:
    """The read that trips the limit answered its first request: that answer moved our
    write keys, so it must reach the peer before the alert sealed under the new keys
    (it was dropped, and the controller saw bad_record_mac instead of the alert)."""
    ctl, ep = pair()
    wire = b"".join(ctl.key_update(request=True) for _ in range(MAX_KEY_UPDATES + 1))
    with pytest.raises(RecordError) as e:
        ep.receive(wire)
    assert e.value.alert is not None
    with pytest.raises(PeerAlert) as alert:
        ctl.receive(ep.fatal_alert(e.value.alert))
    assert alert.value.description == UNEXPECTED_MESSAGE
