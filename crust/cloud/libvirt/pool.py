"""Volumes in a libvirt storage pool: sparse stream upload and download, and the record that
says a volume holds a whole image.

libvirt volumes carry no tags, and an upload cannot be renamed into place. So every image
volume has a small companion, NAME.crust.json: written before the upload with
"complete": false, rewritten with true once every byte arrived. An image without a complete
companion is left by an interrupted upload: never reused, listed as an orphan.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from crust import faults
from crust.errors import CloudError, UserError

RECORD_SUFFIX = ".crust.json"
RECORD_SIZE = 4096


@dataclass
class Sent:
    """What a sparse upload sent: data bytes, and bytes of holes skipped."""

    data: int = 0
    holes: int = 0


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def libvirt_errors(what: str) -> Iterator[None]:
    """A libvirt error inside (a full pool, a host gone, a volume in use) is one line naming
    what was asked, not an internal error."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise CloudError(f"{what}: libvirt: {first_line(exc)}", hint="the host's libvirtd log says more; rerun when it is fixed") from None


DEFAULT_POOL = "default"
DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def make_default_pool(conn: Any) -> Any:
    """The pool "default", a directory pool at /var/lib/libvirt/images, as virt-install makes
    it on first use (persistent, started, autostarted)."""
    xml = f"<pool type='dir'><name>{DEFAULT_POOL}</name><target><path>{DEFAULT_POOL_PATH}</path></target></pool>"
    pool = conn.storagePoolDefineXML(xml, 0)
    try:
        pool.build(0)
        pool.create(0)
        pool.setAutostart(1)
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            pool.undefine()
        raise
    return pool


def find_pool(conn: Any, name: str, uri: str, say: Any = None) -> Any:
    """The active storage pool NAME (refreshed: volumes made by others are seen). The pool
    "default" is made when the host has none, as virt-install does."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        if name == DEFAULT_POOL:
            try:
                pool = make_default_pool(conn)
            except libvirt.libvirtError as exc:
                raise CloudError(
                    f"could not make storage pool default at {uri}: {first_line(exc)}", hint="make one, or set pool in [targets.libvirt]"
                ) from None
            if say is not None:
                say(f"made storage pool default ({DEFAULT_POOL_PATH}) at {uri}, as virt-install does")
            return pool
        raise UserError(
            f"no storage pool {name!r} at {uri}",
            hint=f"make one (virsh pool-define-as {name} dir --target /var/lib/libvirt/images; virsh pool-build {name}; virsh pool-start {name}) or set pool in [targets.libvirt]",
        ) from None
    if not pool.isActive():
        raise UserError(f"storage pool {name!r} at {uri} is not active", hint=f"virsh pool-start {name}")
    pool.refresh(0)
    return pool


def lookup(pool: Any, name: str) -> Any | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def volume_xml(name: str, capacity: int, fmt: str, backing: str | None = None) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    if backing is not None:
        store = ET.SubElement(vol, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")


def create_volume(pool: Any, name: str, capacity: int, fmt: str, backing: str | None = None) -> Any:
    try:
        return pool.createXML(volume_xml(name, capacity, fmt, backing), 0)
    except libvirt.libvirtError as exc:
        raise CloudError(
            f"could not make volume {name} in pool {pool.name()}: {first_line(exc)}", hint="check the pool's space and permissions"
        ) from None


def remove_volume(pool: Any, name: str) -> None:
    delete_volume(pool, name)


def delete_volume(pool: Any, name: str) -> bool:
    """Remove volume NAME if it exists; whether it did."""
    vol = lookup(pool, name)
    if vol is None:
        return False
    vol.delete(0)
    return True


def _hole_or_data(fd: int) -> list[Any]:
    """For libvirt's sparse stream: [in data?, length of this section] from the position."""
    cur = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        data = os.lseek(fd, cur, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        data = -1  # no data after cur: a hole to the end
    if data < 0:
        section = [False, os.lseek(fd, 0, os.SEEK_END) - cur]
    elif data > cur:
        section = [False, data - cur]
    else:
        section = [True, os.lseek(fd, data, os.SEEK_HOLE) - data]
    os.lseek(fd, cur, os.SEEK_SET)
    return section


def upload_file(conn: Any, vol: Any, path: Path, fault: str | None = None) -> Sent:
    """The file's bytes into the volume through a sparse stream: holes are skipped, not sent.
    fault: a fault point (crust.faults) reached once the first chunk has gone."""
    sent = Sent()
    fd = os.open(path, os.O_RDONLY)
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)

        def send(_stream: Any, nbytes: int, fd: int) -> bytes:
            data = os.read(fd, nbytes)
            sent.data += len(data)
            if fault is not None and sent.data > len(data):  # a chunk has gone: an interruption now is mid-transfer
                faults.point(fault)
            return data

        def hole(_stream: Any, fd: int) -> list[Any]:
            return _hole_or_data(fd)

        def skip(_stream: Any, length: int, fd: int) -> int:
            sent.holes += length
            os.lseek(fd, length, os.SEEK_CUR)
            return 0

        stream.sparseSendAll(send, hole, skip, fd)
        stream.finish()
    except BaseException:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        raise
    finally:
        os.close(fd)
    return sent


def upload_bytes(conn: Any, vol: Any, data: bytes) -> None:
    stream = conn.newStream(0)
    vol.upload(stream, 0, len(data), 0)
    stream.send(data)
    stream.finish()


def download(conn: Any, vol: Any, fh: Any) -> int:
    """The volume's bytes into an open binary file; how many."""
    stream = conn.newStream(0)
    vol.download(stream, 0, 0, 0)
    total = 0

    def receive(_stream: Any, data: bytes, fh: Any) -> int:
        nonlocal total
        total += len(data)
        fh.write(data)
        return len(data)

    stream.recvAll(receive, fh)
    stream.finish()
    return total


def read_record(conn: Any, pool: Any, image: str) -> dict[str, Any] | None:
    """The companion record of image volume IMAGE, if it exists and parses."""
    vol = lookup(pool, image + RECORD_SUFFIX)
    if vol is None:
        return None
    import io

    buf = io.BytesIO()
    download(conn, vol, buf)
    try:
        record: dict[str, Any] = json.loads(buf.getvalue().rstrip(b"\0 \n").decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record


def write_record(conn: Any, pool: Any, image: str, record: dict[str, Any]) -> None:
    """The companion record of IMAGE (made if missing), padded to its fixed size."""
    data = json.dumps(record, sort_keys=True).encode()
    if len(data) >= RECORD_SIZE:
        raise ValueError("record too long")
    name = image + RECORD_SUFFIX
    vol = lookup(pool, name) or create_volume(pool, name, RECORD_SIZE, "raw")
    upload_bytes(conn, vol, data.ljust(RECORD_SIZE, b" "))


def records(conn: Any, pool: Any) -> dict[str, dict[str, Any]]:
    """Every image volume's record in the pool: image name -> record (None when unreadable)."""
    found = {}
    for name in pool.listVolumes():
        if name.endswith(RECORD_SUFFIX):
            image = name[: -len(RECORD_SUFFIX)]
            found[image] = read_record(conn, pool, image) or {}
    return found
