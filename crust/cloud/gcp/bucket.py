"""The image's tar.gz into a Cloud Storage bucket, as one object named by the image digest.

A small file goes as one resumable upload; from composite_threshold up it is cut into parts sent
in parallel (resumable uploads each), composed into the object, and the parts deleted. Either
way the object only appears once whole, and carries in its metadata the file's sha256 and the
crc32c Crust computed, checked against the crc32c the server computed: an object with those is
complete and this very file (a re-upload sends nothing). An interrupted upload deletes the parts
it made; a resumable session never finished is no object (Cloud Storage drops it after a week).
"""

from __future__ import annotations

import base64
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from crust import faults
from crust.cloud.gcp import client as gcc
from crust.errors import CloudError

CHUNK = 8 * 1024 * 1024  # resumable chunk: a multiple of 256 KiB
PART_MARK = ".part-"


class Stopped(Exception):
    """A part's reader was told to stop (another part failed, or Ctrl-C)."""


class Window:
    """Bytes [start, start + size) of a file as a stream of its own (read, seek, tell), counting
    what the upload reads; the fault point fires once the first chunk has been read."""

    def __init__(self, fh: BinaryIO, start: int, size: int, sent: Callable[[int], None], stop: threading.Event) -> None:
        self.fh, self.start, self.size, self.pos = fh, start, size, 0
        self.sent, self.stop, self.reads = sent, stop, 0

    def read(self, n: int = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped
        left = self.size - self.pos
        n = left if n is None or n < 0 else min(n, left)
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        self.pos += len(data)
        self.sent(len(data))
        self.reads += 1
        if self.reads == 2:
            faults.point("gcp.upload")
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos


@dataclass(frozen=True)
class Sent:
    bytes_sent: int
    seconds: float
    parts: int  # 0: one resumable upload


def crc32c_of(path: Path) -> str:
    """The file's CRC32C as Cloud Storage writes it (base64 of the big-endian 4 bytes)."""
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def complete(blob: Any, sha256: str, size: int) -> bool:
    """The object is whole and holds this very file (what an upload marks it with)."""
    meta = blob.metadata or {}
    return bool(blob.size == size and meta.get(gcc.META_SHA256) == sha256 and meta.get(gcc.META_CRC32C) == blob.crc32c)


def existing(bucket: Any, name: str) -> Any | None:
    from google.api_core import exceptions as api

    blob = bucket.blob(name)
    try:
        blob.reload()
    except api.NotFound:
        return None
    return blob


def delete_quietly(bucket: Any, name: str) -> None:
    from google.api_core import exceptions as api

    try:
        bucket.blob(name).delete()
    except api.NotFound:
        pass


def delete_parts(bucket: Any, name: str) -> int:
    """Delete every part of the object (this upload's or an older one's killed before cleanup)."""
    found = [blob.name for blob in bucket.list_blobs(prefix=name + PART_MARK)]
    for part in found:
        delete_quietly(bucket, part)
    return len(found)


def send(bucket: Any, name: str, path: Path, metadata: dict[str, str], threshold: int, workers: int, say: Callable[[str], None]) -> Sent:
    """Upload the file as the object NAME with this metadata; checked against its crc32c."""
    size = path.stat().st_size
    counted: list[int] = []
    lock = threading.Lock()

    def sent(n: int) -> None:
        with lock:
            counted.append(n)

    started = time.monotonic()
    parts = 0
    if threshold and size >= threshold and size >= 2 * CHUNK:
        parts = send_composite(bucket, name, path, size, metadata, workers, sent, say)
    else:
        with path.open("rb") as fh:
            upload_part(bucket, name, Window(fh, 0, size, sent, threading.Event()), size, metadata)
    blob = existing(bucket, name)
    if blob is None or blob.crc32c != metadata[gcc.META_CRC32C] or blob.size != size:
        got = "nothing" if blob is None else f"{blob.size} bytes, crc32c {blob.crc32c}"
        raise CloudError(
            f"gs://{bucket.name}/{name} holds {got}, not the {size} bytes sent (crc32c {metadata[gcc.META_CRC32C]})", hint="rerun the upload"
        )
    return Sent(sum(counted), time.monotonic() - started, parts)


def upload_part(bucket: Any, name: str, stream: Window, size: int, metadata: dict[str, str] | None) -> None:
    """One resumable upload; the library checks the server's crc32c against the bytes it sent."""
    blob = bucket.blob(name, chunk_size=CHUNK)
    if metadata is not None:
        blob.metadata = metadata
    blob.upload_from_file(stream, size=size, content_type="application/gzip", checksum="crc32c", rewind=False)


def send_composite(
    bucket: Any, name: str, path: Path, size: int, metadata: dict[str, str], workers: int, sent: Callable[[int], None], say: Callable[[str], None]
) -> int:
    """Parts of at least one chunk each, sent in parallel, composed into NAME, then deleted."""
    count = max(2, min(workers, size // CHUNK))
    part_size = -(-size // count // CHUNK) * CHUNK  # whole chunks, the last part the rest
    ranges = [(i, i * part_size, min(part_size, size - i * part_size)) for i in range(count) if i * part_size < size]
    names = [f"{name}{PART_MARK}{i:02d}" for i, _, _ in ranges]
    say(f"sending {path.name} as {len(ranges)} parallel parts of up to {part_size} bytes, composed into {name}")
    stop = threading.Event()

    def one(index: int, start: int, length: int) -> None:
        with path.open("rb") as fh:
            part_of = {gcc.META_APPLIANCE: metadata[gcc.META_APPLIANCE], gcc.META_PART_OF: name}
            upload_part(bucket, names[index], Window(fh, start, length, sent, stop), length, part_of)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="gcp-part") as pool:
            futures = [pool.submit(one, *r) for r in ranges]
            try:
                for future in concurrent.futures.as_completed(futures):
                    future.result()
            except BaseException:
                stop.set()  # the other parts stop at their next read; the pool waits for them
                raise
        composed = bucket.blob(name)
        composed.metadata = metadata
        composed.content_type = "application/gzip"
        composed.compose([bucket.blob(n) for n in names])
    finally:
        delete_parts(bucket, name)
    return len(ranges)
