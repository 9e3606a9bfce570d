"""The request methods of a session, with friendly arguments (§1.2, §2, §3).

Addresses are `ipaddress` objects, strings or packed bytes; ports are ints; times are
endpoint times in ns since the epoch (0 = now). Each method returns a Deferred; a refused
request errbacks with `RequestFailed`, a session that ends first with `SessionClosed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from packetlab.controller.addresses import (
    AddressLike,
    any_address,
    check_port,
    family_of,
    parse_address,
)
from packetlab.controller.errors import RequestFailed, SessionClosed
from packetlab.wire import (
    End,
    Family,
    Mdata,
    Message,
    Mread,
    Mwrite,
    Ncap,
    Nclose,
    Nctl,
    NctlCommand,
    Nopen,
    Nsend,
    Ntag,
    Proto,
    Result,
    Status,
    Yield,
)

if TYPE_CHECKING:
    from packetlab.controller.sockets import Socket

DEFAULT_RBUFSZ = 1 << 20  # per-socket receive budget; the endpoint's BufMax is 8 MiB
#: The largest UDP payload a socket sends: 65535 less the IPv4 (20) and UDP (8) headers,
#: or less the UDP header alone over IPv6 (no jumbograms).
UDP_PAYLOAD_MAX: dict[int, int] = {Family.IP4: 65507, Family.IP6: 65527}


def as_bytes(data: object, what: str) -> bytes:
    """`data` (bytes, bytearray, memoryview) as bytes; TypeError naming `what` for
    anything else: a str must be encoded first (bytes(str) needs an encoding, and
    bytes(int) would be that many zero bytes)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    hint = f" (encode it: {data[:20]!r}.encode())" if isinstance(data, str) else ""
    raise TypeError(f"{what} must be bytes, got {type(data).__name__}{hint}")


@dataclass(frozen=True, slots=True)
class QueuedSend:
    """An nsend the endpoint has queued. `ntag` (when asked for) fires with the `Ntag`
    once the data went out, or errbacks with SendFailed / SocketClosed / SessionClosed."""

    sktid: int
    tag: int
    ntag: Deferred[Ntag] | None


def _queued(_: object, sktid: int, tag: int, ntag: Deferred[Ntag] | None) -> QueuedSend:
    return QueuedSend(sktid, tag, ntag)


def _data(m: Result | Mdata) -> bytes:
    assert isinstance(m, Mdata)  # the session checked it
    return m.data


def _bytes_of(d: Deferred[Result | Mdata]) -> Deferred[bytes]:
    return d.addCallback(_data)


