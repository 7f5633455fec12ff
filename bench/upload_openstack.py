#!/usr/bin/env python3
"""Crust's OpenStack upload benchmark: the built WSGI qcow2 to a real Glance (glance 33 under
uWSGI, SQLite and the file store, no Keystone: the tests' tests/integration/glance_server.py),
started on loopback by this script and stopped after. Prints:
  upload throughput     MB/s of the qcow2 (all of it is data: Glance has no sparse upload),
                        image record to `active` (median of --runs cold uploads, Glance
                        emptied before each)
  no-op re-upload       wall time of `build.py upload --target openstack` when Glance already
                        holds the image (median of --runs; the whole command)

    .venv/bin/python bench/upload_openstack.py [--manifest build/wsgi/manifest.json] [--runs 3]

Needs a built image (./build.py build wsgi) and .venv-glance (./setup.sh). Loopback numbers
measure Crust's and Glance's side, not a real network.
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
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1_000_000


def upload(work: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, str(ROOT / "build.py"), "--appliances", str(work / "appliances"), "--output", str(work / "out")]
    argv += ["--store", str(work / "store"), "upload", "wsgi", "--target", "openstack", "--json"]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: upload failed:\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return wall, report


def empty(glance: str) -> None:
    with urllib.request.urlopen(f"{glance}/v2/images?member_status=all&visibility=all", timeout=30) as resp:
        images = json.loads(resp.read())["images"]
    for image in images:
        urllib.request.urlopen(urllib.request.Request(f"{glance}/v2/images/{image['id']}", method="DELETE"), timeout=60).close()


def main() -> int:
    from tests.integration.glance_server import glance_available, glance_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=ROOT / "build" / "wsgi" / "manifest.json", help="manifest of the built image")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians are printed)")
    args = parser.parse_args()
    venv = ROOT / ".venv-glance"
    if not args.manifest.is_file():
        sys.exit(f"bench: {args.manifest} not found (./build.py build wsgi)")
    if not glance_available(venv):
        sys.exit(f"bench: no Glance in {venv} (./setup.sh installs it)")
    manifest = json.loads(args.manifest.read_text())
    manifest.pop("cloud", None)
    qcow2 = next(a for a in manifest["artifacts"] if a["format"] == "qcow2")

    work = Path(tempfile.mkdtemp(prefix="crust-bench-openstack-"))
    try:
        with glance_server(venv, work / "glance", trust_headers=False) as glance:
            (work / "appliances").mkdir()
            for file in ("wsgi.toml", "wsgi_checks.py"):
                shutil.copy(ROOT / "appliances" / file, work / "appliances" / file)
            (work / "targets.toml").write_text('[openstack]\ncloud = "bench"\n')
            clouds = {"clouds": {"bench": {"auth_type": "none", "auth": {"endpoint": glance}, "image_endpoint_override": glance}}}
            (work / "clouds.yaml").write_text(json.dumps(clouds))  # JSON is YAML
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            env["OS_CLIENT_CONFIG_FILE"] = str(work / "clouds.yaml")
            (work / "out" / "wsgi").mkdir(parents=True)
            for artifact in manifest["artifacts"]:
                source = args.manifest.parent / Path(artifact["path"]).name
                (work / "out" / "wsgi" / source.name).symlink_to(source.resolve())
                artifact["path"] = source.name
            cold: list[dict[str, Any]] = []
            for _ in range(args.runs):
                empty(glance)
                (work / "out" / "wsgi" / "manifest.json").write_text(json.dumps(manifest))
                cold.append(upload(work, env)[1])
            noops = []
            for _ in range(args.runs):
                wall, report = upload(work, env)
                assert report["reused"], report
                noops.append(wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rates = [r["bytes_sent"] / MB / r["seconds"] for r in cold]
    rows = [
        ("image wsgi.qcow2", f"{qcow2['size'] / MB:.0f} MB"),
        (f"upload throughput, MB/s (median of {args.runs}: {', '.join(f'{r:.0f}' for r in rates)})", f"{statistics.median(rates):.0f} MB/s"),
        (f"no-op re-upload, whole command (median of {args.runs}: {', '.join(f'{n:.2f}' for n in noops)})", f"{statistics.median(noops):.2f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"Crust OpenStack upload benchmark (Glance 33 on loopback), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
