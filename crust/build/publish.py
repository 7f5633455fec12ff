"""Publishing a build: artifacts and manifest.json appear in build/NAME/ atomically.

Published artifacts (build/NAME/NAME.raw, NAME.qcow2, ..., the SBOM) are hard links to the
store's entries (a copy across file systems), staged under a temporary name and renamed;
manifest.json is written last.
"""

from __future__ import annotations

import os
from pathlib import Path

from crust import faults
from crust.build.diskfull import disk_full
from crust.build.manifest import Manifest
from crust.errors import CommandError
from crust.runner import run


def stage(src: Path, dest: Path) -> Path:
    """Hard-link (or copy, across file systems) src beside dest under a temporary name."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        run(["cp", "--sparse=always", "--reflink=auto", str(src), str(tmp)])
    return tmp


PREVIOUS_MANIFEST = ".manifest.json.previous"


def publish(out_dir: Path, files: list[tuple[Path, Path]], manifest: Manifest, gone: list[Path]) -> None:
    """Make out_dir hold these artifacts (src, dest) and manifest, and none of gone.

    manifest.json never names a file that does not match it: (1) every artifact is staged
    under a temporary name (the slow part; nothing visible changes), (2) the old manifest is
    moved aside, (3) the artifacts are renamed into place, (4) the new manifest is written by
    rename and the old one dropped. A build killed on the way leaves at worst complete
    artifacts without a manifest.json (commands that need one say the appliance is not built)
    and temporary files, which the next build removes (remove_stale_files).
    """
    from crust.build.store import remove_stale_files

    remove_stale_files(out_dir)
    staged: list[tuple[Path, Path]] = []
    current, previous = out_dir / "manifest.json", out_dir / PREVIOUS_MANIFEST
    tmp = out_dir / f".manifest.json.tmp-{os.getpid()}"
    renamed, moved_aside = 0, False
    try:
        for src, dest in files:
            if dest.exists() and os.path.samefile(src, dest):
                continue  # already this very file (a hard link): renaming onto it would do nothing
            staged.append((stage(src, dest), dest))
        faults.point("publish.staged")
        carry_records(current if current.exists() else previous, manifest)
        if current.exists():
            os.replace(current, previous)
            moved_aside = True
        for staged_file, dest in staged:
            os.replace(staged_file, dest)
            renamed += 1
            faults.point("publish.artifact")
        for path in gone:  # what an earlier build published and this one did not
            path.unlink(missing_ok=True)
        tmp.write_text(manifest.text(), encoding="utf-8")
        faults.point("publish.manifest")
        os.replace(tmp, current)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        for _src, dest in files:  # staged, or half-copied by cp
            dest.with_name(f".{dest.name}.tmp-{os.getpid()}").unlink(missing_ok=True)
        if moved_aside and renamed == 0:
            os.replace(previous, current)  # nothing replaced yet: the old manifest still holds
        full = disk_full(exc, out_dir, f"publishing {out_dir.name}") if isinstance(exc, (CommandError, OSError)) else None
        if full is not None:
            raise full from exc
        raise
    previous.unlink(missing_ok=True)


def carry_records(path: Path, manifest: Manifest) -> None:
    """Carry the records of the previous build (uploads, smoke tests) that still describe the
    images of this one (same raw image; same tested image)."""
    try:
        previous = Manifest.read(path)
    except (OSError, ValueError, KeyError):
        return
    manifest.carry_records(previous)
