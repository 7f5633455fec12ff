"""Each appliance beyond wsgi, built and smoke-tested for real (`build NAME --test`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import build_py

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


def smoke(name: str) -> dict[str, Any]:
    out = build_py("test", name, "--force", "--json")
    assert out.returncode == 0, out.stderr[-5000:]
    record: dict[str, Any] = json.loads(out.stdout)[0]
    print(f"{name}: all checks passed {record['boot_to_pass_s']}s from domain start ({record['accel']})")
    return record


def test_turbogears2(built: Built) -> None:
    manifest = built("turbogears2")
    assert "postgresql" in manifest["packages"]
    record = smoke("turbogears2")
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert "written and read back" in seen["a record created through the API is read back"]
    assert seen["front page from the template"].startswith("HTTP 200")
