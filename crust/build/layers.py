"""Entries that store what their step changed: a tree step's files that are the same as the
tree it started from become hard links to that entry's files.

The packages step starts from a copy of the base tree and the tree step from a copy of the
packages tree; most of their files come out unchanged (wsgi: 293 of 355 MB, then 298 of 299
MB). After such a step, each of its files that is the same as the file at the same path of the
entry it started from (content, mode, owner, times, extended attributes, and the same group of
hard links within the tree) is replaced by a hard link to that file, as ostree and Nix's store
optimisation share files. Every entry stays a whole tree, read as it is by the next step and
the image (nothing to compose on reading), and a file absent from it is simply absent (a
deletion needs no record). Entries are never written after their commit, so a shared inode is
never changed through one of its links. Directory times are put back, so the output digest
and the image are the same bytes as without sharing.

Kept out of the step modules: sharing changes how an entry is stored, not what a step makes,
so it must not change step ids.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from crust.tree.overlay import all_xattrs as xattrs
from crust.tree.overlay import same_content

STARTS_FROM = {"packages": "base", "tree": "packages"}  # a step kind -> the kind whose tree/ it copies first


def link_groups(tree: str) -> tuple[dict[tuple[int, int], list[str]], dict[str, os.stat_result]]:
    """The regular files of a tree grouped by inode (paths relative to it), and their stats."""
    groups: dict[tuple[int, int], list[str]] = {}
    stats: dict[str, os.stat_result] = {}
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(path, tree)
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                stats[rel] = st
    return groups, stats


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns) == (b.st_mode, b.st_uid, b.st_gid, b.st_size, b.st_mtime_ns)


def share_files(tree: Path, parent: Path) -> int:
    """Hard-link TREE's files that are the same as PARENT's at the same paths to PARENT's; the
    bytes now shared. TREE is a step's own directory before its commit; PARENT a committed entry's."""
    if not parent.is_dir():
        return 0
    top, base = str(tree), str(parent)
    groups, stats = link_groups(top)
    parent_groups, parent_stats = link_groups(base)
    parent_group_of = {rel: sorted(paths) for paths in parent_groups.values() for rel in paths}
    shared = 0
    touched: dict[str, tuple[int, int]] = {}  # directory -> its (atime, mtime) before
    for paths in groups.values():
        first = paths[0]
        mine, theirs = stats[first], parent_stats.get(first)
        if theirs is None or not same_file(mine, theirs) or parent_group_of[first] != sorted(paths):
            continue
        if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
            continue
        source, target = os.path.join(base, first), os.path.join(top, first)
        if xattrs(source) != xattrs(target) or not same_content(source, target):
            continue
        for rel in paths:
            target = os.path.join(top, rel)
            folder = os.path.dirname(target)
            if folder not in touched:
                st = os.lstat(folder)
                touched[folder] = (st.st_atime_ns, st.st_mtime_ns)
            temporary = os.path.join(folder, f".crust-share-{os.getpid()}")
            os.link(source, temporary)
            os.replace(temporary, target)
        shared += mine.st_blocks * 512
    for folder, times in touched.items():
        os.utime(folder, ns=times, follow_symlinks=False)
    return shared
