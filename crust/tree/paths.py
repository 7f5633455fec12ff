"""Paths inside a tree, resolved as the tree itself would see them, never outside it.

A tree is data: a role, a package or a %post script may have put symlinks anywhere in it, and
an absolute link (/etc/ssh -> /etc/ssh) means the tree's own /etc/ssh, but the host's if Crust
followed it from the host. Every host-side read or write of a tree goes through inside(): each
symlink on the way is resolved against the tree's root (as chroot(2) would, as the kernel's
RESOLVE_IN_ROOT does), and `..` stops at the root. The final component is followed only when
asked (a read); a write or removal handles the link itself, never what it points at.
"""

from __future__ import annotations

import os
from pathlib import Path

from crust.errors import BuildError

MAX_LINKS = 40  # as the kernel's limit on a path's symlinks


def inside(tree: Path, path: str, *, follow: bool = False) -> Path:
    """The host path of `path` in tree (absolute or relative to the tree root)."""
    root = Path(os.path.realpath(tree))
    todo = [p for p in str(path).split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, name)
        if (todo or follow) and candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise BuildError(f"{path}: too many symbolic links in the tree at {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(name)
    return root.joinpath(*done)


def read_text(tree: Path, path: str) -> str | None:
    """A regular file's text (links followed within the tree), or None."""
    target = inside(tree, path, follow=True)
    if target.is_symlink() or not target.is_file():
        return None
    return target.read_text(encoding="utf-8", errors="replace")


def read_bytes(tree: Path, path: str) -> bytes | None:
    """A regular file's bytes (links followed within the tree), or None (missing, unreadable)."""
    target = inside(tree, path, follow=True)
    if target.is_symlink() or not target.is_file():
        return None
    try:
        return target.read_bytes()
    except OSError:
        return None
