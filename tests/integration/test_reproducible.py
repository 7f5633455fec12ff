"""Same inputs, same bytes: every shipped appliance rebuilt from nothing elsewhere is bit-identical,
and a role that writes the clock is caught with a diffoscope report naming its file.

One `verify --rebuild` covers both (one cold rebuild: the base is built once for all): the
originals are the session's builds, published into a directory of this test with a copy of the
definitions that adds the clock role.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, build_py, need_tool
from tests.integration.conftest import claim_behind
from tests.integration.reproducible_job import ALL_FORMATS, SHIPPED, verify_shipped

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="module")
def verified(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Any], Path, str]]:
    need_tool("diffoscope")
    for name in SHIPPED:
        built(name)
    done = claim_behind("reproducible")  # done behind the tests that boot, or not started
    status, report, output, stderr, work = done if done is not None else verify_shipped(build_py, tmp_path_factory.mktemp("reproducible"))
    yield status, report, output, stderr
    shutil.rmtree(work)  # GiBs of published copies: the suite's later tests need the disk


def test_every_shipped_appliance_is_bit_identical(verified: tuple[int, dict[str, Any], Path, str]) -> None:
    _, report, _, _ = verified
    for name in SHIPPED:
        rows = {r["artifact"]: r for r in report["appliances"][name]["artifacts"]}
        expected = {"raw", "qcow2", "uki", "sbom"} | (set(ALL_FORMATS) if name == "wsgi" else set())
        assert expected <= rows.keys(), (name, sorted(rows))
        differing = sorted(a for a, r in rows.items() if not r["identical"])
        first = report["appliances"][name]["first_difference"]
        assert differing == [], f"{name}: {differing} differ: {first}"


def test_a_role_writing_the_clock_is_caught_with_a_report(verified: tuple[int, dict[str, Any], Path, str]) -> None:
    status, report, output, _ = verified
    assert status == 1  # one appliance differs
    clock = report["appliances"]["wsgi-clock"]
    rows = {r["artifact"]: r["identical"] for r in clock["artifacts"]}
    assert rows["raw"] is False and rows["qcow2"] is False
    assert rows["uki"] is True  # the kernel, initrd and command line do not depend on the role
    assert clock["first_difference"].startswith("first difference: /etc/build-clock (content)"), clock["first_difference"]
    report_file = output / "wsgi-clock" / "verify" / "diffoscope.txt"
    text = report_file.read_text()
    assert "etc/build-clock" in text and "original" in text and "rebuilt" in text, text[:2000]
    assert (output / "wsgi-clock" / "verify" / "diffoscope.html").is_file()


def test_the_throw_away_store_is_gone(verified: tuple[int, dict[str, Any], Path, str]) -> None:
    assert not [p for p in (ROOT / ".crust" / "tmp").iterdir() if p.name.startswith("verify.")]


def test_a_rerun_with_the_same_output_reuses_the_steps_after_it(built: Built, tmp_path: Path) -> None:
    """Early cut-off: a comment in Crust's image step code reruns the image step (its code is
    part of its id); the image comes out the same, so the conversions are reused, not redone."""
    first = built("wsgi")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("build.py", "crust", "appliances", "kickstarts", "roles", "distributions"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, checkout / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, checkout / name)
    code = checkout / "crust" / "steps" / "image.py"
    # a comment of this run (a store an earlier run left may hold the image of another one)
    code.write_text(code.read_text() + f"# a comment ({tmp_path.name}, {time.time_ns()}): the image step's id changes, its output does not\n")
    output = tmp_path / "build"
    plan = subprocess.run(
        [sys.executable, str(checkout / "build.py"), "--store", str(ROOT / ".crust"), "--output", str(output), "plan", "wsgi"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr
    image_line = next(line for line in plan.stdout.splitlines() if " image " in line)
    assert "will run" in image_line and "Crust's code for this step (steps/image.py)" in image_line, plan.stdout
    out = subprocess.run(
        [sys.executable, str(checkout / "build.py"), "--store", str(ROOT / ".crust"), "--output", str(output), "build", "wsgi"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "output unchanged" in out.stderr, out.stderr[-3000:]
    manifest = json.loads((output / "wsgi" / "manifest.json").read_text())
    reused = {s["kind"]: s["reused"] for s in manifest["steps"]}
    assert reused["image"] is False and reused["convert"] is True
    digests = {a["format"]: a["sha256"] for a in manifest["artifacts"]}
    assert digests["qcow2"] == {a["format"]: a["sha256"] for a in first["artifacts"]}["qcow2"]
