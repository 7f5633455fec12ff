"""digest_file: the sha256 of what a file reads as, sparse or not, small or large."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from crust.digest import CHUNK, digest_file


@pytest.mark.parametrize("size", [0, 3, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_dense_files(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert digest_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "layout",
    [
        [(20 << 20, b"x" * 5000)],  # a hole, data, a hole to the end
        [(0, b"head"), (40 << 20, b"tail")],  # data, a long hole, data at the end
        [],  # only a hole
    ],
)
def test_sparse_files_hash_their_holes_as_zeros(tmp_path: Path, layout: list[tuple[int, bytes]]) -> None:
    path = tmp_path / "disk.raw"
    with open(path, "wb") as fh:
        for offset, data in layout:
            fh.seek(offset)
            fh.write(data)
        fh.truncate(max(50 << 20, fh.tell()))
    assert os.stat(path).st_blocks * 512 < 50 << 20, "the file system made no holes"
    assert digest_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_symlink_is_its_target_text(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/passwd")
    assert digest_file(tmp_path / "link") != digest_file(Path("/etc/passwd"))
