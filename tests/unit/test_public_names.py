"""The public names of the packages that import them lazily (`packetlab._lazy`):
`packetlab.controller`, `packetlab.ppks`, `packetlab.wire`. Each names them three times
(`__all__`, the lazy map `_MODULES`, the TYPE_CHECKING imports mypy reads): the three
agree, and every name is the object its module defines."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

import packetlab.controller as ctl
import packetlab.ppks as ppks
import packetlab.wire as wire

PACKAGES = (ctl, ppks, wire)


def where(package: ModuleType) -> dict[str, str]:
    return {name: module for module, names in package._MODULES.items() for name in names}


def typing_imports(package: ModuleType) -> dict[str, str]:
    """name -> submodule of each `from X import name` in the package's source (absolute
    `packetlab.P.sub` or relative `.sub`)."""
    tree = ast.parse(Path(str(package.__file__)).read_text(encoding="utf-8"))
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        if node.level == 1:
            sub = node.module
        elif node.module.startswith(f"{package.__name__}."):
            sub = node.module.removeprefix(f"{package.__name__}.")
        else:
            continue
        for alias in node.names:
            assert alias.name not in seen, f"{alias.name} imported twice"
            seen[alias.name] = sub
    return seen


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_the_lazy_map_and_the_type_checking_imports_agree(package: ModuleType) -> None:
    lazy = where(package)
    assert sum(map(len, package._MODULES.values())) == len(lazy), "a name listed twice"
    assert sorted(package.__all__) == sorted(lazy)
    assert len(package.__all__) == len(set(package.__all__))
    assert typing_imports(package) == lazy


@pytest.mark.parametrize(
    ("package", "name"),
    [(p, n) for p in PACKAGES for n in p.__all__],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_each_name_is_its_modules_object(package: ModuleType, name: str) -> None:
    module = importlib.import_module(f"{package.__name__}.{where(package)[name]}")
    assert getattr(package, name) is getattr(module, name)
    assert name in dir(package)


def test_publish_is_the_function_even_after_its_module() -> None:
    importlib.import_module("packetlab.controller.publish")  # binds the module's name
    from packetlab.controller import publish

    assert callable(publish) and publish.__module__ == "packetlab.controller.publish"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_an_unknown_name_is_an_attribute_error(package: ModuleType) -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018
