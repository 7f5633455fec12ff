"""The Azure target's page blob upload against a real blob service (Azurite, started by the
tests): a small fixed VHD made by qemu-img from a sparse raw file, its data sent and read back
byte for byte, holes and zero chunks never sent, a complete blob reused with nothing sent, an
incomplete one replaced."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crust.cloud.azure.pageblob import CHUNK, allocated_ranges, chunks, delete_blob, is_complete, mark_complete, open_blob, send_pages
from tests.conftest import need, need_tool
from tests.integration.azurite_server import azurite_available, azurite_server

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
DIGEST = "ab" * 32


def make_vhd(where: Path, mib: int = 32, zero_chunk_at: int | None = 24) -> Path:
    """A fixed VHD of `mib` MiB: data at 0 (1 MiB), at 10 MiB (5 MiB, across a 4 MiB chunk edge)
    and a last sector, holes elsewhere, and (zero_chunk_at) 4 MiB of written zeros."""
    need_tool("qemu-img")
    raw = where / "disk.raw"
    with open(raw, "wb") as fh:
        fh.truncate(mib * MIB)
        fh.write(os.urandom(MIB))
        fh.seek(10 * MIB + 512)
        fh.write(os.urandom(5 * MIB))
        fh.seek(mib * MIB - 512)
        fh.write(b"end of disk".ljust(512, b"."))
    vhd = where / "disk.vhd"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", str(raw), str(vhd)], check=True)
    if zero_chunk_at is not None:
        with open(vhd, "r+b") as fh:  # allocated, all zero: read, never sent
            fh.seek(zero_chunk_at * MIB)
            fh.write(bytes(CHUNK))
            os.fsync(fh.fileno())
    return vhd


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need(azurite_available(), "no Azurite in .azurite/ (./setup.sh installs the npm package azurite)")
    with azurite_server(tmp_path_factory.mktemp("azurite")) as connection:
        yield connection


@pytest.fixture
def container(azurite: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    client = service.get_container_client(f"test-{request.node.name.replace('_', '-')[:50].lower().strip('-')}")
    yield client
    client.delete_container()


def read_back(blob: Any) -> str:
    digest = hashlib.sha256()
    for chunk in blob.download_blob().chunks():
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ranges_are_the_data_on_page_bounds(tmp_path: Path) -> None:
    vhd = make_vhd(tmp_path, zero_chunk_at=None)
    size = vhd.stat().st_size
    fd = os.open(vhd, os.O_RDONLY)
    try:
        ranges = list(allocated_ranges(fd, size))
    finally:
        os.close(fd)
    assert all(start % 512 == 0 and end % 512 == 0 for start, end in ranges)
    assert sum(end - start for start, end in ranges) < 12 * MIB  # holes are not ranges
    assert ranges[-1][1] == size  # the footer
    pieces = list(chunks(iter(ranges)))
    assert all(length <= CHUNK and offset % 512 == 0 for offset, length in pieces)


def test_upload_reads_back_and_reuse_sends_nothing(tmp_path: Path, container: Any) -> None:
    vhd = make_vhd(tmp_path)
    size = vhd.stat().st_size
    meta = {"crust_appliance": "demo", "crust_image_digest": DIGEST}
    said: list[str] = []
    blob, complete = open_blob(container, f"{DIGEST}.vhd", size, DIGEST, meta, said.append)
    assert complete is False and said == [f"made container {container.container_name}"]
    sent = send_pages(blob, vhd, workers=4)
    mark_complete(blob, meta, DIGEST)
    assert read_back(blob) == sha256_of(vhd)
    assert sent.chunks_skipped >= 1  # the written zeros
    assert 6 * MIB <= sent.bytes_sent < 8 * MIB  # data only (6 MiB and two sectors), not 32 MiB
    properties = blob.get_blob_properties()
    assert properties.blob_type == "PageBlob" and properties.size == size and is_complete(properties, DIGEST, size)
    assert properties.metadata == {**meta, "crust_complete": DIGEST}

    again, complete = open_blob(container, f"{DIGEST}.vhd", size, DIGEST, meta, said.append)
    assert complete is True
    assert again.get_blob_properties().etag == properties.etag  # nothing written


def test_an_incomplete_blob_is_replaced(tmp_path: Path, container: Any) -> None:
    vhd = make_vhd(tmp_path, mib=16, zero_chunk_at=None)
    size = vhd.stat().st_size
    meta = {"crust_appliance": "demo", "crust_image_digest": DIGEST}
    left, _ = open_blob(container, f"{DIGEST}.vhd", size, DIGEST, meta, lambda _: None)
    left.upload_page(b"\xff" * 512, offset=2 * MIB, length=512)  # a killed upload's page, not in the VHD
    said: list[str] = []
    blob, complete = open_blob(container, f"{DIGEST}.vhd", size, DIGEST, meta, said.append)
    assert complete is False and said == [f"removed blob {DIGEST}.vhd, left incomplete by an interrupted upload"]
    send_pages(blob, vhd, workers=2)
    mark_complete(blob, meta, DIGEST)
    assert read_back(blob) == sha256_of(vhd)


def test_a_failed_page_stops_the_upload(tmp_path: Path, container: Any) -> None:
    vhd = make_vhd(tmp_path, mib=16, zero_chunk_at=None)
    meta = {"crust_appliance": "demo"}
    blob, _ = open_blob(container, f"{DIGEST}.vhd", vhd.stat().st_size, DIGEST, meta, lambda _: None)
    blob.delete_blob()  # gone under the upload's feet: Put Page fails
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError):
        send_pages(blob, vhd, workers=2)
    delete_blob(blob)  # gone already: fine
    assert [b.name for b in container.list_blobs()] == []
