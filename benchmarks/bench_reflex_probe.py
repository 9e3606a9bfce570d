"""Where a reflex's reaction time goes: an endpoint with timing probes on its receive and
send path (``python -m benchmarks.bench_reflex --breakdown``).

Run as the endpoint instead of ``twistd``:

    python -m benchmarks.bench_reflex_probe OUT.jsonl -n ... pktendpoint ...

It installs the epoll reactor, wraps the steps below with ``CLOCK_REALTIME`` readings (the
clock of the kernel's RX and TX stamps), runs twistd with the remaining arguments, and on
shutdown writes one JSON line per received datagram: each step's time in ns after the
datagram's kernel RX stamp.

* ``sent``: the client's ``sendto`` (bench_reflex puts its CLOCK_REALTIME in the probe);
* ``idle``: the reactor went into ``epoll_wait`` (the last time before the datagram; a
  negative value means the endpoint was asleep when the datagram arrived);
* ``wake``: ``epoll_wait`` returned (with ``BusyPollUs``: the spinning poll did; a reflex
  socket the spin reads itself, reflexwarm.SpinReader: the same time as ``doread``);
  ``doread``: the socket's doRead began;
* ``notice``: the spin's own epoll (reflexwarm.SpinReader) saw the datagram;
* ``recv``: ``recvmsg`` returned (the receive path begins); ``gate``: the reflex gate;
* ``wasm_in``/``wasm_out``: ``reflex_packet`` ran (wasmtime call with its host calls);
  ``host_in``/``host_out``: its ``reflex_send`` host function (Python, behind ctypes);
* ``nsend``: the reflex's send enters the nsend path; ``submit``: its checks (monitors,
  valid_dest, quotas, burst windows, budget, accounting) passed, the scheduler gets it;
* ``sendmsg_in``/``sendmsg_out``: the ``sendmsg`` system call; ``tx``: the kernel's TX
  stamp of the reply; ``done``: the reflex gate returned (sends, reports, timer handled).

Each probe costs ~0.2-0.5 µs, which the figures include.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from typing import Any

_now = time.clock_gettime_ns
_RT = time.CLOCK_REALTIME
_records: list[dict[str, int]] = []
_cur: dict[str, int] = {}
_last = {"idle": 0, "wake": 0, "notice": 0, "doread": 0}
_gc = [0]  # garbage collections so far (gc.callbacks)
_spin_read = [False]  # inside SpinReader.poll (the busy-poll spin reads reflex sockets)


def _count_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc[0] += 1


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _mark(name: str) -> None:
    _cur[name] = _now(_RT)


class _Poller:
    """The reactor's epoll object, timing each wait."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def poll(self, *args: Any) -> Any:
        _last["idle"] = _now(_RT)
        try:
            return self._inner.poll(*args)
        finally:
            _last["wake"] = _now(_RT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _SpinEpoll:
    """The spin reader's epoll object: when its poll first saw the datagram."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def poll(self, *args: Any) -> Any:
        events = self._inner.poll(*args)
        if events:
            _last["notice"] = _now(_RT)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrap(cls: Any, name: str, before: str | None, after: str | None = None) -> None:
    orig = getattr(cls, name)

    def probe(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            _mark(before)
        try:
            return orig(*args, **kwargs)
        finally:
            if after is not None:
                _mark(after)

    setattr(cls, name, probe)


def install() -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    gc.callbacks.append(_count_gc)
    from twisted.internet import reactor

    def wrap_poller() -> None:  # once running: around BusyPollUs's spinning poller, if any
        reactor._poller = _Poller(reactor._poller)  # type: ignore[attr-defined]

    reactor.callWhenRunning(wrap_poller)  # type: ignore[attr-defined]

    from packetlab.endpoint import netio, recvpath, reflexes, reflexwarm, sendpath, timestamps
    from packetlab.reflex import runtime

    orig_doread = netio.UdpIO.doRead

    def doread(self: Any) -> None:
        if type(self) is not netio.UdpIO:  # a rehearsal's shadow socket: not timed
            return orig_doread(self)
        _last["doread"] = now = _now(_RT)
        if _spin_read[0]:  # read from the busy-poll spin: no reactor wake-up or dispatch
            _last["wake"] = now
        orig_doread(self)

    netio.UdpIO.doRead = doread  # type: ignore[method-assign]
    orig_spin_poll = reflexwarm.SpinReader.poll

    def spin_poll(self: Any) -> bool:
        _spin_read[0] = True
        try:
            return orig_spin_poll(self)
        finally:
            _spin_read[0] = False

    reflexwarm.SpinReader.poll = spin_poll  # type: ignore[method-assign]
    orig_add = reflexwarm.SpinReader.add

    def add(self: Any, io: Any) -> None:
        orig_add(self, io)
        if self._epoll is not None and not isinstance(self._epoll, _SpinEpoll):
            self._epoll = _SpinEpoll(self._epoll)

    reflexwarm.SpinReader.add = add  # type: ignore[method-assign,unused-ignore]

    orig_udp = recvpath.ReceivePath.udp_received

    def udp_received(self: Any, skt: Any, data: bytes, t: int, raddr: bytes, rport: int) -> None:
        global _cur
        if type(skt.io) is not netio.UdpIO:  # a rehearsal's shadow (reflexwarm.py): not timed
            saved, _cur = _cur, {}
            try:
                return orig_udp(self, skt, data, t, raddr, rport)
            finally:
                _cur = saved
        _cur = {"rx": t, **_last, "recv": _now(_RT)}
        _last["notice"] = 0  # the next datagram's own, if the spin reads it
        if len(data) >= 16:  # bench_reflex's probes carry their send time
            _cur["sent"] = int.from_bytes(data[8:16], "big")
        faults, gcs = _faults(), _gc[0]
        try:
            orig_udp(self, skt, data, t, raddr, rport)
        finally:
            _cur["end"] = _now(_RT)
            # Not times: page faults and garbage collections during the path (+rx, see dump).
            _cur["minflt"] = _faults() - faults + t
            _cur["gc"] = _gc[0] - gcs + t
            _records.append(_cur)

    recvpath.ReceivePath.udp_received = udp_received  # type: ignore[method-assign]
    _wrap(reflexes.ReflexGate, "check_ndata", "gate", "done")
    _wrap(runtime.ReflexInstance, "packet", "wasm_in", "wasm_out")
    _wrap(runtime.ReflexInstance, "_h_reflex_send", "host_in", "host_out")
    orig_submit = reflexes.submit_nsend

    def submit_nsend(session: Any, msg: Any) -> int:
        _mark("nsend")
        return orig_submit(session, msg)

    reflexes.submit_nsend = submit_nsend
    _wrap(sendpath.SendPath, "submit", "submit")
    _wrap(timestamps.TxStampMatcher, "sendto", "sendmsg_in", "sendmsg_out")
    orig_done = sendpath.SendPath.send_done

    def send_done(self: Any, pending: Any, t: int, err: int) -> None:
        if pending.tag and not err and type(pending.skt.io) is netio.UdpIO:
            # The reply of the latest datagram, whenever its stamp is read.
            for rec in reversed(_records[-4:]):
                if "sendmsg_in" in rec and "tx" not in rec:
                    rec["tx"] = t
                    break
            else:
                if "sendmsg_in" in _cur and "tx" not in _cur:
                    _cur["tx"] = t
        orig_done(self, pending, t, err)

    sendpath.SendPath.send_done = send_done  # type: ignore[method-assign]


def dump(path: str) -> None:
    with open(path, "w") as f:
        for rec in _records:
            rx = rec["rx"]
            f.write(json.dumps({k: v - rx for k, v in rec.items() if k != "rx"}) + "\n")


def main() -> None:
    out = sys.argv[1]
    install()
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("after", "shutdown", dump, out)  # type: ignore[attr-defined]
    sys.argv = ["twistd", *sys.argv[2:]]
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
