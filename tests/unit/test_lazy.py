"""packetlab._lazy: the PEP 562 loader that packetlab.controller and packetlab.ppks share
(each public name imported from its submodule on first use, then kept)."""

from __future__ import annotations

import json.decoder
from typing import Any

import pytest

import packetlab.ppks as ppks
from packetlab._lazy import lazy_attributes


def test_a_name_is_imported_from_its_module_once() -> None:
    namespace: dict[str, Any] = {"__name__": "json"}
    getattr_, dir_ = lazy_attributes(namespace, {"decoder": ("JSONDecoder", "scanstring")})
    assert "JSONDecoder" not in namespace
    assert getattr_("JSONDecoder") is json.decoder.JSONDecoder
    assert namespace["JSONDecoder"] is json.decoder.JSONDecoder  # later lookups skip us
    assert dir_() == ["JSONDecoder", "__name__", "scanstring"]


def test_an_unlisted_name_is_an_attribute_error() -> None:
    getattr_, _ = lazy_attributes({"__name__": "json"}, {"decoder": ("JSONDecoder",)})
    with pytest.raises(AttributeError, match="module 'json' has no attribute 'loads'"):
        getattr_("loads")  # in json, but not a lazy name


def test_ppks_issues_through_it() -> None:
    from packetlab.ppks import issue

    assert ppks.sign_csr is issue.sign_csr
    assert "issue_certificate" in dir(ppks)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ppks.nope  # noqa: B018
