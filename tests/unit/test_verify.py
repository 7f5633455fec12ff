"""verify's comparisons: which artifact differs, and the first file that does inside two trees."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from crust.build.manifest import Artifact, Manifest
from crust.build.verify import Difference, check_published, compare, first_difference
from tests.conftest import ROOT


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return root


BASE = {"etc/hostname": "a\n", "etc/motd": "hello\n", "usr/bin/tool": "#!/bin/sh\n"}


def test_identical_trees_have_no_difference(tmp_path: Path) -> None:
    assert first_difference(tree(tmp_path / "a", BASE), tree(tmp_path / "b", BASE)) is None


def test_the_first_differing_file_in_path_order(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", BASE)
    b = tree(tmp_path / "b", {**BASE, "etc/motd": "hello at 12:00\n", "usr/bin/tool": "#!/bin/bash\n"})
    assert first_difference(a, b) == Difference("/etc/motd", "content")


def test_mode_owner_link_time_and_presence(tmp_path: Path) -> None:
    a, b = tree(tmp_path / "a", BASE), tree(tmp_path / "b", BASE)
    os.chmod(b / "etc/hostname", 0o600)
    assert first_difference(a, b) == Difference("/etc/hostname", f"mode {(a / 'etc/hostname').stat().st_mode & 0o7777:04o} -> 0600")
    os.chmod(b / "etc/hostname", (a / "etc/hostname").stat().st_mode & 0o7777)
    os.utime(b / "etc/motd", (1_800_000_000, 1_800_000_000))
    assert first_difference(a, b) == Difference("/etc/motd", "modification time 1700000000 -> 1800000000")
    os.utime(b / "etc/motd", (1_700_000_000, 1_700_000_000))
    (a / "etc/link").symlink_to("hostname")
    (b / "etc/link").symlink_to("motd")
    assert first_difference(a, b) == Difference("/etc/link", "link target")
    (b / "etc/link").unlink()
    assert first_difference(a, b) == Difference("/etc/link", "only in the original")


def test_compare_covers_the_originals_artifacts_the_uki_and_the_sbom(tmp_path: Path) -> None:
    one = Manifest("wsgi", artifacts=[Artifact("raw", tmp_path / "a.raw", "1"), Artifact("qcow2", tmp_path / "a.qcow2", "2")])
    one.uki, one.sbom = {"sha256": "u"}, {"sha256": "s"}
    two = Manifest(
        "wsgi",
        artifacts=[Artifact("raw", tmp_path / "b.raw", "1"), Artifact("qcow2", tmp_path / "b.qcow2", "3"), Artifact("vhd", tmp_path / "b.vhd", "4")],
    )
    two.uki, two.sbom = {"sha256": "u"}, {"sha256": "s"}
    rows = compare(one, two)
    assert [(r.artifact, r.same) for r in rows] == [("raw", True), ("qcow2", False), ("sbom", True), ("uki", True)]


def test_check_published_sees_a_changed_file(tmp_path: Path) -> None:
    from crust.digest import digest_file

    image = tmp_path / "wsgi.raw"
    image.write_bytes(b"disk")
    manifest = Manifest("wsgi", artifacts=[Artifact("raw", image, digest_file(image))])
    assert [r.same for r in check_published(manifest)] == [True]
    image.write_bytes(b"disk, edited")
    assert [r.same for r in check_published(manifest)] == [False]


def test_a_build_of_other_inputs_is_refused_before_any_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify --rebuild compares this checkout's inputs: a published build of other ones (an
    older checkout, say) is refused at once (exit 2) rather than reported as a difference."""
    from crust.distros import debian
    from tests.conftest import need_root
    from tests.unit.badinput import run_cli

    need_root()  # verify --rebuild needs root: a failure, not a skip, under CI=true
    fixed = dataclasses.replace(debian.BACKEND, mirror_state=lambda distro, state_dir, refresh: {"trixie": "aa", "trixie-security": "bb"})
    monkeypatch.setattr(debian, "BACKEND", fixed)
    output, store = tmp_path / "build", tmp_path / "store"
    (output / "wsgi").mkdir(parents=True)
    Manifest(appliance="wsgi", build_id="000000000000").save(output / "wsgi" / "manifest.json")
    outcome = run_cli(["--store", str(store), "--output", str(output), "verify", "wsgi", "--rebuild"])
    assert outcome.status == 2, outcome
    assert "the published build 000000000000 is not what this checkout builds" in outcome.stderr
    assert "./build.py build wsgi first" in outcome.stderr
    assert not (store / "tmp").exists() or not any((store / "tmp").iterdir())  # nothing was rebuilt


def test_rebuild_store_gets_the_mirror_state_and_the_early_cut_off_map(tmp_path: Path) -> None:
    """The rebuild's empty store plans as this one does: same mirror state, same map of which
    output digest is which canonical step (else a used store's image and its rebuild differ by
    BUILD_ID, the tree step's id, in /etc/crust-release)."""
    from crust.build.equivalence import canonical_id, record_output
    from crust.build.verify import prepare_rebuild

    state = tmp_path / "store" / "state"
    state.mkdir(parents=True)
    (state / "mirror-debian-13.json").write_text("{}\n")
    older, today, output = "aa" * 32, "bb" * 32, "cc" * 32
    record_output(state, "base", older, output)
    assert record_output(state, "base", today, output) == older
    (state / "facts").mkdir()
    (state / "facts" / "not-copied").write_text("x")

    checkout = prepare_rebuild(ROOT, tmp_path / "work", state)

    rebuilt = tmp_path / "work" / "store" / "state"
    assert (checkout / "build.py").is_file()
    assert sorted(p.name for p in rebuilt.iterdir()) == ["equivalent", "mirror-debian-13.json", "outputs"]
    assert canonical_id(rebuilt, "base", today) == older
    assert record_output(rebuilt, "base", today, output) == older  # a rebuilt base with the same output plans from the older id
    assert record_output(rebuilt, "base", "dd" * 32, "ee" * 32) == "dd" * 32  # one whose output differs is its own
