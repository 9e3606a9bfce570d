"""Every relative link of README.md and docs/*.md leads somewhere (session 26, docs26).

A link `[text](page.md#a-heading)` or `[text](#a-heading)` must name a file of the
checkout and, with `#`, a heading of that page as the docs build anchors it: MyST's
GitHub-style slug of the heading's text and inline code, headings of levels 1 to
`myst_heading_anchors` (3, docs/conf.py) only, a repeated slug suffixed `-1`, `-2`...
The pages are parsed with markdown-it (what MyST parses with), so links inside code
blocks and inline code are not links, as on the built pages.

Web links (`http://`, `https://`, `mailto:`) are not fetched: the suite runs offline."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

markdown_it = pytest.importorskip("markdown_it")
slugs = pytest.importorskip("myst_parser.slugs")

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HEADING_ANCHORS = 3  # docs/conf.py myst_heading_anchors
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # a URL scheme


@cache
def _tokens(page: Path) -> list[Any]:
    parser = markdown_it.MarkdownIt("commonmark").enable("table")  # MyST parses tables too
    return parser.parse(page.read_text(encoding="utf-8"))


@cache
def anchors(page: Path) -> frozenset[str]:
    """The heading anchors of a page, as MyST makes them (compute_unique_slug)."""
    found: set[str] = set()
    tokens = _tokens(page)
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or int(tok.tag[1:]) > HEADING_ANCHORS:
            continue
        inline = tokens[i + 1]
        title = "".join(
            c.content for c in inline.children or [] if c.type in ("text", "code_inline")
        )
        slug = slugs.github_slugify(title)
        if slug:
            found.add(slugs.unique_slug(slug, found))
    return frozenset(found)


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of each link and image of a page."""
    out = []
    for tok in _tokens(page):
        for child in tok.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if isinstance(target, str):
                out.append(((tok.map or [0])[0] + 1, target))
    return out


def dead_links(page: Path) -> list[str]:
    dead = []
    for line, target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        where = f"{page.relative_to(REPO)}:{line}: {target}"
        if not dest.exists():
            dead.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            dead.append(f"{where}: no heading of {dest.name} has that anchor")
    return dead


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    assert dead_links(page) == []


def test_the_checker_finds_a_dead_file_and_a_dead_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The `--pcap FILE` option\n")
    page.write_text(
        "# A page\n\n## Twice\n\n## Twice\n\n#### Deep\n\n"
        "[ok](other.md#the---pcap-file-option) [ok](#twice-1) [ok](other.md)\n"
        "[bad](missing.md) [bad](other.md#nope) [bad](#deep)\n"
        "`[code](missing.md)` [web](https://example.org/x#y)\n"
    )
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        dead = dead_links(page)
    finally:
        REPO = saved
    assert [d.split(": ", 1)[1] for d in dead] == [
        "missing.md: no such file",
        "other.md#nope: no heading of other.md has that anchor",
        "#deep: no heading of page.md has that anchor",
    ]


def test_every_page_is_in_the_docs_index() -> None:
    """index.md's toctree takes every page by a glob; README.md names where they are."""
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert re.search(r"```\{toctree\}\n(?::[^\n]*\n)*\n?\*\n```", index), index


def reachable_from(start: Path) -> set[Path]:
    """The Markdown pages a reader reaches from `start` by following relative links."""
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for _, target in links(page):
            path = target.partition("#")[0]
            dest = (page.parent / unquote(path)).resolve()
            if path and not EXTERNAL.match(target) and dest.suffix == ".md" and dest.exists():
                todo.append(dest)
    return seen


def test_every_page_is_reached_from_the_readme_by_links() -> None:
    """On a forge's web view (no Sphinx, no toctree) a page no link leads to is lost:
    before session 26, architecture.md, testing.md and index.md were only named."""
    reached = reachable_from(REPO / "README.md")
    lost = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in reached)
    assert lost == []
