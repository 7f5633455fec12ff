#!/usr/bin/env python3
"""Crust's Azure upload benchmark: the built WSGI fixed VHD to a page blob of a real blob service
(Azurite, the tests' tests/integration/azurite_server.py) and its managed image to the tests'
recording stand-in for Azure Resource Manager, both on loopback, started by this script and
stopped after. Prints:
  upload throughput     MB/s of the VHD's data actually sent (allocated, non-zero ranges, 4 MiB
                        Put Page requests with their MD5, --workers at once), first page to
                        last (median of --runs cold uploads, the blob and image removed before
                        each)
  sent / skipped        bytes sent of the VHD's size, zero chunks read but not sent
  no-op re-upload       wall time of `build.py upload --target azure` when the blob and the
                        image are there (median of --runs; the whole command)

    .venv/bin/python bench/upload_azure.py [--manifest build/wsgi/manifest.json] [--runs 3]

Needs a built image (./build.py build wsgi) and Azurite (./setup.sh). Without a vhd artifact
(add "vhd" to image.formats, or build --format vhd) the raw image is converted here as the vhd
format does (qemu-img, fixed, exact size) into the temporary directory. Loopback numbers
measure Crust's and Azurite's side, not a real network.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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

SUB = "00000000-0000-4000-8000-00000000be4c"


def vhd_artifact(manifest: dict[str, Any], built: Path, work: Path) -> dict[str, Any]:
    """The manifest's vhd, or one converted from its raw image into work."""
    found = next((a for a in manifest["artifacts"] if a["format"] == "vhd"), None)
    if found is not None:
        return found
    raw = next(a for a in manifest["artifacts"] if a["format"] == "raw")
    source = built / Path(raw["path"]).name
    vhd = work / "wsgi.vhd"
    argv = ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", str(source), str(vhd)]
    subprocess.run(argv, check=True)
    add_artifact(manifest, "vhd", vhd)
    return dict(manifest["artifacts"][-1])


def main() -> int:
    from azure.storage.blob import BlobServiceClient

    from tests.integration.arm_standin import fake_arm, write_fake_az
    from tests.integration.azurite_server import azurite_available, azurite_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "wsgi" / "manifest.json", help="manifest of the built image")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--workers", type=int, default=4, help="pages sent at once (the target's workers)")
    args = parser.parse_args()
    manifest = read_manifest(args.manifest)
    if not azurite_available():
        sys.exit("bench: no Azurite in .azurite/ (./setup.sh installs it)")

    work = Path(tempfile.mkdtemp(prefix="crust-bench-azure-"))
    try:
        vhd = vhd_artifact(manifest, args.manifest.parent, work)
        vhd_path = Path(vhd["path"]) if Path(vhd["path"]).is_absolute() else args.manifest.parent / vhd["path"]
        allocated = vhd_path.stat().st_blocks * 512
        with azurite_server(work / "azurite") as connection, fake_arm() as arm:
            targets = f'[azure]\nsubscription = "{SUB}"\nresource_group = "bench"\nlocation = "westeurope"\n'
            targets += f'workers = {args.workers}\nmanagement_endpoint = "{arm.url}"\n'
            make_workspace(work / "ws", manifest, args.manifest.parent, targets)
            write_fake_az(work / "bin")
            env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
            env.update(AZURE_STORAGE_CONNECTION_STRING=connection, AZURE_TOKEN_CREDENTIALS="AzureCliCredential", HOME=str(work))
            env["PATH"] = f"{work / 'bin'}:{env['PATH']}"
            container = BlobServiceClient.from_connection_string(connection).get_container_client("crust-images")
            cold: list[dict[str, Any]] = []
            for _ in range(args.runs):
                if container.exists():
                    for blob in container.list_blobs():
                        container.delete_blob(blob.name)
                arm.resources.clear()
                reset_manifest(work / "ws", manifest)
                cold.append(timed_upload(work / "ws", "azure", env)[1])
            noops = []
            for _ in range(args.runs):
                wall, report = timed_upload(work / "ws", "azure", env)
                assert report["reused"] and report["bytes_sent"] == 0, report
                noops.append(wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    last = cold[-1]
    rows = [
        ("image wsgi.vhd (fixed), allocated", f"{vhd['size'] / MB:.0f} MB, {allocated / MB:.0f} MB"),
        (f"sent, zero chunks skipped ({args.workers} workers)", f"{last['bytes_sent'] / MB:.0f} MB, {last['chunks_skipped']}"),
        medians("upload throughput of data sent, MB/s", [r["bytes_sent"] / MB / r["seconds"] for r in cold], "MB/s"),
        medians("no-op re-upload, whole command", noops, "s", digits=2),
    ]
    print_table("Crust Azure upload benchmark (Azurite 3.37 and an ARM stand-in on loopback)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
