"""The shared cache's entry format: a store entry through pack and unpack is the same tree
(modes, owners, times to the nanosecond, links, hard links, FIFOs, xattrs, holes), and an
archive that reaches outside its destination is refused."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from crust.build.equivalence import digest_output
from crust.cache.archive import BadArchive, pack_entry, unpack_entry


def make_entry(root: Path) -> Path:
    """A small synthetic store entry with what a tree step's entry holds."""
    entry = root / "entry"
    (entry / "tree" / "usr" / "bin").mkdir(parents=True)
    (entry / "tree" / "etc").mkdir()
    (entry / "tree" / "secret").mkdir(mode=0o700)
    (entry / "step.json").write_text('{"kind": "tree"}\n')
    tool = entry / "tree" / "usr" / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(tool, 0o4755)
    os.link(tool, entry / "tree" / "usr" / "bin" / "tool-again")
    shadow = entry / "tree" / "etc" / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(shadow, 0o640)
    os.symlink("/usr/bin", entry / "tree" / "bin")
    os.symlink("../usr/bin/tool", entry / "tree" / "etc" / "tool-link")
    os.mkfifo(entry / "tree" / "etc" / "fifo")
    os.setxattr(tool, "user.crust", b"\x01\x00\xffbinary")
    sparse = entry / "disk.raw"
    with open(sparse, "wb") as fh:
        fh.write(b"head")
        fh.seek(8 * 1024 * 1024)
        fh.write(b"tail")
    if os.geteuid() == 0:
        os.chown(shadow, 0, 42)
        os.chown(entry / "tree" / "secret", 1234, 5678)
        os.chown(entry / "tree" / "bin", 1234, 5678, follow_symlinks=False)
    for i, path in enumerate(sorted(entry.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_123_456_789 + i), follow_symlinks=False)
    os.utime(entry, ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_001))
    return entry


def describe(root: Path) -> dict[str, Any]:
    """Every path under root: type, mode, owner, exact mtime, content or target, xattrs, inode group."""
    facts: dict[str, Any] = {}
    inodes: dict[int, str] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        fact: dict[str, Any] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            fact["target"] = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            fact["content"] = path.read_bytes()
            fact["same_as"] = inodes.setdefault(st.st_ino, rel)
        if not stat.S_ISLNK(st.st_mode):
            fact["xattrs"] = {n: os.getxattr(path, n) for n in os.listxattr(path)}
        facts[rel] = fact
    return facts


def round_trip(entry: Path, dest: Path) -> bytes:
    blob = io.BytesIO()
    pack_entry(entry, blob)
    dest.mkdir()
    unpack_entry(io.BytesIO(blob.getvalue()), dest)
    return blob.getvalue()


def test_round_trip_is_the_same_tree(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    blob = round_trip(entry, tmp_path / "out")
    assert describe(tmp_path / "out") == describe(entry)
    assert digest_output(tmp_path / "out") == digest_output(entry)
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    assert (tmp_path / "out" / "disk.raw").stat().st_blocks * 512 < 1024 * 1024  # the hole stayed a hole


def test_archive_is_pax_with_numeric_owners(tmp_path: Path) -> None:
    entry = make_entry(tmp_path)
    blob = io.BytesIO()
    pack_entry(entry, blob)
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob.getvalue())).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    assert all(m.uname == "" and m.gname == "" for m in members)
    tool = next(m for m in members if m.name == "./tree/usr/bin/tool")
    assert tool.pax_headers["SCHILY.xattr.user.crust"].encode("utf-8", "surrogateescape") == b"\x01\x00\xffbinary"
    assert next(m for m in members if m.name == "./tree/usr/bin/tool-again").islnk()


def evil_archive(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return io.BytesIO(zstandard.ZstdCompressor().compress(raw.getvalue()))


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    "members",
    [
        [(member("../escaped"), b"x")],
        [(member("/etc/escaped"), b"x")],
        [(member("./a/../../escaped"), b"x")],
        [(member("./link", tarfile.SYMTYPE, "/tmp"), b""), (member("./link/escaped"), b"x")],
        [(member("./hard", tarfile.LNKTYPE, "/etc/passwd"), b"")],
        [(member("./nodir/file"), b"x")],
    ],
    ids=["dotdot", "absolute", "dotdot-inside", "through-symlink", "hardlink-outside", "no-parent"],
)
def test_archive_reaching_outside_is_refused(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BadArchive):
        unpack_entry(evil_archive(members), dest)
    assert not (tmp_path / "escaped").exists()


def test_garbage_is_a_bad_archive(tmp_path: Path) -> None:
    with pytest.raises(BadArchive):
        unpack_entry(io.BytesIO(b"not zstd at all"), tmp_path)
