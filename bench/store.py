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
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1_000_000


def stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def build(store: Path, out: Path, names: list[str], share: bool) -> float:
    env = {**os.environ, "CRUST_SHARE_FILES": "1" if share else "0"}
    started = time.monotonic()
    argv = [sys.executable, str(ROOT / "build.py"), "--store", str(store), "--output", str(out), "build", *names]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - started


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
    signal.signal(signal.SIGTERM, stop)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the builds need it)")
    from crust.build.gc import disk_usage
    from crust.build.store import Store
    from crust.cache import s3
    from crust.cache.config import CacheConfig
    from crust.cache.keys import generate_key
    from crust.cache.remote import open_cache
    from tests.integration.aws_fakes import moto_server

    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        sys.exit(f"bench: {binary} not found (./setup.sh installs moto[server])")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDBENCHSTORE000000", AWS_SECRET_ACCESS_KEY="bench-secret-not-real", AWS_DEFAULT_REGION="us-east-1")
    with tempfile.TemporaryDirectory(prefix="crust-bench-store-") as tmp:
        work = Path(tmp)
        whole = build(work / "whole", work / "out-whole", names, share=False)
        shared = build(work / "shared", work / "out-shared", names, share=True)
        images = image_bytes(work / "out-shared", names)
        sizes = {label: disk_usage(work / label / "steps") for label in ("whole", "shared")}
        before, after = step_times(work / "whole"), step_times(work / "shared")
        generate_key(work / "ci.key")
        with moto_server(binary, work / "moto.log") as url:
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
