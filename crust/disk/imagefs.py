"""Read a raw disk image's root file system without booting or mounting it (no loop devices).

The GPT (sfdisk --json) gives the root partition's offset; debugfs opens the ext4 file system
at that offset (its ``?offset=`` io option) and copies the tree out with ``rdump``. rdump
writes the right modes but then chowns each file, and the kernel clears setuid/setgid bits on
a chown: so a listing of every directory (``ls -p`` in one debugfs run) puts those modes back.
The same listing checks the copy is whole (debugfs reports a failed write, a full disk say, but
still exits 0): an audit of a partial copy would pass what it never saw.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from crust.errors import CommandError, CrustError, UserError
from crust.runner import run

ROOT_TYPES = ("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",)  # x86-64 root (Discoverable Partitions)
LINUX_DATA = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int  # bytes
    size: int  # bytes
    type: str
    name: str


def partitions(image: Path) -> list[Partition]:
    """The image's GPT partitions."""
    try:
        out = run(["sfdisk", "--json", str(image)], capture=True).stdout
        table = json.loads(out)["partitiontable"]
    except (CommandError, json.JSONDecodeError, KeyError) as exc:
        raise UserError(
            f"{image}: not a raw disk image with a partition table ({exc})", hint="give a raw image (qemu-img convert -O raw converts others)"
        ) from None
    sector = int(table.get("sectorsize", 512))
    return [
        Partition(i, int(p["start"]) * sector, int(p["size"]) * sector, str(p.get("type", "")).upper(), str(p.get("name", "")))
        for i, p in enumerate(table.get("partitions", []), 1)
    ]


def root_partition(image: Path) -> Partition:
    """The root partition: by its GPT type, else the one named "root", else the only Linux one."""
    parts = partitions(image)
    linux = [p for p in parts if p.type == LINUX_DATA]
    for found in ([p for p in parts if p.type in ROOT_TYPES], [p for p in parts if p.name == "root"], linux if len(linux) == 1 else []):
        if found:
            return found[0]
    raise UserError(f"{image}: no root partition in its partition table", hint="Crust images have an x86-64 root partition (GPT type 4F68BCE3-...)")


def debugfs_source(image: Path, part: Partition) -> str:
    return f"{image}?offset={part.offset}"


def used_bytes(source: str) -> int:
    """How much the file system holds (its used blocks), from debugfs's stats."""
    out = run(["debugfs", "-R", "stats", source], capture=True).stdout
    values = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    try:
        return (int(values["Block count"]) - int(values["Free blocks"])) * int(values["Block size"])
    except (KeyError, ValueError):
        raise UserError(f"{source}: not an ext4 file system debugfs can read", hint="give a Crust image (ext4 root)") from None


@contextmanager
def extracted_root(image: Path, workdir: Path) -> Iterator[Path]:
    """The image's root file system copied into a fresh directory under workdir; removed on
    exit, also on failure or Ctrl-C."""
    source = debugfs_source(image, root_partition(image))
    workdir.mkdir(parents=True, exist_ok=True)
    need, free = used_bytes(source), shutil.disk_usage(workdir).free
    if need + 256 * 1024 * 1024 > free:
        raise UserError(
            f"not enough space in {workdir} to read the image: it holds {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free",
            hint="free some space (./build.py clean) or use --store on a bigger disk",
        )
    # named *.PID so that Store.remove_stale_tmp removes it if this process is killed
    dest = Path(tempfile.mkdtemp(prefix="audit-", suffix=f".{os.getpid()}", dir=workdir))
    try:
        run(["debugfs", "-R", f"rdump / {dest}", source])
        missing = check_copy(source, dest)
        if missing:
            raise CrustError(f"{image}: the copy of its root file system is incomplete ({len(missing)} entries missing or short, first {missing[0]})")
        yield dest
    finally:
        remove_extracted(dest)


def check_copy(source: str, dest: Path) -> list[str]:
    """Compare the copy with the file system's own listing of every directory (one debugfs
    run): return what is missing or short, and put back the modes rdump lost (setuid bits)."""
    dirs = ["/"]
    for dirpath, dirnames, _files in os.walk(dest):
        dirs += [f"/{os.path.relpath(os.path.join(dirpath, d), dest)}" for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    script = dest.parent / f"{dest.name}.ls"
    # `ls -p` prints /inode/mode/uid/gid/name/size/ per entry (a name cannot hold a '/')
    script.write_text("".join(f'ls -p "{d}"\n' for d in dirs if '"' not in d and "\n" not in d), encoding="utf-8")
    try:
        out = run(["debugfs", "-f", str(script), source], capture=True).stdout
    finally:
        script.unlink()
    missing: list[str] = []
    current = ""
    for line in out.splitlines():
        if line.startswith('debugfs: ls -p "'):
            current = line[len('debugfs: ls -p "') : -1].rstrip("/")
            continue
        fields = line.split("/")
        if len(fields) != 8 or fields[5] in (".", ".."):
            continue
        try:
            mode = int(fields[2], 8)
        except ValueError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            continue  # devices, fifos, sockets: rdump does not copy them
        path = f"{current}/{fields[5]}"
        target = dest / path.lstrip("/")
        try:
            st = target.lstat()
        except FileNotFoundError:
            missing.append(path)
            continue
        if stat.S_ISREG(mode) and fields[6].isdigit() and st.st_size != int(fields[6]):
            missing.append(path)
        elif stat.S_IMODE(st.st_mode) != stat.S_IMODE(mode) and not stat.S_ISLNK(mode):
            os.chmod(target, stat.S_IMODE(mode))
    return missing


def remove_extracted(dest: Path) -> None:
    """Remove a copied tree, whatever modes it has (a 0555 directory, when not root)."""
    if not dest.exists():
        return
    if os.geteuid() != 0:
        for dirpath, dirs, _files in os.walk(dest):
            for name in dirs:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o700)
    shutil.rmtree(dest)
