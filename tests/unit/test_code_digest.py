"""A step's code digest is derived from what the step runs: no module it uses is left out."""

from __future__ import annotations

import dataclasses
import modulefinder
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import crust
from crust.build import code
from crust.build.explain import explain_change
from crust.build.plan import plan_appliance
from crust.define.project import Project
from crust.distros import debian
from crust.steps import KINDS

PACKAGE = Path(crust.__file__).parent


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = dataclasses.replace(debian.BACKEND, mirror_state=lambda distro, state_dir, refresh: {"trixie": "aa", "trixie-security": "bb"})
    monkeypatch.setattr(debian, "BACKEND", fixed)


@pytest.fixture
def package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Crust's code as the digests see it, in a copy the test may edit."""
    copy = tmp_path / "crust-copy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code, "PACKAGE_DIR", copy)
    code.modules_run.cache_clear()
    code.digest_code.cache_clear()
    yield copy
    code.modules_run.cache_clear()
    code.digest_code.cache_clear()


def ids(project: Path, tmp_path: Path) -> dict[str, str]:
    code.digest_code.cache_clear()
    code.modules_run.cache_clear()
    return {
        s.kind: s.id for s in plan_appliance(Project.at(project), "wsgi", tmp_path / "state").steps if s.kind != "convert" or s.name == "wsgi.qcow2"
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_module_python_finds_is_in_the_id(kind: str) -> None:
    """The standard library's modulefinder (bytecode, not our AST walk) finds no Crust module
    the kind's module imports that its code digest leaves out."""
    finder = modulefinder.ModuleFinder(path=[str(PACKAGE.parent), *sys.path])
    finder.run_script(str(PACKAGE / "steps" / f"{kind}.py"))
    found = {m for m in finder.modules if m == "crust" or m.startswith("crust.")}
    derived = set(code.modules_run((f"crust.steps.{kind}", *KINDS[kind].code)))
    assert len(found) > 10
    assert sorted(found - derived) == []


def test_editing_a_kickstart_default_changes_the_tree_id(project: Path, tmp_path: Path, package_copy: Path, offline: None) -> None:
    first = ids(project, tmp_path)
    policy = package_copy / "define/kickstart/policy.py"
    text = policy.read_text(encoding="utf-8")
    assert 'return "Etc/UTC"' in text  # the time zone of a kickstart that names none
    policy.write_text(text.replace('return "Etc/UTC"', 'return "Europe/Paris"'), encoding="utf-8")
    second = ids(project, tmp_path)
    for kind in ("tree", "image"):
        assert first[kind] != second[kind], kind
    plan = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    tree = plan.step("tree")
    old = {"inputs": {**tree.inputs, "code": "old"}, "explain": {**tree.explain, "code:define/kickstart/policy.py": "old"}}
    assert explain_change(tree, old) == "Crust's code for this step (define/kickstart/policy.py)"


def test_editing_a_format_changes_only_its_conversion(project: Path, tmp_path: Path, package_copy: Path, offline: None) -> None:
    plan = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    before = {s.name: s.id for s in plan.steps}
    vhd = package_copy / "formats/vhd.py"
    vhd.write_text(vhd.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    code.digest_code.cache_clear()
    code.modules_run.cache_clear()
    after = {s.name: s.id for s in plan_appliance(Project.at(project), "wsgi", tmp_path / "state").steps}
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == (["wsgi.vhd"] if "wsgi.vhd" in before else [])


def test_code_a_step_does_not_run_changes_nothing(project: Path, tmp_path: Path, package_copy: Path, offline: None) -> None:
    first = ids(project, tmp_path)
    for rel in ("boot/smoke.py", "cli/build.py", "cloud/aws/launch.py"):
        assert not any(rel in code.code_files((f"crust.steps.{k}",)) for k in KINDS), rel
        path = package_copy / rel
        path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert ids(project, tmp_path) == first


def test_a_new_tool_version_rebuilds_and_plan_names_it(project: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    first = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    assert first.step("image").inputs["tool:e2fsprogs"] not in ("", "unknown")
    real = code.tool_versions

    def upgraded(tools: tuple[str, ...]) -> dict[str, str]:
        return {k: ("9.9" if k == "tool:e2fsprogs" else v) for k, v in real(tools).items()}

    monkeypatch.setattr("crust.build.plan.tool_versions", upgraded)
    second = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    assert first.step("tree").id == second.step("tree").id
    assert first.step("image").id != second.step("image").id
    previous = {"inputs": dict(first.step("image").inputs), "explain": dict(first.step("image").explain)}
    reason = explain_change(second.step("image"), previous)
    assert reason == f"host tool e2fsprogs {first.step('image').inputs['tool:e2fsprogs']} -> 9.9"


def test_a_module_a_step_runs_by_file_name_is_in_the_id() -> None:
    """The tree step runs trust/secretfs.py as a script (named in a string, never imported)."""
    assert "crust.trust.secretfs" in code.modules_run(("crust.steps.tree",))
    assert not any(m.endswith(".__init__") for m in code.modules_run(("crust.steps.tree",)))


def test_crust_imports_its_own_modules_by_name_only_in_the_registry() -> None:
    """A module imported by a computed name is invisible to both finders: only crust/registry.py
    does it (the kinds declare the members they run, StepKind.code / format_code). ansible_boot.py
    runs in the tree's own Python and imports Ansible's module_utils there, never Crust's."""
    dynamic = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "import_module(" in p.read_text(encoding="utf-8") or "__import__(" in p.read_text(encoding="utf-8")
    )
    assert dynamic == ["registry.py", "tree/ansible_boot.py"]


def test_module_scans_are_kept_between_runs_and_an_edited_module_is_scanned_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan cache (crust/build/code.py) saves parsing Crust's modules at every plan; a
    module's entry is its name and source, so an edit is never served a stale scan."""
    from crust.build import code as scan

    monkeypatch.setattr(scan, "SCAN_CACHE", tmp_path / "__pycache__" / "scan.json")
    monkeypatch.setattr(scan._Scans, "entries", None)
    monkeypatch.setattr(scan._Scans, "added", False)
    source = "import crust.a\nfrom . import b\nHELPER = 'helper.py'\n"
    imports, strings = scan.scanned("crust.x.y", "crust.x", source, "y.py")
    assert (sorted(imports), strings) == (["crust.a", "crust.x", "crust.x.b"], ["helper.py"])
    scan.save_scans()
    assert (tmp_path / "__pycache__" / "scan.json").is_file()
    monkeypatch.setattr(scan._Scans, "entries", None)  # a new run: loaded from the file

    def no_parse(*_: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(scan.ast, "parse", no_parse)
    assert scan.scanned("crust.x.y", "crust.x", source, "y.py") == (imports, strings)
    with pytest.raises(AssertionError, match="parsed again"):
        scan.scanned("crust.x.y", "crust.x", source + "import crust.c\n", "y.py")
