"""The Python TLS 1.3 record layer (packetlab.tls.records) over fixed vectors (RFC 8448 §3,
the simple 1-RTT handshake) and round trips for all three AEADs; every kind of bad record
gets its specific error and alert."""

from __future__ import annotations

import pytest

from packetlab.tls.records import (
    ALERT,
    BAD_RECORD_MAC,
    DECODE_ERROR,
    HANDSHAKE,
    ILLEGAL_PARAMETER,
    MAX_PLAINTEXT,
    RECORD_OVERFLOW,
    SUITES,
    UNEXPECTED_MESSAGE,
    PeerAlert,
    RecordError,
    RecordLayer,
    TrafficKeys,
    hkdf_expand_label,
)

# RFC 8448 §3: application traffic secrets, their keys and IVs, and the records.
C_AP = bytes.fromhex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
S_AP = bytes.fromhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
C_KEY, C_IV = "17422dda596ed5d9acd890e3c63f5051", "5b78923dee08579033e523d9"
S_KEY, S_IV = "9f02283b6c9c07efc26bb9f2ac92e356", "cf782b88dd83549aadf1e984"
PAYLOAD = bytes(range(50))
CLIENT_DATA = bytes.fromhex(  # client application keys, sequence 0
    "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd5"
    "4a9a20441e2b62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4"
)
SERVER_DATA = bytes.fromhex(  # server application keys, sequence 1 (0 was the ticket)
    "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc60"
    "2dcb501a59a8fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d"
)
CLIENT_CLOSE = bytes.fromhex("1703030013c9872760655666b74d7ff1153efd6db6d0b0e3")  # seq 1

AES128 = SUITES["TLS_AES_128_GCM_SHA256"]


def pair(suite_name: str = "TLS_AES_128_GCM_SHA256") -> tuple[RecordLayer, RecordLayer]:
    """(client, server) layers of one connection."""
    suite = SUITES[suite_name]
    c = bytes(range(suite.hash.digest_size))
    s = bytes(range(100, 100 + suite.hash.digest_size))
    return RecordLayer(suite, s, c), RecordLayer(suite, c, s)


def test_hkdf_expand_label_gives_the_rfc8448_keys_and_ivs() -> None:
    h = AES128.hash
    assert hkdf_expand_label(h, C_AP, b"key", b"", 16).hex() == C_KEY
    assert hkdf_expand_label(h, C_AP, b"iv", b"", 12).hex() == C_IV
    assert hkdf_expand_label(h, S_AP, b"key", b"", 16).hex() == S_KEY
    assert hkdf_expand_label(h, S_AP, b"iv", b"", 12).hex() == S_IV


def test_seals_the_rfc8448_client_records_byte_exact() -> None:
    client = RecordLayer(AES128, S_AP, C_AP)
    assert client.seal(PAYLOAD) == CLIENT_DATA
    assert client.close_notify() == CLIENT_CLOSE
    assert client.close_notify() == b""  # once


def test_opens_the_rfc8448_records() -> None:
    server = RecordLayer(AES128, C_AP, S_AP, write_seq=1)
    got = server.receive(CLIENT_DATA)
    assert got.chunks == [PAYLOAD] and not got.closed
    assert server.seal(PAYLOAD) == SERVER_DATA
    got = server.receive(CLIENT_CLOSE + b"ignored after close_notify")
    assert got.closed and got.chunks == []
    assert server.closed
    client = RecordLayer(AES128, S_AP, C_AP, read_seq=1)
    assert client.receive(SERVER_DATA).chunks == [PAYLOAD]


def test_wrong_sequence_number_fails_with_bad_record_mac() -> None:
    server = RecordLayer(AES128, C_AP, S_AP, read_seq=1)
    with pytest.raises(RecordError) as e:
        server.receive(CLIENT_DATA)
    assert e.value.alert == BAD_RECORD_MAC
    assert "does not authenticate" in str(e.value)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_round_trip_every_size_split_anywhere(suite: str) -> None:
    client, server = pair(suite)
    frames = [b"x", b"", bytes(range(256)) * 3, b"y" * MAX_PLAINTEXT, b"z" * 40_000]
    wire = client.seal_many(frames)
    got = []
    for i in range(0, len(wire), 997):  # pipelined records split across reads
        got += server.receive(wire[i : i + 997]).chunks
    assert b"".join(got) == b"".join(frames)
    # one record per frame up to 2^14; larger ones in 2^14 pieces, as OpenSSL does
    assert got[:3] == [b"x", bytes(range(256)) * 3, b"y" * MAX_PLAINTEXT]
    assert [len(c) for c in got[3:]] == [16384, 16384, 40_000 - 32768]
    assert server.buffered == 0
    assert server.read.seq == client.write.seq == 7


def test_aead_key_lengths() -> None:
    assert [SUITES[n].key_length for n in sorted(SUITES)] == [16, 32, 32]


def test_tampered_tag_is_bad_record_mac() -> None:
    client, server = pair()
    rec = bytearray(client.seal(b"hello"))
    rec[-1] ^= 1
    with pytest.raises(RecordError) as e:
        server.receive(bytes(rec))
    assert e.value.alert == BAD_RECORD_MAC


def test_tampered_header_is_bad_record_mac() -> None:
    client, server = pair()
    rec = bytearray(client.seal(b"hello"))
    rec[2] = 1  # the header is the AAD
    with pytest.raises(RecordError) as e:
        server.receive(bytes(rec))
    assert e.value.alert == BAD_RECORD_MAC


def test_truncated_record_waits_then_completes() -> None:
    client, server = pair()
    rec = client.seal(b"hello")
    assert server.receive(rec[:4]).chunks == []
    assert server.receive(rec[4:-1]).chunks == []
    assert server.buffered == len(rec) - 1
    assert server.receive(rec[-1:]).chunks == [b"hello"]


