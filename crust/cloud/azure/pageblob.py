"""A fixed VHD to a page blob, sending only its data.

A page blob is all zeros until pages are written, so only the file's allocated ranges are read
(os.lseek SEEK_DATA/SEEK_HOLE, widened to 512-byte pages) and only chunks holding a non-zero
byte are sent: at most 4 MiB each, several at once, each with its Content-MD5. The blob's
metadata says which image it is; ``crust_complete`` (the image digest) is written last, so a
blob without it is an upload that did not finish.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crust.cloud.azure.client import TAG_COMPLETE

PAGE = 512
CHUNK = 4 * 1024 * 1024  # Put Page's largest range


@dataclass(frozen=True)
class Sent:
    bytes_sent: int
    chunks_sent: int
    chunks_skipped: int  # allocated but all zero
    seconds: float


def allocated_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the file's data, in 512-byte pages; the whole file where the file system
    cannot tell holes."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            start, end = offset, size  # no SEEK_DATA here: all of it is data (zero chunks are still skipped)
        start, end = start - start % PAGE, min(size, -(-end // PAGE) * PAGE)
        yield start, end
        offset = end


def chunks(ranges: Iterator[tuple[int, int]], most: int = CHUNK) -> Iterator[tuple[int, int]]:
    """(offset, length) pieces of at most `most` bytes, on page boundaries, merged ranges kept apart."""
    for start, end in ranges:
        for offset in range(start, end, most):
            yield offset, min(most, end - offset)


def is_complete(properties: Any, digest: str, size: int) -> bool:
    return bool(properties.metadata.get(TAG_COMPLETE) == digest and properties.size == size)


def send_pages(blob: Any, path: Path, workers: int, on_first: Callable[[], None] = lambda: None) -> Sent:
    """Write the file's non-zero chunks to the (existing, zero) page blob of its size. An error or
    an interrupt cancels what is not sent yet and waits for what is in flight."""
    started = time.monotonic()
    counted = {"bytes": 0, "chunks": 0, "skipped": 0}
    lock = threading.Lock()
    first = threading.Event()

    def send(fd: int, offset: int, length: int) -> None:
        data = os.pread(fd, length, offset)
        if not data.strip(b"\0"):
            with lock:
                counted["skipped"] += 1
            return
        blob.upload_page(data, offset=offset, length=len(data), validate_content=True)
        with lock:
            counted["bytes"] += len(data)
            counted["chunks"] += 1
        if not first.is_set():
            first.set()
            on_first()

    fd = os.open(path, os.O_RDONLY)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crust-page")
    try:
        size = os.fstat(fd).st_size
        pending: set[concurrent.futures.Future[None]] = set()
        for offset, length in chunks(allocated_ranges(fd, size)):
            if len(pending) >= workers * 2:  # bounded: a few chunks in memory, not the image
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    future.result()
            pending.add(pool.submit(send, fd, offset, length))
        for future in concurrent.futures.as_completed(pending):
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        os.close(fd)
    return Sent(counted["bytes"], counted["chunks"], counted["skipped"], time.monotonic() - started)


def open_blob(container: Any, blob_name: str, size: int, digest: str, metadata: dict[str, str], say: Callable[[str], None]) -> tuple[Any, bool]:
    """The blob for this VHD and whether it is already complete (then nothing is to be sent).
    A blob of that name that is not complete (a killed upload's) is replaced by a new, empty
    page blob of the file's size; the container is made if missing."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    try:
        container.create_container()
        say(f"made container {container.container_name}")
    except ResourceExistsError:
        pass
    blob = container.get_blob_client(blob_name)
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError:
        properties = None
    if properties is not None and is_complete(properties, digest, size):
        return blob, True
    if properties is not None:
        blob.delete_blob()
        say(f"removed blob {blob_name}, left incomplete by an interrupted upload")
    blob.create_page_blob(size, metadata={k: v for k, v in metadata.items() if k != TAG_COMPLETE})
    return blob, False


def mark_complete(blob: Any, metadata: dict[str, str], digest: str) -> None:
    """The last write: the blob holds the whole VHD."""
    blob.set_blob_metadata({**metadata, TAG_COMPLETE: digest})


def delete_blob(blob: Any) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        blob.delete_blob()
    except ResourceNotFoundError:
        pass
