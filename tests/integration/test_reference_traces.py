"""Our session against the recorded reference sessions (../shared/spec/traces): issuing the
same requests it writes exactly the reference pktxpmgr's frames, and the reference
endpoint's frames, fed back, complete them."""

from __future__ import annotations

import json

import pytest
from ctl_fakes import WriteLog, on_string_transport, result_of
from spec_traces import TRACES
from twisted.internet.task import Clock

from packetlab import wire
from packetlab.controller import EndpointSession
from packetlab.wire import Ndata, Nopen, Nsend, Nstat, NstatCode


def load(name: str) -> tuple[list[wire.Message], list[bytes]]:
    """The controller's messages and the endpoint's frames, both after start/result."""
    path = TRACES / f"{name}.session.json"
    if not path.exists():
        pytest.skip(f"reference trace {path} not present")
    trace = [(f["dir"], bytes.fromhex(f["hex"])) for f in json.loads(path.read_text())]
    ctl = [wire.decode_frame(h) for d, h in trace if d == "xpmgr->endpt"][1:]
    ept = [h for d, h in trace if d == "endpt->xpmgr"][1:]
    return ctl, ept


@pytest.mark.parametrize("name", ["http_get", "dns"])
def test_reference_session_replays(name: str) -> None:
    ref, replies = load(name)
    s, t, _ = on_string_transport()
    nopen, nsend = ref[0], ref[1]
    assert isinstance(nopen, Nopen) and isinstance(nsend, Nsend)
    if nopen.raddr is not None:
        opened = s.nopen_tcp_connect(1, nopen.raddr, nopen.rport or 0, rbufsz=nopen.rbufsz)
    else:
        opened = s.nopen_udp(1, rbufsz=nopen.rbufsz)
    s.dataReceived(replies.pop(0))
    sock = result_of(opened)
    if nopen.raddr is not None:
        est = sock.wait_established()
        s.dataReceived(replies.pop(0))
        assert result_of(est).code == NstatCode.ESTABLISHED
    to = None if nsend.raddr is None else (nsend.raddr, nsend.rport or 0)
    sent = s.nsend(1, nsend.data, to=to, ntag=True, tag=nsend.tag)
    s.dataReceived(replies.pop(0))
    q = result_of(sent)
    assert q.ntag is not None
    for frame in replies[:-1]:
        s.dataReceived(frame)
    assert result_of(q.ntag).tag == nsend.tag
    notes = sock.drain()
    data = b"".join(n.data for n in notes if isinstance(n, Ndata))
    if nopen.raddr is not None:
        assert data.startswith(b"HTTP/1.0 200 OK")
        assert isinstance(notes[-1], Nstat) and notes[-1].code == NstatCode.PEERCLOSED
    else:
        assert data[:2] == nsend.data[:2]  # the DNS id comes back
    closed = s.nclose(1)
    s.dataReceived(replies[-1])
    assert result_of(closed) == wire.Result()
    assert sock.ended
    assert [wire.decode_frame(w) for w in t.writes] == ref
    # byte for byte, one write (one TLS record) per message
    assert t.writes == [wire.encode(m) for m in ref] == frames_of(name, "xpmgr->endpt")[1:]


def frames_of(name: str, direction: str) -> list[bytes]:
    path = TRACES / f"{name}.session.json"
    return [bytes.fromhex(f["hex"]) for f in json.loads(path.read_text()) if f["dir"] == direction]


@pytest.mark.parametrize("name", ["http_get", "dns"])
def test_setup_is_the_reference_start_frame(name: str) -> None:
    """Our session's setup (no programs) is the reference's `start` frame, alone in its
    write; the reference's `result` for it makes `ready` fire."""
    if not (TRACES / f"{name}.session.json").exists():
        pytest.skip("reference trace not present")
    s = EndpointSession(reactor=Clock())
    t = WriteLog()
    s.makeConnection(t)
    assert t.writes == frames_of(name, "xpmgr->endpt")[:1]
    assert not s.ready.called
    s.dataReceived(frames_of(name, "endpt->xpmgr")[0])
    assert result_of(s.ready) is s


@pytest.mark.parametrize("name", ["http_get", "dns"])
def test_reference_endpoint_frames_split_anywhere_decode_the_same(name: str) -> None:
    """The reference endpoint writes header and body as two TLS records (INTEROP.md):
    however its frames are cut, the session sees the same messages."""
    if not (TRACES / f"{name}.session.json").exists():
        pytest.skip("reference trace not present")
    stream = b"".join(frames_of(name, "endpt->xpmgr")[1:])
    for cut in (1, 4, 5, 7):
        s, _, _ = on_string_transport(answer_timeout=None)
        notes: list[wire.Message] = []
        for sktid in (1,):
            s.socket(sktid).add_callback(notes.append)
        waits = [s.request(m) for m in load(name)[0]]
        for i in range(0, len(stream), cut):
            s.dataReceived(stream[i : i + cut])
        assert s.close_reason is None, s.close_reason
        assert all(d.called for d in waits)
        expect = [wire.decode_frame(f) for f in frames_of(name, "endpt->xpmgr")[1:]]
        assert notes == [m for m in expect if not isinstance(m, wire.Result)]
