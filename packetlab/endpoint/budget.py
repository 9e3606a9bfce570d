"""Buffer budgets (PROTOCOL.md §3.5): the global BufMax and the per-socket rbufsz.

Costs follow the reference: every held or queued ndata costs its payload plus
`RECV_BUF_OVERHEAD` (UDP also its source address and port); every queued nsend costs its
payload plus `SEND_BUF_OVERHEAD`. The reference defines ``RECV_BUF_OVERHEAD`` as
``sizeof(struct pktlab_message) + 44``; that struct is a type byte plus a union whose
largest member (pointers and lengths of nsend/ndata) makes it about 72 bytes on LP64, so
we use 72 + 44 = 116 for both. The exact number only matters to a controller that fills
a buffer to the last byte; it is documented in docs/endpoint.md.
"""

from __future__ import annotations

__all__ = ["HELD_NTAG_COST", "RECV_BUF_OVERHEAD", "SEND_BUF_OVERHEAD", "Budget"]

RECV_BUF_OVERHEAD = 72 + 44
SEND_BUF_OVERHEAD = 72 + 44
# What a held ntag (NTAG masked, §2.4) keeps of its send's charge until it is released:
# the reference's per-message overhead, about what the held frame costs us in memory. It
# counts against BufMax (BUFUSED), not the socket's receive budget (RBUFUSED).
HELD_NTAG_COST = SEND_BUF_OVERHEAD


class Budget:
    """The global buffer budget: `used` may never exceed `max` (BUFMAX / BUFUSED)."""

    __slots__ = ("max", "used")

    def __init__(self, bufmax: int) -> None:
        self.max = bufmax
        self.used = 0

    @property
    def free(self) -> int:
        return self.max - self.used
