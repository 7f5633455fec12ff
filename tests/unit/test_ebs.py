"""The EBS direct upload's pure logic: which blocks are read and sent, padding, checksums."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError

from crust.cloud.aws import ebs
from crust.cloud.aws.ebs import BLOCK_SIZE, GIB, ImageHash, ReadStats, aggregate_checksum, block_indices, read_blocks, upload_snapshot, volume_gib
from crust.errors import CloudError, Problem


def sparse_image(path: Path, blocks: int, data: dict[int, bytes], zeros: tuple[int, ...] = (), tail: int = 0) -> bytes:
    """A sparse file of `blocks` blocks (+ tail bytes) with `data` written at block offsets and
    explicit zero blocks (allocated, all zero) at `zeros`; returns its full content."""
    size = blocks * BLOCK_SIZE + tail
    with open(path, "wb") as fh:
        fh.truncate(size)
        for index in zeros:
            fh.seek(index * BLOCK_SIZE)
            fh.write(bytes(BLOCK_SIZE))
        for index, chunk in data.items():
            fh.seek(index * BLOCK_SIZE)
            fh.write(chunk)
    return path.read_bytes()


def padded(content: bytes, index: int) -> bytes:
    return content[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")


def test_read_blocks_skips_holes_and_zero_blocks(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    data = {
        0: os.urandom(BLOCK_SIZE),
        5: b"\0" * 1000 + b"x" * 10,  # data late in a block
        7: os.urandom(BLOCK_SIZE + 100),  # spills into block 8
        12: b"tail",  # the partial last block
    }
    content = sparse_image(image, 12, data, zeros=(2, 3), tail=4096)
    stats = ReadStats()
    blocks = list(read_blocks(image, stats))
    assert [b.index for b in blocks] == [0, 5, 7, 8, 12]
    for block in blocks:
        assert block.data == padded(content, block.index)
        assert len(block.data) == BLOCK_SIZE
        assert block.checksum == base64.b64encode(hashlib.sha256(block.data).digest()).decode()
    assert stats.total_blocks == 13
    assert stats.data_blocks == 5
    assert stats.zero_blocks == 2  # allocated but zero: read, not sent
    assert stats.hole_blocks == 6  # never read
    assert stats.skipped == 8


def test_file_system_without_seek_data_reads_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "disk.raw"
    sparse_image(image, 4, {1: b"one"})
    real_lseek = os.lseek

    def no_seek_data(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, "not supported")
        return real_lseek(fd, pos, how)

    monkeypatch.setattr(ebs.os, "lseek", no_seek_data)
    stats = ReadStats()
    assert [b.index for b in read_blocks(image, stats)] == [1]
    assert (stats.zero_blocks, stats.hole_blocks) == (3, 0)


def test_block_indices_of_a_full_file(tmp_path: Path) -> None:
    image = tmp_path / "full.raw"
    image.write_bytes(b"\1" * (3 * BLOCK_SIZE + 1))
    fd = os.open(image, os.O_RDONLY)
    try:
        assert list(block_indices(fd, image.stat().st_size)) == [0, 1, 2, 3]
    finally:
        os.close(fd)


def test_aggregate_checksum_is_sha256_of_block_digests_in_index_order() -> None:
    digests = {index: hashlib.sha256(bytes([index]) * 10).digest() for index in (9, 2, 4)}
    expected = base64.b64encode(hashlib.sha256(digests[2] + digests[4] + digests[9]).digest()).decode()
    assert aggregate_checksum(digests) == expected
    assert aggregate_checksum(dict(sorted(digests.items()))) == expected


@pytest.mark.parametrize(("size", "gib"), [(1, 1), (GIB, 1), (GIB + 1, 2), (1142947840, 2), (10 * GIB, 10)])
def test_volume_size_rounds_up_to_gib(size: int, gib: int) -> None:
    assert volume_gib(size) == gib


class FakeMeta:
    service_model = type("ServiceModel", (), {"service_name": "ebs"})()
    method_to_api_mapping: ClassVar[dict[str, str]] = {
        "put_snapshot_block": "PutSnapshotBlock",
        "start_snapshot": "StartSnapshot",
        "complete_snapshot": "CompleteSnapshot",
    }


class FakeEbs:
    """Records the EBS direct API calls; put_snapshot_block can fail at one block."""

    meta = FakeMeta()

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.puts: dict[int, dict[str, Any]] = {}
        self.completed: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def start_snapshot(self, **params: Any) -> dict[str, Any]:
        self.started = params
        return {"SnapshotId": "snap-0123456789abcdef0", "BlockSize": 512}  # a wrong size, as moto reports

    def put_snapshot_block(self, **params: Any) -> dict[str, Any]:
        if params["BlockIndex"] == self.fail_at:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad block"}}, "PutSnapshotBlock")
        with self.lock:
            self.puts[params["BlockIndex"]] = params
        return {}

    def complete_snapshot(self, **params: Any) -> dict[str, Any]:
        self.completed = params
        return {"Status": "completed"}


def test_upload_sends_each_data_block_once_with_its_checksum(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    content = sparse_image(image, 40, {i: os.urandom(700) for i in (0, 3, 17, 39)}, zeros=(20,))
    client = FakeEbs()
    started: list[str] = []
    with open(image, "rb") as fh:
        result = upload_snapshot(client, fh.fileno(), "demo", {"crust:image-digest": "abc"}, 4, started.append, hashlib.sha256(content).hexdigest())
    assert started == ["snap-0123456789abcdef0"]
    assert client.started["VolumeSize"] == 1
    assert client.started["Tags"] == [{"Key": "crust:image-digest", "Value": "abc"}]
    assert sorted(client.puts) == [0, 3, 17, 39]
    digests = {}
    for index, put in client.puts.items():
        assert put["BlockData"] == padded(content, index)
        assert put["DataLength"] == BLOCK_SIZE
        assert put["ChecksumAlgorithm"] == "SHA256"
        digest = hashlib.sha256(put["BlockData"]).digest()
        assert put["Checksum"] == base64.b64encode(digest).decode()
        digests[index] = digest
    assert client.completed == {
        "SnapshotId": "snap-0123456789abcdef0",
        "ChangedBlocksCount": 4,
        "Checksum": aggregate_checksum(digests),
        "ChecksumAlgorithm": "SHA256",
        "ChecksumAggregationMethod": "LINEAR",
    }
    assert result.stats.zero_blocks == 1
    assert result.bytes_uploaded == 4 * BLOCK_SIZE


def test_a_failed_block_stops_the_upload_with_one_line(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    sparse_image(image, 64, {i: b"data" for i in range(64)})
    client = FakeEbs(fail_at=10)
    started: list[str] = []
    with pytest.raises(CloudError) as err, open(image, "rb") as fh:
        upload_snapshot(client, fh.fileno(), "demo", {}, 2, started.append)
    assert err.value.exit_status == 1  # AWS refused a block: a failure, not bad input
    assert started == ["snap-0123456789abcdef0"]  # the caller knows what to delete
    assert client.completed is None
    assert "ebs PutSnapshotBlock on snap-0123456789abcdef0 block 10 failed: ValidationException: bad block" in err.value.one_line()
    assert len(client.puts) < 64  # it stopped instead of sending the rest


def test_an_image_other_than_the_manifest_names_is_not_completed(tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    content = sparse_image(image, 8, {3: b"new build"})
    client = FakeEbs()
    with pytest.raises(Problem, match=r"changed during the upload: its sha256 is .*a build replaced the image"), open(image, "rb") as fh:
        upload_snapshot(client, fh.fileno(), "demo", {}, 2, lambda _: None, hashlib.sha256(content + b"x").hexdigest())
    assert client.completed is None


@pytest.mark.parametrize("tail", [0, 1, 4095])
def test_image_hash_is_the_sha256_of_the_whole_file(tmp_path: Path, tail: int) -> None:
    image = tmp_path / "disk.raw"
    content = sparse_image(image, 20, {0: b"a", 7: os.urandom(BLOCK_SIZE), 19: b"b" * 10}, zeros=(4,), tail=tail)
    image_hash = ImageHash()
    list(read_blocks(image, ReadStats(), image_hash))
    assert image_hash.hexdigest() == hashlib.sha256(content).hexdigest()
