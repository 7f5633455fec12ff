"""Unit-test fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def lowest_priority_beside_the_boots() -> None:
    """Under pytest-xdist the unit tests run on a worker beside the integration tests' boots
    (pyproject's addopts), at nice 19: below the builds of the integration worker in the suite's
    session (the guests are sessions of their own, which the kernel's autogroups share the CPU
    with first). The integration worker reaches its unit tests only once its boots are over."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.nice(19 - os.nice(0))
