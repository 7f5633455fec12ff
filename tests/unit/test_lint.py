"""Static checks are part of the test run: ruff, ruff format, mypy (strict), ansible-lint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "crust", "tests", "build.py", "bench", "appliances"],
        ["ruff", "format", "--check", "crust", "tests", "build.py", "bench", "appliances"],
        ["mypy"],
        ["ansible-lint", "--offline", "--profile", "production", "roles/"],
    ],
    ids=["ruff", "ruff-format", "mypy", "ansible-lint"],
)
def test_static_check(argv: list[str]) -> None:
    tool = BIN / argv[0]
    need(tool.exists(), f"{argv[0]} is not installed in the venv (./setup.sh)")
    argv = [a for a in argv if a != "bench" or (ROOT / "bench").is_dir()]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", NO_COLOR="1")
    out = subprocess.run([str(tool), *argv[1:]], check=False, cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
