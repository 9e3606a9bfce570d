"""Our session against the recorded reference sessions (../shared/spec/traces): issuing the
same requests it writes exactly the reference pktxpmgr's frames, and the reference
endpoint's frames, fed back, complete them."""

from __future__ import annotations

import json

import pytest
from ctl_fakes import on_string_transport, result_of
from spec_traces import TRACES

from packetlab import wire
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
