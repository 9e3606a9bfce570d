"""The optional dependencies of setup.cfg's `extras_require`: a module of one, imported
where it is used, fails as one line naming what to install instead of a traceback.

`analysis` (scipy, matplotlib and numpy: ~300 MB in a venv) serves only `pktlab
compare`'s C2 and its --plot, so an endpoint host installs packetlab without it
(docs/install.md)."""

from __future__ import annotations

import importlib

__all__ = ["ANALYSIS", "MissingExtra", "require"]

ANALYSIS = "analysis"


class MissingExtra(ImportError):
    """A module of an extra cannot be imported; `str()` is the line for the user."""


def require(extra: str, *modules: str) -> None:
    """Import each of `modules` (a no-op for those already imported), or raise
    MissingExtra naming the module that was missing and the extra that brings it."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            hint = f"pip install 'packetlab[{extra}]'"
            if e.name:  # scipy, or one of its own (numpy): not installed
                line = f"{e.name.split('.')[0]} is not installed ({hint})"
            else:  # present but broken (an extension module built for another numpy)
                line = f"{name} cannot be imported: {e} ({hint})"
            raise MissingExtra(line, name=e.name) from None
