"""Helpers shared by unit and integration tests (importable as `testkit`: pytest's
`pythonpath` and mypy's `mypy_path` list `tests/`)."""
