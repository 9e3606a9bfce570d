"""PPKS material for the broker unit tests: an EOp, an endpoint, an experimenter and a
controller, with the chains `pktlab init` would make; a TLS pair in memory."""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL

from packetlab.ppks import (
    Certificate,
    generate_private_key,
    issue_certificate,
    key_id,
    raw_public_key,
)
from packetlab.ppks.keys import Ed25519PrivateKey
from packetlab.tls import AuthMode, Credentials, PPKSClientCreator, PPKSServerOptions, ServerEntry

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


def agent() -> Credentials:
    k = generate_private_key()
    return Credentials([issue_certificate("agent", k, k, 0, 2**31 - 1)], k)


def pump(a: SSL.Connection, b: SSL.Connection) -> None:
    for _ in range(10):
        moved = False
        for x in (a, b):
            try:
                x.do_handshake()
            except SSL.WantReadError:
                pass
        for x, y in ((a, b), (b, a)):
            try:
                data = x.bio_read(1 << 16)
            except SSL.WantReadError:
                continue
            y.bio_write(data)
            moved = True
        if not moved:
            return


def tls_pair() -> tuple[SSL.Connection, SSL.Connection]:
    """A client and a broker-like server (agent certs both ways) after the handshake,
    over memory BIOs."""
    server = PPKSServerOptions(
        default=ServerEntry(agent(), AuthMode.AGENT, (), require_client_cert=True)
    ).serverConnectionForTLS(None)  # type: ignore[arg-type]
    client = PPKSClientCreator(agent(), AuthMode.AGENT).clientConnectionForTLS(None)  # type: ignore[arg-type]
    server.set_accept_state()
    client.set_connect_state()
    pump(client, server)
    return client, server
