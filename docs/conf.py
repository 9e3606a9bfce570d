"""Sphinx configuration: Markdown (MyST) pages, alabaster theme.

Build: .venv/bin/sphinx-build -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # packetlab, even uninstalled

import packetlab

project = "packetlab"
author = "packetlab contributors"
copyright = "packetlab contributors"
release = packetlab.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = f"packetlab {release}"
