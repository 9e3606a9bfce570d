"""The TLS layer of every PacketLab link (PROTOCOL.md §4.6): TLS 1.3, PPKS chains checked
right after the handshake, certificate chain chosen by SNI = snikey, one TLS record per
message. See docs/tls.md."""

from packetlab.ppks import AuthMode, generate_snikey, is_valid_snikey

from .context import PeerPolicy, PPKSClientCreator, PPKSServerOptions
from .credentials import (
    Credentials,
    ServerEntry,
    TLSConfigError,
    agent_leaf_error,
    chain_validity,
)
from .endpoints import PPKSClientEndpoint, PPKSServerEndpoint, PPKSTLSFactory, default_pending_max
from .gate import PeerGate, peer_of
from .peer import IPPKSPeerListener, PeerRefusal, PeerVerificationError, VerifiedPeer

gen_snikey = generate_snikey  # the reference's name, pktctrl_gen_snikey: 63 random chars

__all__ = [
    "AuthMode",
    "Credentials",
    "IPPKSPeerListener",
    "PPKSClientCreator",
    "PPKSClientEndpoint",
    "PPKSServerEndpoint",
    "PPKSServerOptions",
    "PPKSTLSFactory",
    "PeerGate",
    "PeerPolicy",
    "PeerRefusal",
    "PeerVerificationError",
    "ServerEntry",
    "TLSConfigError",
    "VerifiedPeer",
    "agent_leaf_error",
    "chain_validity",
    "default_pending_max",
    "gen_snikey",
    "generate_snikey",
    "is_valid_snikey",
    "peer_of",
]
