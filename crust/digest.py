"""Content digests: the ids of steps are sha256 of their inputs."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_text(text: str) -> str:
    return digest_bytes(text.encode("utf-8"))


def digest_json(value: Any) -> str:
    return digest_text(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


CHUNK = 8 << 20  # few GIL hand-offs: a disk image is hashed while the audit thread runs
ZEROS = memoryview(bytes(CHUNK))


def digest_file(path: Path) -> str:
    """sha256 of a file's content (a symlink's target text, not what it points at). A sparse
    file's holes are hashed as the zeros they read as, without reading them (a 1.1 GB disk
    image with 0.4 GB allocated: 0.64 s instead of 0.76 s alone, 2.2 s beside the audit)."""
    if path.is_symlink():
        return digest_text("symlink:" + str(path.readlink()))
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        if size <= CHUNK:  # most files: one read
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
            return h.hexdigest()
        buf = memoryview(bytearray(CHUNK))
        while pos < size:
            data, end = data_extent(fd, pos, size)
            while pos < data:  # a hole
                n = min(CHUNK, data - pos)
                h.update(ZEROS[:n])
                pos += n
            os.lseek(fd, pos, os.SEEK_SET)
            while pos < end:
                n = os.readv(fd, [buf[: min(CHUNK, end - pos)]])
                if n == 0:
                    raise OSError(f"{path} shrank while it was hashed")
                h.update(buf[:n])
                pos += n
    finally:
        os.close(fd)
    return h.hexdigest()


def data_extent(fd: int, pos: int, size: int) -> tuple[int, int]:
    """Where the next data from pos starts and ends (the file's size if it has no more; the
    whole rest where the file system cannot tell holes)."""
    try:
        start = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as err:
        if err.errno == errno.ENXIO:  # only a hole up to the end
            return size, size
        return pos, size  # no SEEK_DATA here: read it all
    return start, os.lseek(fd, start, os.SEEK_HOLE)


def step_id(kind: str, inputs: Mapping[str, str]) -> str:
    return digest_json({"kind": kind, "inputs": dict(inputs)})


def digest_tree(folder: Path, pattern: str = "*.py") -> str:
    """sha256 over the files matching pattern under folder (names and contents, sorted)."""
    return digest_json({str(p.relative_to(folder)): digest_file(p) for p in sorted(folder.rglob(pattern)) if "__pycache__" not in p.parts})
