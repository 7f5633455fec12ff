"""What the cloud upload benchmarks share: a workspace around the built WSGI image (its appliance
files, its artifacts linked, its manifest without cloud records), the upload command run and
timed, and the table printed."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # crust and tests, for the benchmarks that import this
MB = 1_000_000


def workspace(work: Path, manifest: Path, targets: str, extra: dict[str, Path] | None = None) -> dict[str, Any]:
    """appliances/, targets.toml, out/wsgi with the manifest's artifacts symlinked and EXTRA ones
    (format: file) added to it; the manifest as written."""
    (work / "appliances").mkdir(parents=True)
    for file in ("wsgi.toml", "wsgi_checks.py"):
        shutil.copy(ROOT / "appliances" / file, work / "appliances" / file)
    (work / "targets.toml").write_text(targets)
    out = work / "out" / "wsgi"
    out.mkdir(parents=True)
    data = json.loads(manifest.read_text())
    data.pop("cloud", None)
    for artifact in data["artifacts"]:
        source = manifest.parent / Path(artifact["path"]).name
        (out / source.name).symlink_to(source.resolve())
        artifact["path"] = source.name
    for fmt, path in (extra or {}).items():
        from crust.digest import digest_file

        (out / path.name).symlink_to(path.resolve())
        st = path.stat()
        data["artifacts"].append({"format": fmt, "path": path.name, "sha256": digest_file(path), "size": st.st_size, "allocated": st.st_blocks * 512})
    write_manifest(work, data)
    return data


def write_manifest(work: Path, data: dict[str, Any]) -> None:
    (work / "out" / "wsgi" / "manifest.json").write_text(json.dumps(data))


def upload(work: Path, target: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """`build.py upload wsgi --target TARGET --json` in the workspace: wall time and report."""
    argv = [sys.executable, str(ROOT / "build.py"), "--appliances", str(work / "appliances"), "--output", str(work / "out")]
    argv += ["--store", str(work / "store"), "upload", "wsgi", "--target", target, "--json"]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=work)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: upload failed:\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return wall, report


def median_row(label: str, values: list[float], unit: str, digits: int = 0) -> tuple[str, str]:
    listed = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{label} (median of {len(values)}: {listed})", f"{statistics.median(values):.{digits}f} {unit}"


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"{title}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for label, value in rows:
        print(f"{label:{width}}  {value}")
