"""PPKS material for the broker unit tests: an EOp, an endpoint, an experimenter and a
controller, with the chains `pktlab init` would make."""

from __future__ import annotations

from dataclasses import dataclass

from packetlab.ppks import (
    Certificate,
    generate_private_key,
    issue_certificate,
    key_id,
    raw_public_key,
)
from packetlab.ppks.keys import Ed25519PrivateKey

NB, NA = 0, 2**31 - 1


@dataclass
class World:
    eop: Ed25519PrivateKey
    ep: Ed25519PrivateKey
    exper: Ed25519PrivateKey
    xc: Ed25519PrivateKey
    subcmd: Certificate
    pubcmd: Certificate
    exppriv: Certificate

    @property
    def eop_raw(self) -> bytes:
        return raw_public_key(self.eop)

    @property
    def channel(self) -> bytes:
        return key_id(self.eop)

    @property
    def ep_raw(self) -> bytes:
        return raw_public_key(self.ep)

    @property
    def xc_raw(self) -> bytes:
        return raw_public_key(self.xc)

    @property
    def exp_chain(self) -> list[bytes]:
        return [self.pubcmd.der, self.exppriv.der]


def make_world(limits: str | None = None) -> World:
    eop, ep, exper, xc = (generate_private_key() for _ in range(4))
    return World(
        eop,
        ep,
        exper,
        xc,
        issue_certificate("subcmd", eop, ep, NB, NA),
        issue_certificate("pubcmd", exper, xc, NB, NA),
        issue_certificate("exppriv", eop, exper, NB, NA, limits=limits),
    )
