"""The Makefile delegates to build.py and decides nothing itself."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT, need_tool


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["all"], "./build.py build --all -j 1"),
        (["-j2", "all"], "./build.py build --all -j 2"),
        (["wsgi"], "./build.py build wsgi"),
        (["test"], "./build.py test --all"),
        (["clean"], "./build.py clean"),
    ],
)
def test_make_delegates(args: list[str], command: str) -> None:
    need_tool("make")
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == command
