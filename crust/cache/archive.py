"""A store entry as a zstd-compressed PAX tar stream, and back into a directory.

What the local store keeps of an entry, the archive keeps: every file, directory, symlink,
hard link, device node and FIFO, with its mode (setuid and all), numeric owner and group, times
(to the nanosecond, PAX), and extended attributes (``SCHILY.xattr.NAME`` records, as GNU tar
and star write them: file capabilities, say). No user or group names: numbers only.

Unpacking writes only inside its destination: a member path that is absolute, has a ``..``,
or lies under anything but a directory the archive made is refused, as is a hard link to a
file it did not make; files are created exclusively, never through a link. Runs of zeros are
written as holes, so a sparse disk image stays sparse.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

import zstandard

LEVEL = 3
THREADS = -1  # zstd's own worker threads: one per CPU
CHUNK = 128 * 1024
XATTR = "SCHILY.xattr."
ZEROS = bytes(CHUNK)


class BadArchive(Exception):
    """The archive is not what Crust writes: a member outside the destination, or unreadable."""


def pack_entry(entry: Path, out: BinaryIO) -> None:
    """Write the entry directory to out as a zstd-compressed PAX tar (streamed)."""
    compressor = zstandard.ZstdCompressor(level=LEVEL, threads=THREADS)
    with compressor.stream_writer(out, closefd=False) as zout, tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(entry), arcname=".", recursive=True, filter=lambda info: describe_member(entry, info))


def describe_member(entry: Path, info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Numeric owners only, and the member's extended attributes as PAX records."""
    info.uname = info.gname = ""
    source = entry / info.name
    ns = os.lstat(source).st_mtime_ns
    info.mtime = ns // 1_000_000_000  # the whole seconds in the ustar header, the exact time in PAX
    records = {**info.pax_headers, "mtime": pax_time(ns)}
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError:
        names = []
    for name in sorted(names):
        value = os.getxattr(source, name, follow_symlinks=False)
        records[XATTR + name] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = records
    return info


def unpack_entry(blob: BinaryIO, dest: Path) -> None:
    """Unpack a compressed archive pack_entry wrote into dest (an existing empty directory)."""
    reader = zstandard.ZstdDecompressor().stream_reader(blob, closefd=False)
    made_dirs: dict[str, tarfile.TarInfo] = {}
    made_files: set[str] = set()
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for info in tar:
                rel = member_path(info.name)
                target = dest / rel if rel != "." else dest
                if rel != "." and posixpath.dirname(rel) not in made_dirs and posixpath.dirname(rel) != "":
                    raise BadArchive(f"{info.name}: under no directory of the archive")
                if rel != "." and "." not in made_dirs:
                    raise BadArchive(f"{info.name}: before the archive's root")
                if info.isdir():
                    if rel != ".":
                        os.mkdir(target, 0o700)
                    made_dirs[rel] = info
                    set_owner_and_xattrs(target, info)
                    continue
                make_member(tar, info, rel, target, dest, made_files)
                made_files.add(rel)
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise BadArchive(f"unreadable archive: {exc}") from exc
    for rel in sorted(made_dirs, key=lambda r: r.count("/") + (r != "."), reverse=True):  # deepest first
        info = made_dirs[rel]
        target = dest / rel if rel != "." else dest
        os.chmod(target, stat.S_IMODE(info.mode))
        set_times(target, info)


def member_path(name: str) -> str:
    """The member's path relative to the destination ("." for its root); refused if it leaves it."""
    norm = posixpath.normpath(name) if name else "."
    if norm.startswith("/") or norm == ".." or norm.startswith("../") or "/../" in norm:
        raise BadArchive(f"{name}: outside the destination")
    return norm


def make_member(tar: tarfile.TarFile, info: tarfile.TarInfo, rel: str, target: Path, dest: Path, made_files: set[str]) -> None:
    if rel == ".":
        raise BadArchive("the archive's root is not a directory")
    if info.isreg():
        source = tar.extractfile(info)
        assert source is not None
        write_sparse(source, target, info.size)
    elif info.issym():
        os.symlink(info.linkname, target)
    elif info.islnk():
        linked = member_path(info.linkname)
        if linked not in made_files:
            raise BadArchive(f"{info.name}: a hard link to {info.linkname}, not a file of the archive")
        os.link(dest / linked, target, follow_symlinks=False)
        return  # the same inode: its owner, mode, times and attributes are set
    elif info.ischr() or info.isblk():
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
        os.mknod(target, kind | 0o600, os.makedev(info.devmajor, info.devminor))
    elif info.isfifo():
        os.mkfifo(target, 0o600)
    else:
        raise BadArchive(f"{info.name}: a member of an unknown type")
    set_owner_and_xattrs(target, info)
    if not info.issym():
        os.chmod(target, stat.S_IMODE(info.mode))  # after chown, which clears setuid bits
    set_times(target, info)


def write_sparse(source: IO[bytes], target: Path, size: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            if chunk == ZEROS[: len(chunk)]:
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate(size)


def set_owner_and_xattrs(target: Path, info: tarfile.TarInfo) -> None:
    if os.geteuid() == 0:
        os.chown(target, info.uid, info.gid, follow_symlinks=False)
    for key, value in sorted(info.pax_headers.items()):
        if key.startswith(XATTR):
            try:
                os.setxattr(target, key[len(XATTR) :], value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                raise BadArchive(f"{info.name}: cannot set attribute {key[len(XATTR) :]}: {exc.strerror}") from exc


def set_times(target: Path, info: tarfile.TarInfo) -> None:
    mtime = info.pax_headers.get("mtime")
    ns = parse_pax_time(mtime) if mtime else int(info.mtime) * 1_000_000_000
    os.utime(target, ns=(ns, ns), follow_symlinks=False)


def pax_time(ns: int) -> str:
    whole = abs(ns)
    return f"{'-' if ns < 0 else ''}{whole // 1_000_000_000}.{whole % 1_000_000_000:09d}"


def parse_pax_time(text: str) -> int:
    """A PAX time ("1700000000.123456789") in nanoseconds, exactly (no float rounding)."""
    whole, _, fraction = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return int(whole) * 1_000_000_000 + sign * int((fraction + "000000000")[:9] or "0")
