"""A rebuild keeps the cloud uploads recorded for the same raw image, and only for it."""

from __future__ import annotations

import json
from pathlib import Path

from crust.build.executor import keep_cloud_records

CLOUD = {"aws": {"eu-west-1": {"ami": "ami-1", "snapshot": "snap-1"}}}


def manifest(digest: str) -> dict[str, object]:
    return {"artifacts": [{"format": "raw", "sha256": digest}, {"format": "qcow2", "sha256": "q"}]}


def test_same_image_keeps_the_uploads(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**manifest("a" * 64), "cloud": CLOUD}))
    new = manifest("a" * 64)
    keep_cloud_records(path, new)
    assert new["cloud"] == CLOUD


def test_another_image_drops_them(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**manifest("a" * 64), "cloud": CLOUD}))
    new = manifest("b" * 64)
    keep_cloud_records(path, new)
    assert "cloud" not in new


def test_no_or_broken_previous_manifest(tmp_path: Path) -> None:
    new = manifest("a" * 64)
    keep_cloud_records(tmp_path / "missing.json", new)
    (tmp_path / "broken.json").write_text("{")
    keep_cloud_records(tmp_path / "broken.json", new)
    assert "cloud" not in new
