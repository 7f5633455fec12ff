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
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from upload_common import MB, make_workspace, medians, print_table, read_manifest, reset_manifest, timed_upload  # noqa: E402


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
    manifest = read_manifest(args.manifest)
    if not glance_available(venv):
        sys.exit(f"bench: no Glance in {venv} (./setup.sh installs it)")
    qcow2 = next(a for a in manifest["artifacts"] if a["format"] == "qcow2")

    work = Path(tempfile.mkdtemp(prefix="crust-bench-openstack-"))
    try:
        with glance_server(venv, work / "glance", trust_headers=False) as glance:
            make_workspace(work, manifest, args.manifest.parent, '[openstack]\ncloud = "bench"\n')
            clouds = {"clouds": {"bench": {"auth_type": "none", "auth": {"endpoint": glance}, "image_endpoint_override": glance}}}
            (work / "clouds.yaml").write_text(json.dumps(clouds))  # JSON is YAML
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            env["OS_CLIENT_CONFIG_FILE"] = str(work / "clouds.yaml")
            cold: list[dict[str, Any]] = []
            for _ in range(args.runs):
                empty(glance)
                reset_manifest(work, manifest)
                cold.append(timed_upload(work, "openstack", env)[1])
            noops = []
            for _ in range(args.runs):
                wall, report = timed_upload(work, "openstack", env)
                assert report["reused"], report
                noops.append(wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("image wsgi.qcow2", f"{qcow2['size'] / MB:.0f} MB"),
        medians("upload throughput, MB/s", [r["bytes_sent"] / MB / r["seconds"] for r in cold], "MB/s"),
        medians("no-op re-upload, whole command", noops, "s", digits=2),
    ]
    print_table("Crust OpenStack upload benchmark (Glance 33 on loopback)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
