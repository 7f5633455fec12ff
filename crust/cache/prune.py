"""`cache prune --keep N`: remove the shared cache's entries that no recent build uses.

Builders that push also push each build's record (its steps) under builds/APPLIANCE/. An entry
is kept when one of the last N records of any appliance names it (every appliance folder in the
cache: other branches build appliances this checkout does not define), or when it is younger
than the grace period (a build that pushed it has not written its record yet). An entry is
removed manifest first (it stops being published), then its blobs. Blobs no manifest names and
multipart uploads never finished (killed pushes) go when older than the grace period, as do the
records past the last N.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass

from crust.cache import s3
from crust.cache.remote import S3Cache

GRACE = dt.timedelta(days=1)


@dataclass(frozen=True)
class PruneReport:
    removed: tuple[str, ...]  # KIND-ID of the entries removed
    freed_bytes: int
    kept: int
    kept_bytes: int
    leftovers: int  # unnamed blobs, unfinished uploads and old records removed


def prune(cache: S3Cache, keep: int, dry_run: bool = False, now: dt.datetime | None = None, grace: dt.timedelta = GRACE) -> PruneReport:
    client, bucket, key_of = cache.client, cache.config.bucket, cache.config.key_of
    cutoff = (now or dt.datetime.now(dt.UTC)) - grace
    used, stale_records = referenced(cache, keep)
    markers = {item.key.rsplit("/", 1)[-1].removesuffix(".json"): item for item in s3.list_objects(client, bucket, key_of("steps/"))}
    blobs: dict[str, list[s3.Listed]] = defaultdict(list)
    for item in s3.list_objects(client, bucket, key_of("blobs/")):
        blobs[item.key.rsplit("/", 2)[-2]].append(item)
    removed: list[str] = []
    freed = kept = kept_bytes = leftovers = 0
    for name, marker in sorted(markers.items()):
        size = sum(b.size for b in blobs.get(name, []))
        if name in used or marker.modified > cutoff:
            kept += 1
            kept_bytes += size
            continue
        removed.append(name)
        freed += size
        if not dry_run:
            s3.delete(client, bucket, marker.key)  # unpublished first: never a manifest without its blob
            for blob in blobs.get(name, []):
                s3.delete(client, bucket, blob.key)
    orphans = [b for name, items in blobs.items() if name not in markers for b in items if b.modified < cutoff]
    uploads = [u for u in s3.unfinished_uploads(client, bucket, key_of("blobs/")) if u[2] < cutoff]
    leftovers = len(orphans) + len(uploads) + len(stale_records)
    freed += sum(b.size for b in orphans)
    if not dry_run:
        for blob in orphans:
            s3.delete(client, bucket, blob.key)
        for key, upload_id, _ in uploads:
            s3.abort_upload(client, bucket, key, upload_id)
        for record in stale_records:
            s3.delete(client, bucket, record)
    return PruneReport(tuple(removed), freed, kept, kept_bytes, leftovers)


def referenced(cache: S3Cache, keep: int) -> tuple[set[str], list[str]]:
    """KIND-ID of the entries the last `keep` records of each appliance name, and the keys of
    the older records (nothing needs them)."""
    client, bucket = cache.client, cache.config.bucket
    by_appliance: dict[str, list[str]] = defaultdict(list)
    for item in s3.list_objects(client, bucket, cache.config.key_of("builds/")):
        by_appliance[item.key.rsplit("/", 2)[-2]].append(item.key)
    used: set[str] = set()
    stale: list[str] = []
    for keys in by_appliance.values():
        keys.sort()
        recent = keys[-keep:] if keep > 0 else []
        stale += [k for k in keys if k not in recent]
        for key in recent:
            raw = s3.get_small(client, bucket, key)
            try:
                record = json.loads(raw or b"{}")
                used.update(f"{s['kind']}-{s['id']}" for s in record.get("steps", []))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # an unreadable record keeps nothing
    return used, stale
