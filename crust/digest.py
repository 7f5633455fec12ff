"""Content digests: the ids of steps are sha256 of their inputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_text(text: str) -> str:
    return digest_bytes(text.encode("utf-8"))


def digest_json(value: Any) -> str:
    return digest_text(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


def digest_file(path: Path) -> str:
    """sha256 of a file's content (a symlink's target text, not what it points at)."""
    if path.is_symlink():
        return digest_text("symlink:" + str(path.readlink()))
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def step_id(kind: str, inputs: Mapping[str, str]) -> str:
    return digest_json({"kind": kind, "inputs": dict(inputs)})


def digest_tree(folder: Path, pattern: str = "*.py") -> str:
    """sha256 over the files matching pattern under folder (names and contents, sorted)."""
    return digest_json({str(p.relative_to(folder)): digest_file(p) for p in sorted(folder.rglob(pattern)) if "__pycache__" not in p.parts})
