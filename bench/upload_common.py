"""What the cloud upload benchmarks share: a throwaway workspace holding the built appliance
(its artifacts linked, its manifest without cloud records), one timed `build.py upload`, and
the table they print."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # crust and tests, for the benchmarks that import this
MB = 1_000_000


def read_manifest(path: Path) -> dict[str, Any]:
    """The built manifest, without its cloud records (each benchmark starts from none)."""
    if not path.is_file():
        sys.exit(f"bench: {path} not found (./build.py build wsgi)")
    manifest: dict[str, Any] = json.loads(path.read_text())
    manifest.pop("cloud", None)
    return manifest


def add_artifact(manifest: dict[str, Any], fmt: str, path: Path) -> None:
    """A format the benchmark converted itself (not built), listed as a build would list it."""
    from crust.digest import digest_file

    st = path.stat()
    manifest["artifacts"].append({"format": fmt, "path": str(path), "sha256": digest_file(path), "size": st.st_size, "allocated": st.st_blocks * 512})


def make_workspace(work: Path, manifest: Mapping[str, Any], built: Path, targets: str, appliance: str = "wsgi") -> None:
    """WORK/appliances (the appliance's definition), WORK/targets.toml, WORK/out/APPLIANCE with
    symlinks to the built artifacts (in built/, or where the manifest says) and the manifest."""
    (work / "appliances").mkdir(parents=True)
    for file in (f"{appliance}.toml", f"{appliance}_checks.py"):
        if (ROOT / "appliances" / file).exists():
            shutil.copy(ROOT / "appliances" / file, work / "appliances" / file)
    (work / "targets.toml").write_text(targets)
    out = work / "out" / appliance
    out.mkdir(parents=True)
    data = json.loads(json.dumps(manifest))
    for artifact in data["artifacts"]:
        source = built / Path(artifact["path"]).name
        if not source.exists():
            source = Path(artifact["path"])
        (out / source.name).symlink_to(source.resolve())
        artifact["path"] = source.name
    reset_manifest(work, data, appliance)


def reset_manifest(work: Path, manifest: Mapping[str, Any], appliance: str = "wsgi") -> None:
    """The workspace's manifest as built: no record of an earlier upload."""
    current = work / "out" / appliance / "manifest.json"
    data = dict(manifest)
    if current.exists():
        data["artifacts"] = json.loads(current.read_text())["artifacts"]
    data.pop("cloud", None)
    current.write_text(json.dumps(data))


def timed_upload(work: Path, target: str, env: Mapping[str, str], appliance: str = "wsgi") -> tuple[float, dict[str, Any]]:
    """Wall time and JSON report of `build.py upload APPLIANCE --target TARGET` in the workspace."""
    argv = [sys.executable, str(ROOT / "build.py"), "--appliances", str(work / "appliances"), "--output", str(work / "out")]
    argv += ["--store", str(work / "store"), "upload", appliance, "--target", target, "--json"]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=dict(env))
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"bench: upload failed:\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return wall, report


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"{title}, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    for label, value in rows:
        print(f"{label:{width}}  {value}")


def medians(label: str, values: Sequence[float], unit: str, digits: int = 0) -> tuple[str, str]:
    """A row: the label with every run's value, and their median."""
    import statistics

    each = ", ".join(f"{v:.{digits}f}" for v in values)
    return (f"{label} (median of {len(values)}: {each})", f"{statistics.median(values):.{digits}f} {unit}")
