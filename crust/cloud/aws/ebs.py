"""Upload a raw disk image as an EBS snapshot with the EBS direct APIs (as AWS's coldsnap does).

No S3 bucket, no vmimport role: StartSnapshot, then PutSnapshotBlock for every 512 KiB block
that holds data (holes of the sparse file are never read, all-zero blocks are skipped), each
with its SHA-256, from parallel workers, then CompleteSnapshot with the count of blocks written
and the aggregate checksum: SHA-256 over the per-block digests in block-index order (LINEAR).
The block size is EBS's fixed 512 KiB; the size StartSnapshot reports is not trusted.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crust.cloud.aws.client import aws_tags, call, error_code
from crust.errors import Problem

BLOCK_SIZE = 512 * 1024
GIB = 1024**3
ZERO_BLOCK = bytes(BLOCK_SIZE)
SNAPSHOT_TIMEOUT_MINUTES = 60  # AWS cancels a started snapshot left without progress this long
NOT_FOUND_ATTEMPTS = 6  # a new snapshot may not be visible to PutSnapshotBlock at once


@dataclass(frozen=True)
class Block:
    index: int
    data: bytes
    digest: bytes  # binary sha256 of data

    @property
    def checksum(self) -> str:
        return base64.b64encode(self.digest).decode("ascii")


@dataclass
class ReadStats:
    total_blocks: int = 0
    hole_blocks: int = 0  # in a hole of the sparse file: never read
    zero_blocks: int = 0  # read, all zero: skipped
    data_blocks: int = 0  # uploaded

    @property
    def skipped(self) -> int:
        return self.hole_blocks + self.zero_blocks


def volume_gib(size: int) -> int:
    """The snapshot's size: the image size rounded up to whole GiB (at least 1)."""
    return max(1, -(-size // GIB))


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The [start, end) extents of a file that hold data (SEEK_DATA/SEEK_HOLE); where the
    file system cannot tell, the whole file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole after pos
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            yield start, end
        pos = end


def block_indices(fd: int, size: int, block_size: int = BLOCK_SIZE) -> Iterator[int]:
    """Ascending indices of the blocks that touch data, each once."""
    last = -1
    for start, end in data_ranges(fd, size):
        first = max(start // block_size, last + 1)
        stop = (end - 1) // block_size
        yield from range(first, stop + 1)
        last = max(last, stop)


class ImageHash:
    """The sha256 of the whole image, fed in file order (holes as zeros) and computed on its own
    thread (hashlib releases the GIL): proof that the blocks sent are the image the manifest names."""

    ZEROS = memoryview(bytes(8 * 1024 * 1024))

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | memoryview | int | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="crust-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, int):
                while item > 0:
                    n = min(item, len(self.ZEROS))
                    self._hash.update(self.ZEROS[:n])
                    item -= n
            else:
                self._hash.update(item)

    def zeros(self, count: int) -> None:
        if count > 0:
            self._queue.put(count)

    def data(self, chunk: bytes | memoryview) -> None:
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self._hash.hexdigest()


def read_blocks(path: Path, stats: ReadStats, image_hash: ImageHash | None = None) -> Iterator[Block]:
    """The image's non-zero blocks, padded to BLOCK_SIZE; stats counts what was skipped."""
    fd = os.open(path, os.O_RDONLY)
    try:
        yield from blocks_of(fd, stats, image_hash)
    finally:
        os.close(fd)


def blocks_of(fd: int, stats: ReadStats, image_hash: ImageHash | None = None) -> Iterator[Block]:
    size = os.fstat(fd).st_size
    stats.total_blocks = -(-size // BLOCK_SIZE)
    hashed = 0
    for index in block_indices(fd, size):
        offset = index * BLOCK_SIZE
        data = _read_full(fd, offset)
        if image_hash is not None:
            length = min(BLOCK_SIZE, size - offset)
            image_hash.zeros(offset - hashed)
            image_hash.data(data if length == BLOCK_SIZE else memoryview(data)[:length])
            hashed = offset + length
        if data == ZERO_BLOCK:
            stats.zero_blocks += 1
            continue
        stats.data_blocks += 1
        yield Block(index, data, hashlib.sha256(data).digest())
    if image_hash is not None:
        image_hash.zeros(size - hashed)
    stats.hole_blocks = stats.total_blocks - stats.zero_blocks - stats.data_blocks


def _read_full(fd: int, offset: int) -> bytes:
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    done = 0
    while done < BLOCK_SIZE:
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:  # end of file: the rest of the block stays zero
            break
        done += n
    return bytes(buf)


def aggregate_checksum(digests: Mapping[int, bytes]) -> str:
    """CompleteSnapshot's LINEAR SHA256 checksum: sha256 of the block digests in index order."""
    total = hashlib.sha256()
    for index in sorted(digests):
        total.update(digests[index])
    return base64.b64encode(total.digest()).decode("ascii")


@dataclass
class UploadResult:
    snapshot_id: str
    volume_gib: int
    stats: ReadStats
    checksum: str
    seconds: float
    bytes_uploaded: int = field(init=False)

    def __post_init__(self) -> None:
        self.bytes_uploaded = self.stats.data_blocks * BLOCK_SIZE


def start_params(size: int, description: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "VolumeSize": volume_gib(size),
        "Description": description,
        "Tags": aws_tags(tags),
        "Timeout": SNAPSHOT_TIMEOUT_MINUTES,
        "ClientToken": str(uuid.uuid4()),
    }


def put_block(ebs: Any, snapshot_id: str, block: Block) -> None:
    """PutSnapshotBlock; botocore retries transient errors, this retries a not-yet-visible snapshot."""
    for attempt in range(1, NOT_FOUND_ATTEMPTS + 1):
        try:
            call(
                ebs,
                "put_snapshot_block",
                f"{snapshot_id} block {block.index}",
                SnapshotId=snapshot_id,
                BlockIndex=block.index,
                BlockData=block.data,
                DataLength=BLOCK_SIZE,
                Checksum=block.checksum,
                ChecksumAlgorithm="SHA256",
            )
            return
        except Problem as exc:
            if error_code(exc) != "ResourceNotFoundException" or attempt == NOT_FOUND_ATTEMPTS:
                raise
            time.sleep(attempt)


def upload_snapshot(
    ebs: Any,
    fd: int,
    description: str,
    tags: Mapping[str, str],
    workers: int,
    on_started: Callable[[str], None],
    expect_digest: str | None = None,
) -> UploadResult:
    """Upload the open image file fd as a new snapshot; on_started(snapshot_id) runs as soon as
    it exists, so the caller can delete it if anything after that fails. With expect_digest, the
    sha256 of what was read must be it, or the snapshot is not completed."""
    started = time.monotonic()
    image_hash = ImageHash() if expect_digest else None
    try:
        params = start_params(os.fstat(fd).st_size, description, tags)
        snapshot_id = str(call(ebs, "start_snapshot", "a new snapshot", **params)["SnapshotId"])
        on_started(snapshot_id)
        stats = ReadStats()
        digests = _put_all(ebs, snapshot_id, blocks_of(fd, stats, image_hash), workers)
    finally:
        got = image_hash.hexdigest() if image_hash is not None else None
    if expect_digest and got != expect_digest:
        raise Problem(
            f"the image changed during the upload: its sha256 is {got}, the manifest says {expect_digest}",
            hint="a build replaced the image: rerun the upload",
        )
    checksum = aggregate_checksum(digests)
    call(
        ebs,
        "complete_snapshot",
        snapshot_id,
        SnapshotId=snapshot_id,
        ChangedBlocksCount=len(digests),
        Checksum=checksum,
        ChecksumAlgorithm="SHA256",
        ChecksumAggregationMethod="LINEAR",
    )
    return UploadResult(snapshot_id, params["VolumeSize"], stats, checksum, time.monotonic() - started)


def _put_all(ebs: Any, snapshot_id: str, blocks: Iterator[Block], workers: int) -> dict[int, bytes]:
    """PutSnapshotBlock for every block from a pool of workers, at most 2 x workers in flight;
    the first failure cancels the rest. Returns the block digests by index."""
    digests: dict[int, bytes] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crust-ebs")
    pending: set[Future[None]] = set()
    try:
        for block in blocks:
            while len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            pending.add(pool.submit(put_block, ebs, snapshot_id, block))
            digests[block.index] = block.digest
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return digests
