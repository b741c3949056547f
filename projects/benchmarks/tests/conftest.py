"""Fixtures of the benchmark tests: the library tests' ``shared_data``
(tests/conftest.py is not above this folder, so it is imported here)."""
from tests.conftest import shared_data  # noqa: F401