def test_record_too_short_for_a_tag() -> None:
    _, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(b"\x17\x03\x03\x00\x05hello")
    assert e.value.alert == DECODE_ERROR


def test_oversized_record_is_refused_from_its_header() -> None:
    _, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(b"\x17\x03\x03" + (MAX_PLAINTEXT + 257).to_bytes(2, "big"))
    assert e.value.alert == RECORD_OVERFLOW


def test_oversized_plaintext_is_record_overflow() -> None:
    client, server = pair()
    rec = client.write.seal(b"a" * (MAX_PLAINTEXT + 1))  # a peer that ignores the limit
    with pytest.raises(RecordError) as e:
        server.receive(rec)
    assert e.value.alert == RECORD_OVERFLOW


def test_padding_is_stripped() -> None:
    client, server = pair()
    rec = client.write.seal(b"padded" + bytes((23,)) + bytes(100), 0)  # type 0, then zeros
    # seal() put its own type byte 0 last: content "padded", type 23, 101 zero bytes
    assert server.receive(rec).chunks == [b"padded"]


def test_all_padding_is_unexpected_message() -> None:
    client, server = pair()
    rec = client.write.seal(bytes(20), 0)
    with pytest.raises(RecordError) as e:
        server.receive(rec)
    assert e.value.alert == UNEXPECTED_MESSAGE


@pytest.mark.parametrize("inner", [20, 24, 99])
def test_unknown_inner_type_is_unexpected_message(inner: int) -> None:
    client, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(client.write.seal(b"\x01", inner))
    assert e.value.alert == UNEXPECTED_MESSAGE
    assert f"inner type {inner}" in str(e.value)


def test_plaintext_record_after_the_handshake_is_unexpected_message() -> None:
    _, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(b"\x16\x03\x03\x00\x20" + bytes(32))
    assert e.value.alert == UNEXPECTED_MESSAGE


def test_tickets_are_skipped_even_split_across_records() -> None:
    client, server = pair()
    ticket = bytes((4,)) + (300).to_bytes(3, "big") + bytes(300)
    wire = (
        server.write.seal(ticket[:100], HANDSHAKE)
        + server.write.seal(ticket[100:] + ticket, HANDSHAKE)
        + server.seal(b"after the tickets")
    )
    got = client.receive(wire)
    assert got.chunks == [b"after the tickets"] and got.out == b""
    assert client.buffered == 0


def test_other_post_handshake_messages_are_refused() -> None:
    client, server = pair()
    cert_request = bytes((13,)) + (4).to_bytes(3, "big") + bytes(4)
    with pytest.raises(RecordError) as e:
        client.receive(server.write.seal(cert_request, HANDSHAKE))
    assert e.value.alert == UNEXPECTED_MESSAGE


def test_oversized_post_handshake_message_is_decode_error() -> None:
    client, server = pair()
    with pytest.raises(RecordError) as e:
        client.receive(server.write.seal(b"\x04\xff\xff\xff", HANDSHAKE))
    assert e.value.alert == DECODE_ERROR


def test_key_update_requested_is_answered_and_both_directions_move_on() -> None:
    client, server = pair()
    old_secrets = (client.write.secret, client.read.secret)
    wire = client.seal(b"before") + client.key_update(request=True) + client.seal(b"after")
    got = server.receive(wire)
    assert got.chunks == [b"before", b"after"]
    assert got.out  # the server's own KeyUpdate, under its old keys
    assert server.read.secret == client.write.secret != old_secrets[0]
    back = client.receive(got.out + server.seal(b"under new keys"))
    assert back.chunks == [b"under new keys"] and back.out == b""  # not_requested: no answer
    assert client.read.secret == server.write.secret != old_secrets[1]
    assert client.read.seq == server.write.seq == 1


def test_key_update_not_requested_changes_only_the_read_keys() -> None:
    client, server = pair()
    write_before = server.write.secret
    got = server.receive(client.key_update(request=False) + client.seal(b"x"))
    assert got.chunks == [b"x"] and got.out == b""
    assert server.write.secret == write_before


def test_key_update_with_a_bad_value_is_illegal_parameter() -> None:
    client, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(client.write.seal(b"\x18\x00\x00\x01\x02", HANDSHAKE))
    assert e.value.alert == ILLEGAL_PARAMETER


def test_key_update_must_end_its_record() -> None:
    client, server = pair()
    ku = b"\x18\x00\x00\x01\x00"
    with pytest.raises(RecordError) as e:
        server.receive(client.write.seal(ku + ku, HANDSHAKE))
    assert e.value.alert == UNEXPECTED_MESSAGE


def test_fatal_alert_from_the_peer() -> None:
    client, server = pair()
    with pytest.raises(PeerAlert) as e:
        server.receive(client.fatal_alert(116))
    assert e.value.alert is None and e.value.description == 116
    assert "certificate_required" in str(e.value)


def test_user_canceled_is_a_warning() -> None:
    client, server = pair()
    got = server.receive(client.write.seal(b"\x01\x5a", ALERT) + client.close_notify())
    assert got.closed


def test_malformed_alert_is_decode_error() -> None:
    client, server = pair()
    with pytest.raises(RecordError) as e:
        server.receive(client.write.seal(b"\x01\x00\x00", ALERT))
    assert e.value.alert == DECODE_ERROR


def test_sequence_numbers_count_every_record() -> None:
    keys = TrafficKeys(AES128, C_AP, seq=5)
    keys.seal(b"a")
    keys.seal(b"b", ALERT)
    assert keys.seq == 7
