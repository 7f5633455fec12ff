#!/usr/bin/env python3
"""Crust's libvirt upload benchmark: the built WSGI qcow2 into a directory storage pool of this
machine's libvirtd (a transient pool this script makes under a temporary directory, and
removes). Prints:
  upload throughput     MB/s of the qcow2's allocated data, through libvirt's sparse stream
                        (median of --runs cold uploads, the volumes removed before each)
  sent / holes skipped  bytes sent, bytes of holes not sent
  no-op re-upload       wall time of `build.py upload --target libvirt` when the pool already
                        holds the image (median of --runs; the whole command)

    .venv/bin/python bench/upload_libvirt.py [--manifest build/wsgi/manifest.json] [--runs 3]

Needs a built image (./build.py build wsgi) and libvirtd (qemu:///system); run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000


def upload(work: Path) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, str(ROOT / "build.py"), "--appliances", str(work / "appliances"), "--output", str(work / "out")]
    argv += ["--store", str(work / "store"), "upload", "wsgi", "--target", "libvirt", "--json"]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: upload failed:\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return wall, report


def main() -> int:
    import libvirt

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "wsgi" / "manifest.json", help="manifest of the built image")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    args = parser.parse_args()
    if not args.manifest.is_file():
        sys.exit(f"bench: {args.manifest} not found (./build.py build wsgi)")
    manifest = json.loads(args.manifest.read_text())
    manifest.pop("cloud", None)
    qcow2 = next(a for a in manifest["artifacts"] if a["format"] == "qcow2")
    allocated = (args.manifest.parent / Path(qcow2["path"]).name).stat().st_blocks * 512

    work = Path(tempfile.mkdtemp(prefix="crust-bench-libvirt-"))
    conn = libvirt.open("qemu:///system")
    (work / "pool").mkdir()
    name = f"crust-bench-{os.getpid()}"
    pool = conn.storagePoolCreateXML(f"<pool type='dir'><name>{name}</name><target><path>{work / 'pool'}</path></target></pool>", 0)
    try:
        (work / "appliances").mkdir()
        for file in ("wsgi.toml", "wsgi_checks.py"):
            shutil.copy(ROOT / "appliances" / file, work / "appliances" / file)
        (work / "targets.toml").write_text(f'[libvirt]\npool = "{name}"\n')
        (work / "out" / "wsgi").mkdir(parents=True)
        for artifact in manifest["artifacts"]:
            source = args.manifest.parent / Path(artifact["path"]).name
            (work / "out" / "wsgi" / source.name).symlink_to(source.resolve())
            artifact["path"] = source.name
        cold: list[dict[str, Any]] = []
        for _ in range(args.runs):
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            (work / "out" / "wsgi" / "manifest.json").write_text(json.dumps(manifest))
            cold.append(upload(work)[1])
        noops = []
        for _ in range(args.runs):
            wall, report = upload(work)
            assert report["reused"], report
            noops.append(wall)
    finally:
        for vol in pool.listAllVolumes(0):
            vol.delete(0)
        pool.destroy()
        conn.close()
        shutil.rmtree(work, ignore_errors=True)

    rates = [allocated / MB / r["seconds"] for r in cold]
    first = cold[0]
    rows = [
        ("image wsgi.qcow2", f"{qcow2['size'] / MB:.0f} MB, {allocated / MB:.0f} MB allocated"),
        ("sent / holes skipped", f"{first['bytes_sent'] / MB:.0f} MB / {first['holes_skipped'] / MB:.1f} MB"),
        (
            f"upload throughput, MB/s of allocated data (median of {args.runs}: {', '.join(f'{r:.0f}' for r in rates)})",
            f"{statistics.median(rates):.0f} MB/s",
        ),
        (f"no-op re-upload, whole command (median of {args.runs}: {', '.join(f'{n:.2f}' for n in noops)})", f"{statistics.median(noops):.2f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"Crust libvirt upload benchmark (directory pool, qemu:///system), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
