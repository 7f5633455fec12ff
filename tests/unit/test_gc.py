"""clean: entries the last N builds use stay, the rest go (with their logs)."""

from __future__ import annotations

from pathlib import Path

from crust.build.gc import clean, human
from crust.build.store import Store


def entry(store: Store, name: str, size: int = 4096) -> None:
    kind, step_id = name.split("-", 1)
    with store.building(kind, step_id) as tmp:
        (tmp / "data").write_bytes(b"x" * size)
        store.commit(kind, step_id, tmp, {})
    store.log_path(kind, step_id).write_text("log")


def record(store: Store, appliance: str, *names: str) -> None:
    store.record_build(appliance, {"steps": [{"kind": n.split("-", 1)[0], "id": n.split("-", 1)[1]} for n in names]})


def test_keep_last_build(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    for name in ("base-a", "tree-old", "tree-new", "image-old", "image-new", "tree-gone"):
        entry(store, name)
    record(store, "wsgi", "base-a", "tree-old", "image-old")
    record(store, "wsgi", "base-a", "tree-new", "image-new")
    record(store, "removed-appliance", "base-a", "tree-gone")
    report = clean(store, ["wsgi"], keep=1)
    assert sorted(report.removed) == ["image-old", "tree-gone", "tree-old"]
    assert report.freed_bytes >= 3 * 4096
    assert sorted(p.name for p in (store.root / "steps").iterdir()) == ["base-a", "image-new", "tree-new"]
    assert not (store.root / "logs" / "tree-old.log").exists()
    assert len(store.builds("wsgi")) == 1 and store.builds("removed-appliance") == []


def test_keep_two_and_dry_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    for name in ("tree-1", "tree-2", "tree-3"):
        entry(store, name)
    for name in ("tree-1", "tree-2", "tree-3"):
        record(store, "wsgi", name)
    report = clean(store, ["wsgi"], keep=2, dry_run=True)
    assert report.removed == ["tree-1"]
    assert (store.root / "steps" / "tree-1").exists()
    assert clean(store, ["wsgi"], keep=2).removed == ["tree-1"]
    assert not (store.root / "steps" / "tree-1").exists()


def test_human() -> None:
    assert human(512) == "512 B"
    assert human(3 * 1024**3) == "3.0 GiB"
