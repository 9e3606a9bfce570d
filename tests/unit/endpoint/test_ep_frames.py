"""The endpoint's generated hot frame packers equal the wire layer's encoding of a message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from packetlab import wire
from packetlab.endpoint import frames

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
family_addr = st.one_of(
    st.tuples(st.just(4), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(6), st.binary(min_size=16, max_size=16)),
)
payload = st.binary(max_size=300)


@given(st.sampled_from([s for s in wire.Status if s not in (0x12, 0x13)]))
def test_result(errid: wire.Status) -> None:
    assert frames.result(errid) == wire.encode(wire.Result(errid))


@given(u32, payload)
def test_mdata(addr: int, data: bytes) -> None:
    assert frames.mdata(addr, data) == wire.encode(wire.Mdata(addr=addr, data=data))


@given(u8, u16, u64, st.sampled_from([0, 0x41, 0xFFFF]))
def test_ntag(sktid: int, tag: int, time: int, errid: int) -> None:
    expected = wire.encode(wire.Ntag(sktid=sktid, tag=tag, time=time, errid=errid))
    if errid == 0:
        assert frames.ntag(sktid, tag, time) == expected
    else:
        assert frames.ntag_error(sktid, tag, time, errid) == expected


@given(u8, family_addr, u64, st.sampled_from([1, 2, 3, 0xFF]), u16)
def test_nstat(sktid: int, fa: tuple[int, bytes], time: int, code: int, port: int) -> None:
    family, addr = fa
    assert frames.nstat_code(sktid, family, 6, time, code) == wire.encode(
        wire.Nstat(sktid=sktid, family=family, proto=6, time=time, code=code)
    )
    assert frames.nstat_established(sktid, family, 6, time, addr, port) == wire.encode(
        wire.Nstat(sktid=sktid, family=family, proto=6, time=time, raddr=addr, rport=port)
    )


@given(u8, family_addr, u64, u16, payload)
def test_ndata(sktid: int, fa: tuple[int, bytes], time: int, port: int, data: bytes) -> None:
    family, addr = fa
    assert frames.ndata_tcp(sktid, family, 6, time, data) == wire.encode(
        wire.Ndata(sktid=sktid, family=family, proto=6, time=time, data=data)
    )
    assert frames.ndata_udp(sktid, family, 17, time, addr, port, data) == wire.encode(
        wire.Ndata(
            sktid=sktid, family=family, proto=17, time=time, data=data, raddr=addr, rport=port
        )
    )


@given(u8, u64, u64, u32, u32)
def test_ndrop(sktid: int, t1: int, t2: int, units: int, nbytes: int) -> None:
    assert frames.ndrop(sktid, 4, 17, t1, t2, units, nbytes) == wire.encode(
        wire.Ndrop(
            sktid=sktid, family=4, proto=17, tfirst=t1, tlast=t2, unitcnt=units, bytecnt=nbytes
        )
    )


def test_ndata_of_the_largest_chunk() -> None:
    data = bytes(range(256)) * 256
    assert frames.ndata_tcp(1, 4, 6, 5, data) == wire.encode(
        wire.Ndata(sktid=1, family=4, proto=6, time=5, data=data)
    )


def test_packers_are_generated_from_the_declarations() -> None:
    import pytest

    from packetlab.wire.codegen import derive_packer

    # One struct call with the header folded in, then the byte strings as they are.
    assert frames.ndata_udp.source.count("p0(") == 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="declaration order"):
        derive_packer(wire.Ntag, "tag", "sktid", "time")
    with pytest.raises(TypeError, match="not optional"):
        derive_packer(wire.Ntag, "sktid", "time")
    with pytest.raises(TypeError, match="no field"):
        derive_packer(wire.Ntag, "sktid", "tag", "time", "nope")
