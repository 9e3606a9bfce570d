"""The docs' entry page leads to every walk-through (session 32, fresh32): a page with a
`Tutorial` heading or a `Quick start` (controller.md, xpmgr.md, tutorial-publish.md,
monitors.md, broker.md, endpoint.md) is linked from docs/index.md. Before, index.md named
only controller.md's tutorial: xpmgr.md's two, tutorial-publish.md and monitors.md's were
reached only through the README or the page list."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def walk_throughs() -> list[str]:
    heading = re.compile(r"^#+ (?:.*\bTutorial\b.*|Quick start)$", re.M)
    return sorted(p.name for p in DOCS.glob("*.md") if heading.search(p.read_text("utf-8")))


def test_the_index_links_every_walk_through() -> None:
    pages = walk_throughs()
    assert {"controller.md", "xpmgr.md", "tutorial-publish.md", "monitors.md"} <= set(pages)
    linked = set(re.findall(r"\]\(([\w-]+\.md)", (DOCS / "index.md").read_text("utf-8")))
    missing = [p for p in pages if p not in linked]
    assert not missing, f"docs/index.md does not link {missing}"
