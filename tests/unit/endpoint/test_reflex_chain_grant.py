"""Which reflexes a controller chain allows: the operator's exppriv grant, narrowed by the
experimenter's delpriv certificates, never widened by them (session 20: the union of
every certificate's `reflex=` let a delpriv the experimenter signs allow any reflex)."""

from __future__ import annotations

from typing import Any

from test_reflex_gate import ECHO, TRAP, attach, make_rig, opened, send, w

from packetlab import wire
from packetlab.endpoint.limits import admit
from packetlab.ppks import CertLimits, generate_private_key, issue_certificate
from packetlab.ppks.chainlimits import allowed_reflexes
from packetlab.reflex import abi
from packetlab.wire.constants import Status as S

NA = 2**31 - 1
NOW_NS = 1_700_000_000 * 10**9


def delegated(exppriv: CertLimits | None, delpriv: CertLimits | None) -> list[Any]:
    """pubcmd(exper2 -> xc) <- delpriv(exper -> exper2) <- exppriv(eop -> exper)."""
    eop, exper, exper2, xc = (generate_private_key() for _ in range(4))
    return [
        issue_certificate("pubcmd", exper2, xc, 0, NA),
        issue_certificate("delpriv", exper, exper2, 0, NA, del_type="exppriv", limits=delpriv),
        issue_certificate("exppriv", eop, exper, 0, NA, limits=exppriv),
    ]


def grant(*digests: bytes) -> CertLimits:
    return CertLimits(reflex_digests=digests)


def test_a_delpriv_cannot_allow_a_reflex_the_operator_did_not() -> None:
    echo, trap = abi.digest(w(ECHO)), abi.digest(w(TRAP))
    assert allowed_reflexes(delegated(None, grant(echo))) == frozenset()
    assert allowed_reflexes(delegated(CertLimits(max_send_pkt=5), grant(echo))) == frozenset()
    assert allowed_reflexes(delegated(grant(trap), grant(echo, trap))) == {trap}
    assert allowed_reflexes(delegated(grant(echo, trap), grant(echo))) == {echo}  # narrowed
    assert allowed_reflexes(delegated(grant(echo), None)) == {echo}  # silent: no narrowing


def test_the_endpoint_refuses_a_reflex_only_a_delpriv_lists() -> None:
    echo = w(ECHO)
    certs = delegated(CertLimits(max_send_pkt=100), grant(abi.digest(echo)))
    r, g = make_rig(admit(certs, None, lambda: NOW_NS))
    assert g.listed == frozenset()
    opened(r)
    assert send(r, attach(1, echo)) == [wire.Result(int(S.ECRTBADHDAT))]
