"""Early cut-off: a step whose rerun gives the same output as an earlier step of its kind is
equivalent to that step, and the steps after it are planned from the earlier one's id.

As Yocto's hash equivalence: each built step records a digest of its output (every file of its
store entry: path, kind, mode, owner, time, content or link target). The first step of a kind
with an output digest is its canonical step; a later one with the same output digest maps to
it (STATE/equivalent/KIND-ID holds the canonical id). Planning reads the map, so a base that
reruns for a new mirror state or new Crust code but comes out byte-identical leaves the steps
after it with the ids they had: they are reused, not rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from crust.build.store import write_atomic

META = "step.json"  # the entry's own record (timings, names): not output


def digest_output(entry: Path, known: Mapping[str, str] | None = None) -> str:
    """A digest of what a step made: every entry under the directory but its record, sorted.
    known: sha256 (hex) of files the step already hashed, by path relative to ENTRY (a disk
    image is read once, not twice): used as the file's content digest, as it would be computed."""
    known = known or {}
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(entry):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, entry)
        names = sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))])
        names += [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel == META:
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            h.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0{int(st.st_mtime)}\0".encode("utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode) and rel in known:
                h.update(bytes.fromhex(known[rel]))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    h.update(hashlib.file_digest(fh, "sha256").digest())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                h.update(f"{st.st_rdev}".encode())
            h.update(b"\n")
    return h.hexdigest()


def canonical_id(state_dir: Path, kind: str, step_id: str) -> str:
    """The id the steps after this one are planned from: its canonical step's, or its own."""
    path = state_dir / "equivalent" / f"{kind}-{step_id}"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return step_id
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else step_id


def record_output(state_dir: Path, kind: str, step_id: str, output: str) -> str:
    """Note a built step's output digest; return its canonical id (its own when its output is new)."""
    outputs, equivalent = state_dir / "outputs", state_dir / "equivalent"
    outputs.mkdir(parents=True, exist_ok=True)
    equivalent.mkdir(parents=True, exist_ok=True)
    known = outputs / f"{kind}-{output}"
    try:
        first = known.read_text(encoding="utf-8").strip()
    except OSError:
        write_atomic(known, step_id + "\n")
        return step_id
    if first == step_id:
        return step_id
    canonical = canonical_id(state_dir, kind, first)
    write_atomic(equivalent / f"{kind}-{step_id}", canonical + "\n")
    return canonical
