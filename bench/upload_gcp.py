#!/usr/bin/env python3
"""Crust's Google Cloud upload benchmark: the built WSGI image, converted to the gce format
(disk.raw in a sparse tar.gz), to a local Cloud Storage (gcp-storage-emulator, the tests'
tests/integration/gcs_emulator.py) and images.insert to the tests' recording Compute Engine
stand-in, both started on loopback by this script and stopped after. Prints:
  gce conversion        seconds to make the tar.gz from the raw image (what the convert step does)
  upload throughput     MB/s of the tar.gz (all of it is data), as one resumable upload and as
                        parallel parts composed (median of --runs cold uploads, bucket emptied)
  no-op re-upload       wall time of `build.py upload --target gcp` when the image exists
                        (median of --runs; the whole command, Python start-up included)

    .venv/bin/python bench/upload_gcp.py [--manifest build/wsgi/manifest.json] [--runs 3]

Needs a built image (./build.py build wsgi) and the dev extra (./setup.sh). Loopback numbers
measure Crust's and the emulator's side (the emulator holds a resumable upload in memory), not
a real network or Cloud Storage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from upload_common import (  # bench/ is the script's sys.path[0]
    MB,
    ROOT,
    add_artifact,
    make_workspace,
    medians,
    print_table,
    read_manifest,
    reset_manifest,
    timed_upload,
)

BUCKET = "crust-bench"


def empty(url: str) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = storage.Client(project="crust-bench", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url)).bucket(BUCKET)
    for blob in bucket.list_blobs():
        blob.delete()


def main() -> int:
    from crust.formats.gce import write_gce
    from tests.integration.gcp_fakes import PROJECT, FakeCompute
    from tests.integration.gcs_emulator import emulator_available, gcs_emulator

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "wsgi" / "manifest.json", help="manifest of the built image")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    args = parser.parse_args()
    built = read_manifest(args.manifest)
    if not emulator_available():
        sys.exit("bench: no gcp-storage-emulator (./setup.sh installs the dev extra)")
    raw = args.manifest.parent / Path(next(a for a in built["artifacts"] if a["format"] == "raw")["path"]).name

    work = Path(tempfile.mkdtemp(prefix="crust-bench-gcp-"))
    compute = FakeCompute()
    threading.Thread(target=compute.serve_forever, daemon=True).start()
    try:
        gce = work / "wsgi.gce"
        started = time.monotonic()
        write_gce(raw, gce, int(built.get("source_date_epoch", 0)))
        converted = time.monotonic() - started
        (work / "emulator").mkdir()
        with gcs_emulator(work / "emulator", BUCKET) as url:
            targets = f'[gcp]\nproject = "{PROJECT}"\nbucket = "{BUCKET}"\nstorage_endpoint = "{url}"\ncompute_endpoint = "{compute.url}"\n'
            add_artifact(built, "gce", gce)
            make_workspace(work / "ws", built, args.manifest.parent, targets)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR"))}
            cold: dict[str, list[dict[str, Any]]] = {}
            for how, threshold in (("one resumable upload", "0"), ("parallel parts, composed", '"64MiB"')):
                (work / "ws" / "targets.toml").write_text(targets + f"composite_threshold = {threshold}\ncomposite_parts = 8\n")
                cold[how] = []
                for _ in range(args.runs):
                    empty(url)
                    compute.images.clear()
                    reset_manifest(work / "ws", built)
                    cold[how].append(timed_upload(work / "ws", "gcp", env)[1])
            noops = []
            for _ in range(args.runs):
                wall, report = timed_upload(work / "ws", "gcp", env)
                assert report["reused"], report
                noops.append(wall)
        size = gce.stat().st_size
    finally:
        compute.shutdown()
        compute.server_close()
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("image wsgi.raw (allocated) -> wsgi.gce", f"{raw.stat().st_blocks * 512 / MB:.0f} MB -> {size / MB:.0f} MB"),
        ("gce conversion (tar --sparse, gzip -n), one run", f"{converted:.1f} s"),
    ]
    for how, reports in cold.items():
        parts = f" ({reports[0]['parts']})" if reports[0]["parts"] else ""
        rows.append(medians(f"upload throughput, {how}{parts}, MB/s", [r["bytes_sent"] / MB / r["seconds"] for r in reports], "MB/s"))
    rows.append(medians("no-op re-upload, whole command, s", noops, "s", 2))
    print_table("Crust GCP upload benchmark (gcp-storage-emulator and a Compute Engine stand-in on loopback)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
