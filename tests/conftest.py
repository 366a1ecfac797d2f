"""Registers tests/lib's pytest plugin once for every suite (tests/lib/fixtures.py)."""

pytest_plugins = ("lib.fixtures",)
