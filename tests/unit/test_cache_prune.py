"""`cache prune --keep N` against moto_server: entries the last N build records of any appliance
name are kept, young entries too (grace period); the others go manifest first, with their
blobs; blobs no manifest names, unfinished uploads and older records go when old; --dry-run
removes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from crust.build.store import Store
from crust.cache.prune import prune
from crust.cache.remote import S3Cache, open_cache
from tests.unit.test_cache_remote import Said, bucket, built_entry, config, keys, moto_url, objects, reader  # noqa: F401

ONE, TWO, THREE = "11" * 32, "22" * 32, "33" * 32
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)


def record(*ids: str) -> dict[str, object]:
    return {"build_id": "b", "finished": "2026-11-30T00:00:00+00:00", "steps": [{"kind": "tree", "name": "wsgi", "id": i} for i in ids]}


@pytest.fixture
def cache(moto_url: str, bucket: str, keys: dict[str, Path], tmp_path: Path) -> S3Cache:  # noqa: F811
    cache = open_cache(config(moto_url, bucket, keys["ci"]))
    for step_id in (ONE, TWO, THREE):
        cache.push(built_entry(Store(tmp_path / step_id[:2]), step_id), Said())
    return cache


def test_prune_keeps_what_recent_builds_use(cache: S3Cache, keys: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    cache.push_record("wsgi", record(ONE, TWO))  # older
    cache.push_record("wsgi", record(ONE))
    cache.push_record("moksha", record(THREE))  # another appliance's (maybe another branch's)
    orphan = cache.config.key_of(f"blobs/tree-{'44' * 32}/killed.tar.zst")
    cache.client.put_object(Bucket=cache.config.bucket, Key=orphan, Body=b"an upload whose manifest never came")
    cache.client.create_multipart_upload(Bucket=cache.config.bucket, Key=cache.config.key_of(f"blobs/tree-{'55' * 32}/x.tar.zst"))
    before = objects(cache)

    dry = prune(cache, keep=1, dry_run=True, now=LATER)
    assert dry.removed == (f"tree-{TWO}",) and dry.kept == 2 and dry.leftovers == 3
    assert objects(cache) == before

    assert prune(cache, keep=1, now=LATER) == dry
    after = objects(cache)
    assert not any(TWO in key for key in after) and orphan not in after
    assert sum(key.startswith(cache.config.key_of("steps/")) for key in after) == 2
    assert sum(key.startswith(cache.config.key_of("builds/")) for key in after) == 2
    assert cache.client.list_multipart_uploads(Bucket=cache.config.bucket).get("Uploads", []) == []
    assert reader(cache.config.endpoint or "", cache.config.bucket, keys).fetch(Store(tmp_path / "pr"), "tree", ONE, Said()) is not None


def test_young_entries_stay(cache: S3Cache) -> None:
    report = prune(cache, keep=0)
    assert report.removed == () and report.kept == 3


def test_read_only_builder_pushes_no_record(moto_url: str, bucket: str, keys: dict[str, Path]) -> None:  # noqa: F811
    cache = reader(moto_url, bucket, keys)
    cache.push_record("wsgi", record(ONE))
    assert objects(cache) == []


def test_prune_command(cache: S3Cache, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crust.cli import main

    argv = ["cache", "prune", "--keep", "0", "--dry-run", "--cache", cache.config.url, "--cache-endpoint", cache.config.endpoint or ""]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("would remove 0 entries and 0 leftovers, would free 0 B; kept 3 entries (") and out.endswith(f") in {cache.config.url}\n")


def test_clean_knows_the_shared_cache(cache: S3Cache, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """clean leaves the shared cache alone and says so; clean --remote prunes it too."""
    from crust.cli import main

    where = ["--cache", cache.config.url, "--cache-endpoint", cache.config.endpoint or ""]
    store = ["--store", str(tmp_path / "store")]
    assert main([*store, "clean", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"shared cache {cache.config.url}: left as it is (./build.py clean --remote or ./build.py cache prune --keep N prunes it)"
    assert len(objects(cache)) == 6
    assert main([*store, "clean", "--remote", "--keep", "0", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("removed 0 entries and 0 leftovers, freed 0 B; kept 3 entries (")  # a day's grace for new entries
    capsys.readouterr()
    assert main([*store, "clean", "--remote", "--cache", "none"]) == 2
    assert "clean --remote: no shared cache is set" in capsys.readouterr().err
