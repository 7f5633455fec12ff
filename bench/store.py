#!/usr/bin/env python3
"""Crust's store-size benchmark: what the local store and the shared cache hold against the
images they make, with and without entries that share unchanged files (crust/build/layers.py).
Side by side in one run, on this machine's host caches as they are:

  without sharing   the appliances built into an empty store with CRUST_SHARE_FILES=0 (every
                    entry a whole copy of its tree, as before)
  with sharing      the same into another empty store (the default)
  store bytes       allocated bytes under each store's steps/ (a hard link counted once),
                    against the images' (every published format's allocated bytes)
  cache bytes       the shared store pushed to a moto_server bucket: compressed blob bytes
  step times        each step's duration in both builds (the sharing is inside its step's time)

    .venv/bin/python bench/store.py [wsgi django ...]    (default: wsgi django pyramid)

Needs root and moto[server] in the venv; about 4 minutes an appliance.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from builders import build, fake_s3, prepare

MB = 1_000_000


def step_times(store: Path) -> dict[str, float]:
    times = {}
    for meta in (store / "steps").glob("*/step.json"):
        data = json.loads(meta.read_text())
        times[f"{data['kind']} {data['name']}"] = float(data["duration_s"])
    return times


def image_bytes(out: Path, names: list[str]) -> int:
    total = 0
    for name in names:
        manifest = json.loads((out / name / "manifest.json").read_text())
        total += sum(int(a["allocated"]) for a in manifest["artifacts"])
    return total


def main() -> None:
    names = sys.argv[1:] or ["wsgi", "django", "pyramid"]
    prepare()
    from crust.build.gc import disk_usage
    from crust.build.store import Store
    from crust.cache import s3
    from crust.cache.config import CacheConfig
    from crust.cache.keys import generate_key
    from crust.cache.remote import open_cache

    with tempfile.TemporaryDirectory(prefix="crust-bench-store-") as tmp:
        work = Path(tmp)
        whole, _ = build(work / "whole", work / "out-whole", names, env={"CRUST_SHARE_FILES": "0"})
        shared, _ = build(work / "shared", work / "out-shared", names)
        images = image_bytes(work / "out-shared", names)
        sizes = {label: disk_usage(work / label / "steps") for label in ("whole", "shared")}
        before, after = step_times(work / "whole"), step_times(work / "shared")
        generate_key(work / "ci.key")
        with fake_s3(work) as url:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            config = CacheConfig(bucket, "crust", url, work / "ci.key", ())
            cache = open_cache(config)
            cache.client.create_bucket(Bucket=bucket)
            store = Store(work / "shared")
            for entry_dir in sorted((work / "shared" / "steps").iterdir()):
                kind, step_id = entry_dir.name.split("-", 1)
                entry = store.get(kind, step_id)
                assert entry is not None
                cache.push(entry, lambda _: None)
            cached = sum(item.size for item in s3.list_objects(cache.client, bucket, "crust/blobs/"))

    print(f"store and cache size, {', '.join(names)}; {os.cpu_count()} cores")
    print(f"  images (every published format, allocated)      {images / MB:8.0f} MB")
    print(
        f"  store without sharing (whole trees)             {sizes['whole'] / MB:8.0f} MB   {sizes['whole'] / images:.2f} x the images   build {whole:.1f} s"
    )
    print(
        f"  store with sharing (unchanged files linked)     {sizes['shared'] / MB:8.0f} MB   {sizes['shared'] / images:.2f} x the images   build {shared:.1f} s"
    )
    print(f"  shared cache (zstd blobs)                       {cached / MB:8.0f} MB   {cached / images:.2f} x the images")
    print("  step                          without   with sharing")
    for step in sorted(before, key=lambda s: (s.split()[1], s)):
        print(f"    {step:28s}{before[step]:7.1f} s{after.get(step, float('nan')):9.1f} s")


if __name__ == "__main__":
    main()
