"""Small helpers for working on a root tree from the host."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crust.runner import Result, run, sandboxed

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def in_tree(tree: Path, argv: Sequence[str], *, input_text: str | None = None, capture: bool = False) -> Result:
    """Run argv chrooted into tree, with /proc, /sys, /dev and /run mounted for it."""
    return run(sandboxed(argv, root=tree, chroot=True), env=CHROOT_ENV, input_text=input_text, capture=capture)


def write_file(tree: Path, path: str, content: str, mode: int = 0o644) -> Path:
    """Write a file inside tree, replacing any symlink at that path (never following it)."""
    target = tree / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_text(content, encoding="utf-8")
    target.chmod(mode)
    return target


def remove(tree: Path, path: str) -> None:
    target = tree / path.lstrip("/")
    if target.is_symlink() or target.is_file():
        target.unlink()


def clear_dir(tree: Path, path: str, keep: Sequence[str] = ()) -> None:
    """Remove everything inside a directory of the tree (but the directory itself)."""
    import shutil

    target = tree / path.lstrip("/")
    if not target.is_dir() or target.is_symlink():
        return
    for child in target.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
