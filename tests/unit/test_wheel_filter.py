"""roles/python_app/filter_plugins/crust_wheels.py: which pinned requirements the wheel cache lacks
for the image's Python (the role fetches those with pip, and skips pip when none)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def load_filter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crust_wheels", ROOT / "roles" / "python_app" / "filter_plugins" / "crust_wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


missing_wheels = load_filter().missing_wheels


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    for name in (
        "gunicorn-23.0.0-py3-none-any.whl",
        "PyYAML-6.0.2-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.whl",
        "cffi-1.17.1-cp313-cp313-macosx_11_0_arm64.whl",
        "zope.interface-7.2-cp313-cp313-manylinux_2_5_x86_64.whl",
        "broken.whl",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_a_wheel_for_the_images_python_counts_as_cached_under_its_normalised_name(cache: Path) -> None:
    assert missing_wheels(["gunicorn==23.0.0", "pyyaml==6.0.2", "PyYAML[extra]==6.0.2"], str(cache), "313") == []


def test_another_version_python_or_platform_is_missing(cache: Path) -> None:
    wanted = ["gunicorn==22.0.0", "markupsafe==3.0.2", "cffi==1.17.1", "pyyaml==6.0.2"]
    assert missing_wheels(wanted, str(cache), "313") == ["gunicorn==22.0.0", "markupsafe==3.0.2", "cffi==1.17.1"]
    assert missing_wheels(["markupsafe==3.0.2", "pyyaml==6.0.2"], str(cache), "311") == ["pyyaml==6.0.2"]


def test_a_platform_pip_is_not_asked_for_is_missing_and_pip_decides(cache: Path) -> None:
    assert missing_wheels(["zope.interface==7.2"], str(cache), "313") == ["zope.interface==7.2"]


def test_no_cache_yet_misses_everything(tmp_path: Path) -> None:
    assert missing_wheels(["gunicorn==23.0.0"], str(tmp_path / "none"), "313") == ["gunicorn==23.0.0"]
