"""How many connections a server lets wait unproven at once (in the TLS handshake, or in
a session's setup), from the process's descriptor limit. Kept free of OpenSSL and
Twisted so a plaintext listener can use it without their import cost."""

from __future__ import annotations

__all__ = ["default_pending_max"]


def default_pending_max(nofile: int | None = None) -> int:
    """A server port's cap on connections in the handshake (`PPKSTLSFactory`
    `pending_max`; a controller's sessions in the setup): 1024, or 1/8 of the descriptor
    limit if lower (the established connections need the rest; past the limit accept()
    fails with EMFILE)."""
    if nofile is None:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            return 1024
    return max(16, min(1024, nofile // 8))
