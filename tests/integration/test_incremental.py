"""Make-style rebuilds for real: plan explains, concurrent builds share the store safely."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import _built

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]
COPY = ("appliances", "kickstarts", "roles", "distributions", "crust", "build.py")
EDITED = "roles/wsgi/templates/nginx-site.conf.j2"


@pytest.fixture
def copy(tmp_path: Path, built: Built) -> Path:
    """A copy of the project that shares the repository's store (so the base is not rebuilt)."""
    built("wsgi")
    built("wsgi-debian12")
    work = tmp_path / "project"
    work.mkdir()
    for name in COPY:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    return work


def crust(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(work / "build.py"), "--store", str(ROOT / ".crust"), "--output", str(work / "out"), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, "CRUST_NO_VENV": "1"})


def plan_rows(work: Path, *names: str) -> dict[tuple[str, str], str]:
    out = crust(work, "plan", *(names or ("--all",)))
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        rows[(parts[0], parts[2] if parts[1] == "role" else parts[1])] = line  # a role step by its name (APPLIANCE+ROLE)
    return rows


def stale(work: Path) -> list[str]:
    """Plan rows of the appliances this test session built that would run again."""
    return [row for row in plan_rows(work, *sorted(_built)).values() if "up to date" not in row]


def test_plan_names_what_changed(copy: Path) -> None:
    # Every appliance built so far in this session is up to date: building one must not
    # write into the project's inputs (e.g. egg-info beside a role's Python sources).
    assert not (rows := stale(copy)), rows
    # Touching a file, or editing a file no step uses, reruns nothing.
    later = time.time() + 60
    for path in (copy / "roles/wsgi/tasks/main.yml", copy / "kickstarts/base.ks.j2"):
        os.utime(path, (later, later))
    (copy / "NOTES.md").write_text("not an input of any step")
    assert not (rows := stale(copy)), rows
    # Editing one role template reruns that role's step and the steps after it, of the
    # appliances that use the role; the shared base trees and the roles before it stay.
    (copy / EDITED).write_text((copy / EDITED).read_text() + "# edited\n")
    rows = plan_rows(copy)
    for name in ("wsgi", "wsgi-debian12"):
        for kind in ("base", "packages", f"{name}+common", f"{name}+cloud_init"):
            assert "up to date" in rows[(name, kind)], rows[(name, kind)]
        for kind in (f"{name}+wsgi", "tree", "image", "convert"):
            assert "will run" in rows[(name, kind)], rows[(name, kind)]
        assert "because: role file wsgi/templates/nginx-site.conf.j2 changed" in rows[(name, f"{name}+wsgi")]
        assert "role step" in rows[(name, "tree")].split("because:")[1]
        assert "tree step" in rows[(name, "image")].split("because:")[1]


def test_concurrent_builds_share_the_store(copy: Path) -> None:
    (copy / EDITED).write_text((copy / EDITED).read_text() + f"# concurrent {time.time_ns()}\n")  # new each run: the store is shared
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(crust(copy, "build", "wsgi"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    stderr = results[0].stderr + results[1].stderr
    assert stderr.count("tree     running") == 1, stderr  # built once
    assert "waiting: another build is making this step" in stderr or "built by another build" in stderr
    assert not list((ROOT / ".crust" / "tmp").glob("tree-*"))
    again = crust(copy, "build", "wsgi")
    assert again.returncode == 0 and again.stderr.count("up to date") == 8  # base, packages, 3 roles, tree, image, qcow2


def test_an_edit_of_the_first_role_reaches_the_image(copy: Path, built: Built) -> None:
    """Issue 21: a role step stores a layer, which means nothing without the view below it. An
    edit of the first role (common's identity file) leaves the later role steps' layers as
    they were; it must still make a new tree: each role step's output (hence early cut-off)
    covers the view its layer lies on, so the later steps are not taken for their old selves."""
    before = built("wsgi")
    template = copy / "roles/common/templates/crust-release.j2"
    marker = f"# an edit of the first role {time.time_ns()}"  # new each run: the store is shared
    template.write_text(template.read_text() + marker + "\n")
    out = crust(copy, "build", "wsgi")
    assert out.returncode == 0, out.stderr[-3000:]
    after = json.loads((copy / "out" / "wsgi" / "manifest.json").read_text())
    tree_id = next(s["id"] for s in after["steps"] if s["kind"] == "tree")
    assert tree_id != next(s["id"] for s in before["steps"] if s["kind"] == "tree")
    assert marker in (ROOT / ".crust" / "steps" / f"tree-{tree_id}" / "tree" / "etc/crust-release").read_text()
