"""`packetlab.controller`'s public names, imported from their modules on first use: every
name in `__all__` is there, is the object its module defines, and the three lists that
name them (`__all__`, the lazy map, the imports mypy reads) agree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import packetlab.controller as ctl

WHERE = {name: module for module, names in ctl._MODULES.items() for name in names}


def test_all_is_the_lazy_map() -> None:
    assert sorted(ctl.__all__) == sorted(WHERE)


@pytest.mark.parametrize("name", ctl.__all__)
def test_each_name_is_its_modules_object(name: str) -> None:
    module = importlib.import_module(f"packetlab.controller.{WHERE[name]}")
    assert getattr(ctl, name) is getattr(module, name)
    assert name in dir(ctl)


def test_publish_is_the_function_even_after_its_module() -> None:
    importlib.import_module("packetlab.controller.publish")  # binds the module's name
    from packetlab.controller import publish

    assert callable(publish) and publish.__module__ == "packetlab.controller.publish"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ctl.nope  # noqa: B018


def test_the_type_checking_imports_name_the_same_modules() -> None:
    tree = ast.parse(Path(ctl.__file__).read_text(encoding="utf-8"))
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "packetlab.controller."
        ):
            for alias in node.names:
                seen[alias.name] = str(node.module).rsplit(".", 1)[1]
    assert seen == WHERE
