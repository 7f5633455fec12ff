#!/usr/bin/env python3
"""Crust's shared-cache benchmark: two builders with two stores on this machine sharing one
bucket of a moto_server on loopback (started and stopped here). Side by side in one run:

  cold build      builder A: `build wsgi` with an empty store and no cache (every step runs)
  seed push       builder A again with --cache and its signing key: every step is up to date
                  here and missing there, so each is packed, compressed and pushed
  builder B       `build wsgi` with an empty store, --cache and --trust only (a pull request):
                  fetches what it needs and runs no step (median of --runs, store emptied
                  before each); its time as a share of the cold build's is the target (< 10 %)
  cache bytes     the bucket's bytes per step kind (compressed blobs), against the images'
  verify cost     Ed25519 sign and verify of a manifest; per fetched entry, the sha256 of its
                  blob (what a fetch checks), and what re-hashing its unpacked files would add

    .venv/bin/python bench/cache.py [--appliance wsgi] [--runs 3]

Needs root (the builds) and moto[server] in the venv. Loopback numbers measure Crust's side
(packing, compressing, hashing, unpacking), not a network: on a real one, B's time grows
with the entry bytes shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from builders import build, fake_s3, prepare

MB = 1_000_000


def step_lines(stderr: str, word: str) -> list[str]:
    return [line for line in stderr.splitlines() if word in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appliance", default="wsgi")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    prepare()
    from crust.build.equivalence import digest_output
    from crust.build.store import remove_tree
    from crust.cache import s3
    from crust.cache.config import CacheConfig
    from crust.cache.keys import generate_key, load_signer, load_trusted, verify
    from crust.cache.remote import canonical, sha256_file

    with tempfile.TemporaryDirectory(prefix="crust-bench-cache-") as tmp:
        work = Path(tmp)
        generate_key(work / "ci.key")
        with fake_s3(work) as url:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            config = CacheConfig(bucket, "crust", url, None, ())
            client = s3.make_client(config)
            client.create_bucket(Bucket=bucket)
            where = ["--cache", f"s3://{bucket}/crust", "--cache-endpoint", url]

            cold, _ = build(work / "a", work / "out-a", [args.appliance])
            seed, seeded = build(work / "a", work / "out-a", [args.appliance], *where, "--cache-key", str(work / "ci.key"))
            pushed = step_lines(seeded, "pushed to the shared cache")
            times: list[float] = []
            for _ in range(args.runs):
                remove_tree(work / "b")
                took, said = build(work / "b", work / "out-b", [args.appliance], *where, "--trust", str(work / "ci.key.pub"))
                ran = step_lines(said, " built in ")
                if ran:
                    sys.exit("bench: builder B ran steps:\n" + "\n".join(ran))
                times.append(took)
            fetched = step_lines(said, "fetched from the shared cache")
            skipped = step_lines(said, "not fetched")
            a = json.loads((work / "out-a" / args.appliance / "manifest.json").read_text())
            b = json.loads((work / "out-b" / args.appliance / "manifest.json").read_text())
            same = [x["sha256"] for x in a["artifacts"]] == [x["sha256"] for x in b["artifacts"]]

            blobs: dict[str, int] = {}
            for item in s3.list_objects(client, bucket, "crust/blobs/"):
                kind = item.key.split("/")[2].split("-", 1)[0]
                blobs[kind] = blobs.get(kind, 0) + item.size
            images = sum(int(x["allocated"]) for x in a["artifacts"])

            signer, trusted = load_signer(work / "ci.key"), load_trusted(work / "ci.key.pub")
            manifest = {"kind": "tree", "step_id": "ab" * 32, "sha256": "cd" * 32, "size": 1}
            started = time.perf_counter()
            for _ in range(200):
                signature = signer.sign(canonical(manifest))
            sign_us = (time.perf_counter() - started) / 200 * 1e6
            started = time.perf_counter()
            for _ in range(200):
                verify({trusted.key_id: trusted}, trusted.key_id, signature, canonical(manifest))
            verify_us = (time.perf_counter() - started) / 200 * 1e6
            checks: list[tuple[str, float, float, int]] = []
            for entry in sorted((work / "b" / "steps").iterdir()):
                blob = work / "blob"
                client.download_file(
                    bucket,
                    json.loads(client.get_object(Bucket=bucket, Key=f"crust/steps/{entry.name}.json")["Body"].read())["manifest"]["blob"],
                    str(blob),
                )
                started = time.perf_counter()
                sha256_file(blob)
                blob_s = time.perf_counter() - started
                started = time.perf_counter()
                digest_output(entry)
                tree_s = time.perf_counter() - started
                checks.append((entry.name.split("-", 1)[0], blob_s, tree_s, blob.stat().st_size))
                blob.unlink()

    median = statistics.median(times)
    print(f"shared cache, {args.appliance}, moto_server S3 on loopback, {os.cpu_count()} cores")
    print(f"  cold build (builder A, empty store, no cache)   {cold:8.1f} s")
    print(f"  seed push (A, every step up to date, pushed)    {seed:8.1f} s   {len(pushed)} entries")
    print(
        f"  builder B (empty store, fetch only), median     {median:8.1f} s   {median / cold:.1%} of the cold build; runs {', '.join(f'{t:.1f}' for t in times)}"
    )
    print(f"    fetched {len(fetched)} entries, {len(skipped)} not needed (record only), no step ran; artifacts identical to A's: {same}")
    print(f"  cache bytes: {sum(blobs.values()) / MB:.0f} MB for images of {images / MB:.0f} MB allocated")
    for kind, size in sorted(blobs.items()):
        print(f"    {kind:9s}{size / MB:8.0f} MB")
    print(f"  Ed25519: sign {sign_us:.0f} us, verify {verify_us:.0f} us per manifest")
    for kind, blob_s, tree_s, size in checks:
        print(f"  verify {kind:9s} blob sha256 {blob_s:5.2f} s ({size / MB:.0f} MB)   (re-hashing its unpacked files, not done: {tree_s:5.2f} s)")


if __name__ == "__main__":
    main()
