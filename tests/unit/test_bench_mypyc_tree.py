"""benchmarks/mypyc_tree.py, which makes the mypyc-compiled copy for the issue-14 A/B:
its module list names real modules of this checkout (a rename would otherwise show only
as a module left interpreted in the next session's A/B), and it refuses to build into the
checkout itself (the `.so` files would shadow the sources being edited)."""

from __future__ import annotations

import pytest

from benchmarks.mypyc_tree import MODULES, REPO, main


def test_every_listed_module_is_a_source_file_of_this_checkout() -> None:
    assert MODULES and len(set(MODULES)) == len(MODULES)
    for path in MODULES:
        assert (REPO / path).is_file(), path
        assert path.startswith("packetlab/") and path.endswith(".py")


def test_it_refuses_to_compile_into_the_checkout_itself() -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(REPO)])
    assert exc.value.code == 2
