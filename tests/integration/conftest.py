"""Integration fixtures: appliances are built once per test session and shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import C_LOCALE_CALLER, ROOT, build_py, need_root, need_tool

_built: dict[str, dict[str, Any]] = {}


def build_once(name: str) -> dict[str, Any]:
    """./build.py build NAME (a no-op when the store already has every step); the manifest."""
    if name not in _built:
        need_root()
        for tool in ("mmdebstrap", "qemu-img", "sfdisk", "mkfs.vfat", "mcopy"):
            need_tool(tool)
        # As a CI runner with the C locale, another time zone and umask 077 would run it.
        out = build_py("build", name, env=C_LOCALE_CALLER, umask=0o077)
        assert out.returncode == 0, f"build {name} failed:\n{out.stderr[-4000:]}"
        _built[name] = json.loads((ROOT / "build" / name / "manifest.json").read_text())
        _built[name]["_stderr"] = out.stderr
    return _built[name]


@pytest.fixture(scope="session")
def built() -> Callable[[str], dict[str, Any]]:
    return build_once


def store_entry(kind: str, step_id: str) -> Path:
    return ROOT / ".crust" / "steps" / f"{kind}-{step_id}"


def crust_domains() -> list[str]:
    """Names of the libvirt domains Crust started (smoke.DOMAIN_PREFIX) that still exist."""
    import libvirt

    from crust.boot.machine import DOMAIN_PREFIX

    conn = libvirt.open("qemu:///system")
    try:
        return [d.name() for d in conn.listAllDomains() if d.name().startswith(DOMAIN_PREFIX)]
    finally:
        conn.close()
