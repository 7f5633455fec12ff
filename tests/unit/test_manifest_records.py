"""The typed manifest: a rebuild keeps the records (cloud uploads, smoke tests) made for the same
images, and only for them; unknown keys survive a rewrite; artifacts are found by format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crust.build.manifest import Artifact, Manifest
from crust.build.publish import carry_records
from crust.errors import UserError

CLOUD = {"aws": {"eu-west-1": {"ami": "ami-1", "snapshot": "snap-1", "image_digest": "a" * 64}}}


def manifest(raw: str, qcow2: str = "q" * 64) -> Manifest:
    return Manifest(
        "demo",
        artifacts=[Artifact("raw", Path("/b/demo/demo.raw"), raw, 10, 8), Artifact("qcow2", Path("/b/demo/demo.qcow2"), qcow2, 5, 5)],
    )


def test_same_image_keeps_the_uploads(tmp_path: Path) -> None:
    old = manifest("a" * 64)
    old.cloud = CLOUD
    old.save(tmp_path / "manifest.json")
    new = manifest("a" * 64)
    carry_records(tmp_path / "manifest.json", new)
    assert new.cloud == CLOUD
    assert new.cloud_record("aws", "eu-west-1") == CLOUD["aws"]["eu-west-1"]
    assert new.cloud_record("aws", "us-east-1") is None


def test_another_image_drops_them(tmp_path: Path) -> None:
    old = manifest("a" * 64)
    old.cloud = CLOUD
    old.save(tmp_path / "manifest.json")
    new = manifest("b" * 64)
    carry_records(tmp_path / "manifest.json", new)
    assert new.cloud == {} and "cloud" not in new.to_json()


def test_test_records_follow_the_tested_image(tmp_path: Path) -> None:
    old = manifest("a" * 64, qcow2="q" * 64)
    old.record_test({"format": "qcow2", "image_sha256": "q" * 64, "passed": True})
    old.save(tmp_path / "manifest.json")
    same = manifest("b" * 64, qcow2="q" * 64)  # the raw changed, not the tested qcow2 (hypothetical)
    carry_records(tmp_path / "manifest.json", same)
    assert same.tests == {"format": "qcow2", "image_sha256": "q" * 64, "passed": True}
    other = manifest("a" * 64, qcow2="r" * 64)
    carry_records(tmp_path / "manifest.json", other)
    assert other.tests is None and "tests" not in other.to_json()


def test_no_or_broken_previous_manifest(tmp_path: Path) -> None:
    new = manifest("a" * 64)
    carry_records(tmp_path / "missing.json", new)
    (tmp_path / "broken.json").write_text("{")
    carry_records(tmp_path / "broken.json", new)
    assert new.cloud == {} and new.tests is None


def test_round_trip_keeps_unknown_keys_and_finds_artifacts(tmp_path: Path) -> None:
    data = {
        "appliance": "demo",
        "version": "1.0",
        "artifacts": [{"format": "raw", "path": "/x/demo.raw", "sha256": "a" * 64, "size": 3, "allocated": 4096}],
        "packages": {"nginx": "1.26"},
        "future_key": {"kept": True},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    read = Manifest.read(tmp_path / "manifest.json")
    assert read.raw_digest == "a" * 64 and read.artifact("qcow2") is None
    assert read.artifact("raw") == Artifact("raw", Path("/x/demo.raw"), "a" * 64, 3, 4096)
    read.save()
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert again["future_key"] == {"kept": True} and again["packages"] == {"nginx": "1.26"}
    assert again["artifacts"] == data["artifacts"]


def test_not_built_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"demo is not built .* \(fix: run ./build.py build demo \(or build --test\)\)"):
        Manifest.load(tmp_path, "demo", verb="test")
