"""Small helpers for working on a root tree from the host; every path goes through
crust.tree.paths.inside() (symlinks resolved in the tree, never outside it)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from crust.runner import Result, run
from crust.tree.paths import inside
from crust.tree.sandbox import in_sandbox

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def in_tree(tree: Path, argv: Sequence[str], *, input_text: str | None = None, capture: bool = False, network: bool = False) -> Result:
    """Run argv in the tree, in the build sandbox (crust/tree/sandbox.py); network only when
    asked (the packages step's apt)."""
    return run(in_sandbox(tree, argv, network=network), env=CHROOT_ENV, input_text=input_text, capture=capture)


def make_dirs(tree: Path, path: str, mode: int = 0o755) -> Path:
    """A directory of the tree (and its parents), made where missing."""
    target = inside(tree, path, follow=True)
    target.mkdir(mode=mode, parents=True, exist_ok=True)
    return target


def write_file(tree: Path, path: str, content: str | bytes, mode: int = 0o644) -> Path:
    """Write a file inside tree, replacing any symlink at that path (never following it)."""
    target = inside(tree, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(target, mode, follow_symlinks=False)
    return target


def symlink(tree: Path, path: str, target: str) -> None:
    """Make path in the tree a symbolic link to target (replacing a file or link there)."""
    link = inside(tree, path)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    os.symlink(target, link)


def remove(tree: Path, path: str) -> None:
    target = inside(tree, path)
    if target.is_symlink() or target.is_file():
        target.unlink()


def remove_tree(tree: Path, path: str) -> None:
    """Remove a file, link or whole directory of the tree (a link, not what it points at)."""
    import shutil

    target = inside(tree, path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.is_symlink() or target.exists():
        target.unlink()


def clear_dir(tree: Path, path: str, keep: Sequence[str] = ()) -> None:
    """Remove everything inside a directory of the tree (but the directory itself)."""
    import shutil

    target = inside(tree, path)
    if not target.is_dir() or target.is_symlink():
        return
    for child in target.iterdir():
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
