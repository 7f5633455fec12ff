"""Unit-test fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def lowest_priority_beside_the_boots() -> None:
    """Under pytest-xdist the unit tests run on a worker beside the integration tests' boots
    (pyproject's addopts): at nice 19 they take only the CPU those leave idle, and never slow
    a guest towards its check timeouts. The integration worker reaches its unit tests only once
    its boots are over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.nice(19 - os.nice(0))
