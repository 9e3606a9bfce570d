"""PEP 562 lazy attributes for a package's ``__init__``: each public name is imported from
its submodule on first use, so a program pays only for the parts it uses (the idle memory
and start-up time of the endpoint and ``pktlab run``, docs/performance.md). Imports nothing
that Python has not loaded already at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(
    namespace: dict[str, Any], modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__`` over `namespace` (its ``globals()``):
    a name listed under a submodule in `modules` is imported from it when first asked for
    and kept in `namespace`, so later lookups do not come here."""
    package = namespace["__name__"]
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
