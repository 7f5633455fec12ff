"""Store housekeeping: which entries the kept builds reference, what clean frees, sizes."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from crust import faults
from crust.build.store import Store, remove_tree


@dataclass(frozen=True)
class CleanReport:
    removed: list[str]
    freed_bytes: int
    kept: int
    kept_bytes: int


def disk_usage(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated under path (hard links counted once, sparse files as allocated); with
    seen, inodes already counted elsewhere (files entries share) count nothing here."""
    seen = set() if seen is None else seen
    total = 0
    if path.is_file() or path.is_symlink():
        return path.lstat().st_blocks * 512
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def referenced(store: Store, appliances: list[str], keep: int) -> tuple[set[str], list[Path]]:
    """Entry names (KIND-ID) used by the last `keep` builds of each defined appliance, and the
    build records that fall out (older ones, and those of appliances no longer defined)."""
    names: set[str] = set()
    stale_records: list[Path] = []
    builds_dir = store.root / "builds"
    for folder in sorted(p for p in builds_dir.iterdir() if p.is_dir()):
        records = sorted(folder.glob("*.json"))
        keep_here = records[-keep:] if keep > 0 and folder.name in appliances else []
        stale_records += [r for r in records if r not in keep_here]
        for record in keep_here:
            data = store.read_record(record)
            names.update(f"{s['kind']}-{s['id']}" for s in data.get("steps", []))
    return names, stale_records


def clean(store: Store, appliances: list[str], keep: int, dry_run: bool = False) -> CleanReport:
    """Remove entries no kept build references (and their logs). Waits for running builds."""
    with store.exclusive():
        used, stale_records = referenced(store, appliances, keep)
        removed: list[str] = []
        freed = kept = kept_bytes = 0
        entries = sorted((store.root / "steps").iterdir())
        seen: set[tuple[int, int]] = set()  # a file entries share (crust/build/layers.py) is freed only with its last entry
        for entry in entries:
            if entry.name in used:
                kept += 1
                kept_bytes += disk_usage(entry, seen)
        for entry in entries:
            if entry.name in used:
                continue
            removed.append(entry.name)
            freed += disk_usage(entry, seen)
            if not dry_run:
                # Out of steps/ by one rename, then removed: a clean killed half-way never leaves
                # a partial entry that looks complete (tmp/ leftovers go with the next run).
                doomed = store.root / "tmp" / f"{entry.name}.removed.{os.getpid()}"
                os.rename(entry, doomed)
                faults.point("clean.entry")
                remove_tree(doomed)
                log = store.root / "logs" / f"{entry.name}.log"
                if log.exists():
                    log.unlink()
        if not dry_run:
            for record in stale_records:
                record.unlink()
            shutil.rmtree(store.root / "state" / "cache", ignore_errors=True)
            store.remove_stale_tmp()
        return CleanReport(removed, freed, kept, kept_bytes)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} GiB"
