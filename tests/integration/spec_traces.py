"""Where the recorded reference sessions are (PROTOCOL.md's `traces/`, kept beside the
project as ``shared/spec/traces``).

The project may be checked out at ``/work/main`` or as a worktree ``/work/wt/NAME``: the
directory is looked for upward from this file, so the trace tests run (and can fail) in
both, instead of skipping when the checkout is one level deeper. `PKTLAB_SPEC_TRACES`
names it explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TRACES", "find_traces"]


def find_traces(start: Path) -> Path:
    """The first ``shared/spec/traces`` directory in `start` or one of its parents
    (`PKTLAB_SPEC_TRACES` wins); the nearest candidate if none exists."""
    named = os.environ.get("PKTLAB_SPEC_TRACES")
    if named:
        return Path(named)
    for parent in [start, *start.parents]:
        candidate = parent / "shared" / "spec" / "traces"
        if candidate.is_dir():
            return candidate
    return start.parents[2].parent / "shared" / "spec" / "traces"


TRACES = find_traces(Path(__file__).resolve().parent)
