"""Shared test helpers. In CI (CI=true) a missing tool fails a test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A suite started in the background by a non-interactive shell (`.ci/run &`, nohup-style
# wrappers) inherits SIGINT ignored, and so would every build.py it starts: Python then never
# raises KeyboardInterrupt and the Ctrl-C tests would see builds go on. Restore the default.
signal.signal(signal.SIGINT, signal.default_int_handler)


def need(condition: bool, why: str) -> None:
    """Skip locally when a precondition is missing; fail in CI, where it must be present."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide this: {why}")
    pytest.skip(why)


def need_tool(name: str) -> None:
    need(shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None, f"tool {name} is not installed")


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def build_py(*args: str, check: bool = False, env: dict[str, str] | None = None, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "build.py"), *args], capture_output=True, text=True, check=check, env=full_env, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's definitions (appliances, kickstarts, roles, distributions)."""
    for name in ("appliances", "kickstarts", "roles", "distributions"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path
