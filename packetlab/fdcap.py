"""How many connections a server lets wait unproven at once (in the TLS handshake, or in
a session's setup), and how many established ones fit, from the descriptor limit. Kept
free of OpenSSL and Twisted so a plaintext listener can use it without their import
cost."""

from __future__ import annotations

__all__ = ["default_pending_max", "link_budget", "nofile_limit"]

FD_RESERVE = 64  # listening sockets, epoll, logs, a stats file, Twisted's EMFILE spare


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


def nofile_limit() -> int | None:
    """The soft descriptor limit, None if unlimited."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def link_budget(nofile: int | None, held: int, per_link: int) -> int | None:
    """Established links of `per_link` descriptors each that fit in `nofile` beside `held`
    (the pending caps) and a spare (None: no limit). Past the limit accept() fails with
    EMFILE and Twisted closes every new connection, real clients too, 3 log lines each."""
    if nofile is None:
        return None
    reserve = min(FD_RESERVE, nofile // 4)
    return max(1, (nofile - held - reserve) // per_link)