class RequestMethods:
    """Mixed into EndpointSession; everything goes through `request()`."""

    def request(
        self, msg: Message, on_success: Callable[[], None] | None = None
    ) -> Deferred[Result | Mdata]:
        raise NotImplementedError

    def find_socket(self, sktid: int) -> Socket | None:
        raise NotImplementedError

    def close(self) -> Deferred[None]:
        raise NotImplementedError

    def _opened(self, msg: Nopen, buffering: bool) -> Socket:
        raise NotImplementedError

    def _nopen_sent(self, msg: Nopen) -> None:
        raise NotImplementedError

    def _kind_of(self, sktid: int) -> tuple[int | None, int | None]:
        raise NotImplementedError

    def _nopen_done(self, sktid: int) -> None:
        raise NotImplementedError

    def _track_tag(self, sktid: int, tag: int | None = None) -> tuple[int, Deferred[Ntag]]:
        raise NotImplementedError

    def _untrack_tag(self, tag: int) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ memory

    def mread(self, addr: int, length: int) -> Deferred[bytes]:
        """Read `length` (1..65535) bytes of endpoint memory at `addr` (§2.2)."""
        return _bytes_of(self.request(Mread(addr, length)))

    def mwrite(self, addr: int, data: bytes | bytearray | memoryview) -> Deferred[Result]:
        """Write endpoint memory; only the RW socket fields take writes (§2.1)."""
        try:
            payload = as_bytes(data, "mwrite data")
        except TypeError as e:
            return fail(e)
        return self.request(Mwrite(addr, payload))  # type: ignore[return-value]

    # ------------------------------------------------------------------ sockets

    def nopen(self, msg: Nopen, *, buffer: bool = True) -> Deferred[Socket]:
        """Send a ready-made nopen; fires with the new `Socket` (see the nopen_* helpers).

        `buffer=False` keeps no notification queue for the socket: notifications go only to
        its callbacks and tracked ntags, and are dropped otherwise.
        """
        out: list[Socket] = []
        self._nopen_sent(msg)
        answer = self.request(msg, on_success=lambda: out.append(self._opened(msg, buffer)))
        # Cancelling stops the caller's wait at once; the sktid stays taken until the
        # answer comes (else free_sktid() could hand it out again while the endpoint opens
        # it), and a socket the endpoint opened all the same is closed then: nobody holds
        # it (it stayed open on the endpoint until the session ended, up to session 31).
        d: Deferred[Socket] = Deferred(lambda _: None)

        def done(result: object) -> None:
            self._nopen_done(msg.sktid)
            if d.called:  # cancelled
                if not isinstance(result, Failure):
                    self.nclose(msg.sktid).addErrback(lambda _: None)  # the session ended
                return
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(out[0])

        answer.addBoth(done)
        return d

    def nopen_tcp_connect(
        self,
        sktid: int,
        raddr: AddressLike,
        rport: int,
        *,
        laddr: AddressLike | None = None,
        lport: int = 0,
        rbufsz: int = DEFAULT_RBUFSZ,
        buffer: bool = True,
    ) -> Deferred[Socket]:
        """Open a TCP connection from the endpoint to `raddr:rport`.

        The result comes as soon as the connect is under way (state OPENING); the
        ESTABLISHED nstat follows (`Socket.wait_established`, or `wait_connected` which
        also notices failures the reference endpoint does not report).
        """
        try:
            ra = parse_address(raddr)
            family = family_of(ra)
            la = _local(laddr, family)
            if check_port(rport, "rport") == 0:  # the kernel refuses it: a REFUSED later
                raise ValueError("rport must be 1..65535 to connect to, got 0")
            msg = Nopen(
                sktid, family, Proto.TCP, rbufsz, la, check_port(lport, "lport"),
                ra.packed, rport,
            )  # fmt: skip
        except ValueError as e:
            return fail(e)
        return self.nopen(msg, buffer=buffer)

    def nopen_tcp_listen(
        self,
        sktid: int,
        lport: int,
        *,
        laddr: AddressLike | None = None,
        family: int = Family.IP4,
        rbufsz: int = DEFAULT_RBUFSZ,
        buffer: bool = True,
    ) -> Deferred[Socket]:
        """Listen for TCP on the endpoint (our extension; the reference endpoint dies on it,
        §3.1)."""
        try:
            fam, la = _family_and_local(laddr, family)
            msg = Nopen(sktid, fam, Proto.TCP, rbufsz, la, check_port(lport, "lport"))
        except ValueError as e:
            return fail(e)
        return self.nopen(msg, buffer=buffer)

    def nopen_udp(
        self,
        sktid: int,
        *,
        laddr: AddressLike | None = None,
        lport: int = 0,
        family: int = Family.IP4,
        rbufsz: int = DEFAULT_RBUFSZ,
        buffer: bool = True,
    ) -> Deferred[Socket]:
        """Open a UDP socket bound to `laddr:lport` (default: any address, any port)."""
        try:
            fam, la = _family_and_local(laddr, family)
            msg = Nopen(sktid, fam, Proto.UDP, rbufsz, la, check_port(lport, "lport"))
        except ValueError as e:
            return fail(e)
        return self.nopen(msg, buffer=buffer)

    def nopen_raw(
        self,
        sktid: int,
        *,
        laddr: AddressLike | None = None,
        family: int = Family.IP4,
        rbufsz: int = DEFAULT_RBUFSZ,
        buffer: bool = True,
    ) -> Deferred[Socket]:
        """Open a raw IP socket on the interface of exported address `laddr` (default: the
        first exported address). It receives nothing until an `ncap` (§3.4)."""
        try:
            fam, la = _family_and_local(laddr, family)
            msg = Nopen(sktid, fam, Proto.RAW, rbufsz, la)
        except ValueError as e:
            return fail(e)
        return self.nopen(msg, buffer=buffer)

    def nclose(self, sktid: int) -> Deferred[Result]:
        """Close a socket; its `Socket` ends and its untold ntags errback SocketClosed.
        Its queue, full or not, no longer holds reads back meanwhile: what is queued can
        still be read."""
        d: Deferred[Result] = self.request(Nclose(sktid))  # type: ignore[assignment]
        sock = self.find_socket(sktid)
        if sock is not None and not d.called:  # sent: then reads may resume (and answer it)
            sock.set_closing(True)

            def refused(f: Failure) -> Failure:
                if not sock.ended:  # still open: its queue holds reads back again
                    sock.set_closing(False)
                return f

            d.addErrback(refused)
        return d

    def nsend(
        self,
        sktid: int,
        data: bytes | bytearray | memoryview,
        *,
        time: int = 0,
        to: tuple[AddressLike, int] | None = None,
        ntag: bool = False,
        tag: int | None = None,
        family: int | None = None,
        proto: int | None = None,
    ) -> Deferred[QueuedSend]:
        """Queue `data` on socket `sktid`, sent at endpoint time `time` (ns; 0 or past: now).

        UDP sockets need `to=(address, port)`. With `ntag=True` a free tag is allocated (or
        `tag` is used) and `QueuedSend.ntag` fires with the endpoint's send time. A `tag`
        without `ntag=True` is sent as is; its ntag then goes to the socket's queue.
        `family`/`proto` default to the socket's (give them for sockets opened outside this
        session's methods).
        """
        ntag_d: Deferred[Ntag] | None = None
        wire_tag = tag or 0
        try:
            kfam, kpro = self._kind_of(sktid)
            fam = family if family is not None else kfam
            pro = proto if proto is not None else kpro
            if fam is None or pro is None:
                raise ValueError(
                    f"nsend: socket {sktid} is not open in this session (open it with an "
                    f"nopen_* method first; for a socket opened with request(), give "
                    f"family= and proto=)"
                )
            raddr: bytes | None = None
            rport: int | None = None
            if pro == Proto.UDP:
                if to is None:
                    raise ValueError("a UDP nsend needs to=(address, port)")
                ra = parse_address(to[0])
                if family_of(ra) != fam:
                    raise ValueError(f"destination {ra} is not of the socket's family {fam}")
                raddr, rport = ra.packed, check_port(to[1], "destination port")
                if rport == 0:  # the kernel refuses it (EINVAL): an EPKTNOTSENT later
                    raise ValueError("destination port must be 1..65535 to send to, got 0")
                most = UDP_PAYLOAD_MAX[fam]
                if len(data) > most:
                    raise ValueError(
                        f"a UDP payload over IPv{4 if fam == Family.IP4 else 6} is at most "
                        f"{most} bytes, got {len(data)}"
                    )
            elif to is not None:
                raise ValueError("only UDP nsend takes a destination (to=...)")
            if tag is not None and not 0 <= tag <= 0xFFFF:
                raise ValueError(f"tag must be 0..65535, got {tag!r}")
            payload = as_bytes(data, "nsend data")
            if not isinstance(time, int) or isinstance(time, bool):
                raise TypeError(
                    f"nsend time must be an int (ns since the epoch on the endpoint's "
                    f"clock, 0: now; a float cannot hold them exactly), got {time!r}"
                )
            if ntag:  # last: a tag tracked for a request that is never sent would leak
                wire_tag, ntag_d = self._track_tag(sktid, tag or None)
            msg = Nsend(sktid, fam, pro, time, wire_tag, payload, raddr, rport)
        except (ValueError, TypeError) as e:
            return fail(e)
        # one pair of callbacks (a train makes 100,000 of these)
        return self.request(msg).addCallbacks(
            _queued, self._not_queued, (sktid, wire_tag, ntag_d), errbackArgs=(wire_tag, ntag_d)
        )

    def _not_queued(self, f: Failure, tag: int, ntag: Deferred[Ntag] | None) -> Failure:
        if ntag is not None:
            self._untrack_tag(tag)
        return f

    def ncap(
        self, sktid: int, program: bytes, *, endtime: int, family: int | None = None
    ) -> Deferred[Result]:
        """Capture on a raw socket until endpoint time `endtime` with an encoded eBPF
        program (`packetlab.controller.filters` compiles tcpdump expressions)."""
        kfam, kpro = self._kind_of(sktid)
        if kpro not in (None, Proto.RAW):
            # The endpoint would refuse it (ours ECTLNOTSUP; the reference crashes on a
            # TCP/UDP socket, §3.4): say why here.
            return fail(
                ValueError(f"ncap works on raw sockets only; socket {sktid} is {_proto(kpro)}")
            )
        fam = family if family is not None else kfam or Family.IP4
        return self.request(Ncap(sktid, fam, Proto.RAW, endtime, bytes(program)))  # type: ignore[return-value]

    def nctl_fin(self, sktid: int, *, time: int = 0) -> Deferred[Result]:
        """Half-close a TCP socket (shutdown write) after the nsends queued before `time`."""
        kfam, kpro = self._kind_of(sktid)
        if kpro not in (None, Proto.TCP):
            return fail(
                ValueError(f"nctl_fin works on TCP sockets only; socket {sktid} is {_proto(kpro)}")
            )
        fam = kfam or Family.IP4
        msg = Nctl(sktid, fam, Proto.TCP, time, NctlCommand.TCP_FIN)
        return self.request(msg)  # type: ignore[return-value]

    # ------------------------------------------------------------------ session

    def yield_(self, rhint: int) -> Deferred[Result]:
        """Hand the endpoint back until endpoint time `rhint`; the endpoint answers and
        closes the connection (§1.4 step 5)."""
        return self.request(Yield(rhint))  # type: ignore[return-value]

    def end(self) -> Deferred[None]:
        """Send `end`, then close. The reference endpoint answers `end` with ECTLNOTSUP
        (§1.2); that answer, or the endpoint closing first, counts as done."""

        def answered(result: object) -> Deferred[None]:
            return self.close()

        def refused(f: object) -> Deferred[None]:
            from twisted.python.failure import Failure

            assert isinstance(f, Failure)
            err = f.value
            if isinstance(err, SessionClosed) or (
                isinstance(err, RequestFailed) and err.status == Status.ECTLNOTSUP
            ):
                return self.close()
            return f  # type: ignore[return-value]

        return self.request(End()).addCallbacks(answered, refused)


def _proto(proto: int) -> str:
    try:
        return Proto(proto).name
    except ValueError:
        return f"proto {proto}"


def _local(laddr: AddressLike | None, family: int) -> bytes:
    if laddr is None:
        return any_address(family).packed
    la = parse_address(laddr)
    if family_of(la) != family:
        raise ValueError(f"local address {la} is not of family {family}")
    return la.packed


def _family_and_local(laddr: AddressLike | None, family: int) -> tuple[int, bytes]:
    if laddr is None:
        return int(family), any_address(family).packed
    la = parse_address(laddr)
    return int(family_of(la)), la.packed
