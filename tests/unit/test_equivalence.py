"""Early cut-off: output digests, the equivalence map, and plans made from it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from crust.build.equivalence import canonical_id, digest_output, record_output
from crust.build.plan import plan_appliance
from crust.define.project import Project
from crust.distros import debian

A, B, C = "a" * 64, "b" * 64, "c" * 64


def entry(root: Path) -> Path:
    (root / "tree/etc").mkdir(parents=True)
    (root / "tree/etc/hostname").write_text("x\n")
    (root / "tree/etc/link").symlink_to("hostname")
    (root / "step.json").write_text('{"duration_s": 1}')
    for path in (root / "tree/etc/hostname", root / "tree/etc", root / "tree"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return root


def edit_content(root: Path) -> None:
    (root / "tree/etc/hostname").write_text("y\n")


def edit_mode(root: Path) -> None:
    os.chmod(root / "tree/etc/hostname", 0o600)


def edit_time(root: Path) -> None:
    os.utime(root / "tree/etc/hostname", (1, 1))


def edit_link(root: Path) -> None:
    (root / "tree/etc/link").unlink()
    (root / "tree/etc/link").symlink_to("other")


def test_the_output_digest_sees_what_the_step_made_not_its_record(tmp_path: Path) -> None:
    one, two = entry(tmp_path / "one"), entry(tmp_path / "two")
    assert digest_output(one) == digest_output(two)
    (two / "step.json").write_text('{"duration_s": 2}')
    assert digest_output(one) == digest_output(two)
    for edit in (edit_content, edit_mode, edit_time, edit_link):
        other = entry(tmp_path / edit.__name__)
        edit(other)
        assert digest_output(one) != digest_output(other), edit.__name__


def test_a_file_the_step_hashed_is_not_read_again_and_digests_the_same(tmp_path: Path) -> None:
    """The executor hands digest_output the sha256 a step recorded of its files (disk.raw): the
    digest is the same as reading them, and a digest given is what counts (it is not read)."""
    from crust.build.executor import hashed_files
    from crust.digest import digest_file

    one = entry(tmp_path / "one")
    disk = one / "disk.raw"
    disk.write_bytes(b"\0" * 4096 + b"data")
    facts = {"disk.raw": {"sha256": digest_file(disk), "size": 4100}, "phases_s": []}
    known = hashed_files(one, facts)
    assert known == {"disk.raw": digest_file(disk)}
    assert digest_output(one, known) == digest_output(one)
    assert digest_output(one, {"disk.raw": "00" * 32}) != digest_output(one)
    assert hashed_files(one, {"disk.raw": {"sha256": "00" * 32, "size": 1}}) == {}  # another size: read it


def test_the_first_step_with_an_output_is_canonical(tmp_path: Path) -> None:
    assert record_output(tmp_path, "tree", A, "out1") == A
    assert record_output(tmp_path, "tree", A, "out1") == A
    assert record_output(tmp_path, "tree", B, "out1") == A
    assert canonical_id(tmp_path, "tree", B) == A and canonical_id(tmp_path, "tree", A) == A
    assert record_output(tmp_path, "tree", C, "out2") == C
    assert record_output(tmp_path, "image", B, "out1") == B  # per kind
    (tmp_path / "equivalent" / f"tree-{C}").write_text("not an id")
    assert canonical_id(tmp_path, "tree", C) == C


def mirror(monkeypatch: pytest.MonkeyPatch, digest: str) -> None:
    fixed = dataclasses.replace(debian.BACKEND, mirror_state=lambda distro, state_dir, refresh: {"trixie": f"{digest}@1762595483"})
    monkeypatch.setattr(debian, "BACKEND", fixed)


def test_after_a_base_with_the_same_output_everything_is_planned_as_before(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new mirror state reruns the base; when it comes out the same, the rest keeps its ids."""
    state = tmp_path / "state"
    mirror(monkeypatch, "aa")
    first = plan_appliance(Project.at(project), "wsgi", state)
    mirror(monkeypatch, "bb")
    second = plan_appliance(Project.at(project), "wsgi", state)
    assert second.step("base").id != first.step("base").id
    assert second.step("packages").id != first.step("packages").id
    record_output(state, "base", first.step("base").id, "same tree")
    record_output(state, "base", second.step("base").id, "same tree")
    third = plan_appliance(Project.at(project), "wsgi", state)
    assert third.step("base").id == second.step("base").id
    assert [s.id for s in third.steps[1:]] == [s.id for s in first.steps[1:]]
    assert first.epoch == 1762595483
