"""Errors before work: not root, a missing tool (with its package), too little disk."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from crust.build import preflight as pipeline
from crust.build.plan import Step
from crust.build.store import Store
from crust.errors import UserError
from crust.runner import check_tools


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(UserError) as err:
        check_tools(["mmdebstrap", "mcopy"])
    assert "missing tools: mmdebstrap, mcopy" in str(err.value)
    assert "install mmdebstrap, mtools" in str(err.value)


def test_not_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(UserError) as err:
        pipeline.preflight([], Store(tmp_path), [Step("base", "debian-13", "x", {})])
    assert "needs root" in str(err.value) and err.value.exit_status == 2


def test_too_little_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(pipeline, "check_tools", lambda tools: None)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10 * 2**30, 9 * 2**30, 2**30))
    with pytest.raises(UserError) as err:
        pipeline.preflight([], Store(tmp_path), [Step("base", "debian-13", "x", {})])
    assert "not enough disk space" in str(err.value) and "1.0 GiB free" in str(err.value)


def test_nothing_to_build_needs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    pipeline.preflight([], Store(tmp_path), [])  # a no-op build works for anyone
