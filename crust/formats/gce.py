"""gce: what Compute Engine imports, ``disk.raw`` alone in a sparse GNU tar, gzip'd (NAME.gce).

Compute Engine wants the disk a whole number of GiB: a copy of the raw image is grown to the
next GiB (sparse zeros) and its backup GPT moved to the new end (``sfdisk --relocate``), so the
firmware finds both headers where they belong. The tar is the one Google's import guide makes
(``tar --format=oldgnu -S``: the old GNU sparse map, which every GNU tar and Compute Engine read),
with every varying field pinned (the build's epoch, owner 0, a fixed mode) and gzip -n (no name,
no time stamp): the same raw image gives the same bytes. Written to a temporary name, renamed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from crust.formats.kind import ConvertJob, Format, Machine
from crust.runner import run

GIB = 1024**3
MEMBER = "disk.raw"  # the one member name Compute Engine accepts
TOOLS = ("tar", "gzip", "sfdisk")


def gib_size(size: int) -> int:
    """The size rounded up to a whole GiB (Compute Engine refuses any other)."""
    return -(-size // GIB) * GIB


def copy_sparse(src: Path, dest: Path) -> None:
    """A copy that keeps the holes: only the data ranges SEEK_DATA/SEEK_HOLE find are copied."""
    size = src.stat().st_size
    with src.open("rb") as fin, dest.open("wb") as fout:
        rfd, wfd = fin.fileno(), fout.fileno()
        offset = 0
        while offset < size:
            try:
                start = os.lseek(rfd, offset, os.SEEK_DATA)
                end = os.lseek(rfd, start, os.SEEK_HOLE)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                start, end = offset, size  # no SEEK_DATA here: all of the rest is data
            copy_range(rfd, wfd, start, end)
            offset = end
        fout.truncate(size)


def copy_range(rfd: int, wfd: int, start: int, end: int) -> None:
    """Bytes [start, end) at the same offsets: copy_file_range, or read and write where the
    kernel cannot (across file systems on older kernels, some network or overlay file systems)."""
    while start < end:
        try:
            sent = os.copy_file_range(rfd, wfd, min(end - start, 1 << 30), start, start)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            sent = 0
        if sent == 0:
            data = os.pread(rfd, min(end - start, 8 << 20), start)
            if not data:
                raise OSError(f"copy stopped at byte {start}: the file ended early")
            sent = os.pwrite(wfd, data, start)
        start += sent


def has_gpt(disk: Path) -> bool:
    """The disk has a GPT: its primary header's signature in the second 512-byte sector."""
    with disk.open("rb") as fh:
        fh.seek(512)
        return fh.read(8) == b"EFI PART"


def write_gce(raw: Path, out: Path, epoch: int) -> None:
    work = out.parent / f".{out.name}.work"
    work.mkdir()
    try:
        pack(raw, work, epoch)
        os.replace(work / "disk.tar.gz", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # on failure too: no grown copy of the disk left


def pack(raw: Path, work: Path, epoch: int) -> None:
    """WORK/disk.tar.gz from the raw image (its copy grown to a whole GiB in WORK/disk.raw)."""
    disk = work / MEMBER
    copy_sparse(raw, disk)
    grown = gib_size(raw.stat().st_size)
    if grown != raw.stat().st_size:
        os.truncate(disk, grown)
        if has_gpt(disk):  # its backup header must sit in the last sector; an MBR or bare disk has none
            run(["sfdisk", "--quiet", "--relocate", "gpt-bak-std", str(disk)])
    tar = work / "disk.tar"
    run(
        [
            "tar",
            "--create",
            "--sparse",
            "--format=oldgnu",
            f"--mtime=@{epoch}",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mode=0644",
            "--sort=name",
            f"--file={tar}",
            f"--directory={work}",
            MEMBER,
        ]
    )
    disk.unlink()
    run(["gzip", "-n", str(tar)])  # -n: no file name, no time stamp in the header


def convert(job: ConvertJob) -> None:
    write_gce(job.raw, job.out, job.epoch)


def tool_inputs(machine: Machine) -> Mapping[str, str]:
    """The versions of tar, gzip and sfdisk: they shape the bytes (part of the step's id)."""
    from crust.build.code import tool_versions

    return tool_versions(TOOLS)


FORMAT = Format(name="gce", help="gce (Compute Engine's disk.raw in a sparse tar.gz)", order=50, convert=convert, inputs=tool_inputs)
