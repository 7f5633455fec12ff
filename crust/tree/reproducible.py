"""The last pass over a sealed tree: what the build wrote at clock time is pinned to SOURCE_DATE_EPOCH.

Tools that honour SOURCE_DATE_EPOCH (mmdebstrap, dpkg's maintainer scripts, initramfs-tools,
py_compile: hash-checked .pyc files) already got it from the executor. What remains:

- every file time newer than the epoch is clamped to it (the files a build wrote; what packages
  shipped keeps its own, older time);
- /etc/shadow's "last changed" days of accounts made during the build become the epoch's day;
- caches that record host facts (ldconfig's aux-cache keeps inode numbers and times) are removed:
  they are rebuilt on the appliance when first needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from crust.tree.paths import inside

SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"
SNAKEOIL_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"

HOST_FACT_CACHES = ("/var/cache/ldconfig/aux-cache",)
SHADOW_FILES = ("/etc/shadow", "/etc/shadow-")


def pin_shadow_dates(tree: Path, epoch: int) -> None:
    """Field 3 of each shadow entry (days since 1970 of the last password change): never after
    the epoch's day."""
    day = epoch // 86400
    for name in SHADOW_FILES:
        path = inside(tree, name)
        if not path.is_file() or path.is_symlink():
            continue
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        changed = False
        for i, line in enumerate(lines):
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 3 and fields[2].isdigit() and int(fields[2]) > day:
                fields[2] = str(day)
                lines[i] = ":".join(fields) + ("\n" if line.endswith("\n") else "")
                changed = True
        if changed:
            st = path.stat()
            path.write_text("".join(lines), encoding="utf-8")
            os.chmod(path, st.st_mode & 0o7777)


def remove_host_fact_caches(tree: Path) -> None:
    for name in HOST_FACT_CACHES:
        path = inside(tree, name)
        if path.is_file() and not path.is_symlink():
            path.unlink()


def clamp_times(tree: Path, epoch: int) -> int:
    """Set every modification time newer than the epoch to the epoch, with its access time
    (links themselves, never what they point at); the number of entries changed. Directories
    last, since changing a file inside one changes nothing of its time but a removal above would.
    A file only read keeps its access time: access times are no output (digests leave them out,
    the image pins them, crust/disk/assemble.py), and clamping a view whose files are shared
    (an overlay of the store's, crust/steps/tree.py) must write none of them."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in (*filenames, *dirnames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (min(st.st_atime, epoch), min(st.st_mtime, epoch)), follow_symlinks=False)
                changed += 1
    st = os.lstat(tree)
    if st.st_mtime > epoch:
        os.utime(tree, (epoch, epoch), follow_symlinks=False)
        changed += 1
    return changed


def make_reproducible(tree: Path, epoch: int) -> None:
    pin_shadow_dates(tree, epoch)
    remove_host_fact_caches(tree)
    clamp_times(tree, epoch)


APT_BINARY_CACHES = ("/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin")


def settle_intermediate(tree: Path, epoch: int) -> None:
    """The end of the base and packages steps: their trees as reproducible as a sealed one
    (the apt lists stay: the next step installs from them), so that a rerun whose packages are
    the same has the same output, and the steps after it are reused (early cut-off)."""
    for name in APT_BINARY_CACHES:  # apt rebuilds them from the lists when it needs them
        path = inside(tree, name)
        if path.is_file() and not path.is_symlink():
            path.unlink()
    log_dir = inside(tree, "/var/log", follow=True)
    if log_dir.is_dir() and log_dir.is_relative_to(inside(tree, "/")):
        for dirpath, _dirs, files in os.walk(log_dir):  # dpkg's and apt's logs: times of this run
            for name in files:
                os.unlink(os.path.join(dirpath, name))
    # Keys packages make when they are installed (openssh-server's host keys, ssl-cert's
    # snakeoil pair): random in every run, and never in an image (the seal sets up each
    # machine's own at first boot: crust/tree/seal.py).
    ssh = inside(tree, "/etc/ssh", follow=True)
    made = [*(ssh.glob("ssh_host_*") if ssh.is_dir() else ()), inside(tree, SNAKEOIL_KEY), inside(tree, SNAKEOIL_CERT)]
    for path in made:
        if path.is_file() or path.is_symlink():
            path.unlink()
    make_reproducible(tree, epoch)
