#!/usr/bin/env python3
"""Crust's upload benchmark: the built WSGI raw image to AWS's EBS direct APIs, played by a
moto_server on loopback that this script starts (and stops). Prints:
  upload throughput     MB/s of allocated image data, StartSnapshot to CompleteSnapshot
                        (median of --runs cold uploads, moto wiped before each), as
                        `./build.py upload wsgi` runs it: the image is a hard link of a store
                        entry whose sha256 is recorded; and once with a copy of the store-less
                        image, which the upload hashes whole (holes included) as it reads
  blocks                written, skipped as zero (holes never read + zero blocks read)
  no-op re-upload       wall time of `build.py upload` when the AMI already exists
                        (median of --runs; the whole command, Python start-up included)

    .venv/bin/python bench/upload.py [--manifest build/wsgi/manifest.json] [--runs 3] [--workers 8]

It uses the project's store read-only (plus the upload's lock file in STORE/locks).

Needs a built image (./build.py build wsgi) and moto[server] in the venv; no AWS account.
Loopback numbers measure Crust's side (reading, hashing, HTTP), not a real network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        sys.exit(f"bench: {binary} not found (./setup.sh installs moto[server])")
    port = free_port()
    env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false", MOTO_ENABLE_AMI_VALIDATION="true")
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"bench: moto_server did not start: {log.read_text()[-2000:]}")


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()


def upload(work: Path, env: dict[str, str], workers: int, store: Path) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, str(ROOT / "build.py"), "--appliances", str(work / "appliances"), "--output", str(work / "out")]
    argv += ["--store", str(store), "upload", "wsgi", "--target", "aws", "--json", "--workers", str(workers)]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: upload failed ({out.returncode}):\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return elapsed, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "wsgi" / "manifest.json", help="manifest of the built image")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--workers", type=int, default=8, help="upload workers")
    parser.add_argument("--store", type=Path, default=Path(os.environ.get("CRUST_STORE", ROOT / ".crust")), help="the store that built the image")
    args = parser.parse_args()
    if not args.manifest.is_file():
        sys.exit(f"bench: {args.manifest} not found (./build.py build wsgi)")
    manifest = json.loads(args.manifest.read_text())
    raw = next(a for a in manifest["artifacts"] if a["format"] == "raw")
    image = args.manifest.parent / Path(raw["path"]).name

    work = Path(tempfile.mkdtemp(prefix="crust-bench-upload-"))
    proc, url = start_moto(work / "moto.log")
    try:
        (work / "appliances").mkdir()
        for name in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / name, work / "appliances" / name)
        (work / "targets.toml").write_text('[aws]\nregion = "eu-west-1"\n')
        (work / "out" / "wsgi").mkdir(parents=True)
        (work / "out" / "wsgi" / "wsgi.raw").symlink_to(image.resolve())
        copy = {k: v for k, v in manifest.items() if k != "cloud"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="eu-west-1",
            AWS_CONFIG_FILE=str(work / "none"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "none"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        cold: list[dict[str, Any]] = []
        walls: list[float] = []
        for _ in range(args.runs):
            reset(url)
            (work / "out" / "wsgi" / "manifest.json").write_text(json.dumps(copy))
            wall, report = upload(work, env, args.workers, args.store)
            cold.append(report)
            walls.append(wall)
        noops = []
        for _ in range(args.runs):
            wall, report = upload(work, env, args.workers, args.store)
            assert report["reused"], report
            noops.append(wall)
        reset(url)  # the same image, unknown to the store used: hashed while read
        _, hashed = upload(work, env, args.workers, work / "empty-store")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    first = cold[0]
    rates = [r["allocated_bytes"] / MB / r["seconds"] for r in cold]
    rows = [
        (f"image {image.name}", f"{first['image_bytes'] / MB:.0f} MB, {first['allocated_bytes'] / MB:.0f} MB allocated"),
        ("blocks of 512 KiB", f"{first['blocks_total']}"),
        ("  written", f"{first['blocks_uploaded']} ({first['bytes_uploaded'] / MB:.0f} MB)"),
        ("  skipped as zero (holes never read + zero blocks read)", f"{first['blocks_skipped_hole'] + first['blocks_skipped_zero']} "
         f"({first['blocks_skipped_hole']} + {first['blocks_skipped_zero']})"),
        (f"upload throughput, MB/s of allocated data (median of {args.runs}: {', '.join(f'{r:.0f}' for r in rates)})", f"{statistics.median(rates):.0f} MB/s"),
        (f"upload, whole command (median of {args.runs})", f"{statistics.median(walls):.2f} s"),
        ("upload throughput when the image is hashed as it is read (one run)", f"{hashed['allocated_bytes'] / MB / hashed['seconds']:.0f} MB/s"),
        (f"no-op re-upload, whole command (median of {args.runs}: {', '.join(f'{n:.2f}' for n in noops)})", f"{statistics.median(noops):.2f} s"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    print(f"Crust upload benchmark (moto_server on loopback, {args.workers} workers), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
