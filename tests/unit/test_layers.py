"""Entries store what their step changed (crust/build/layers.py): files the same as the earlier
entry's become hard links to them; anything that differs in content, mode, owner, time,
extended attributes or hard-link grouping stays the step's own; the output digest and the
directory times are unchanged."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from crust.build.equivalence import digest_output
from crust.build.layers import share_files

EPOCH = 1_700_000_000


def make_parent(root: Path) -> Path:
    tree = root / "parent" / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "etc" / "same").write_bytes(b"x" * 300_000)
    (tree / "etc" / "edited").write_text("before\n")
    (tree / "etc" / "chmodded").write_text("mode\n")
    (tree / "etc" / "gone").write_text("deleted by the step\n")
    (tree / "usr" / "bin" / "tool").write_bytes(b"\x7fELF" + b"\0" * 5000)
    (tree / "usr" / "bin" / "linked-a").write_text("one inode, two names\n")
    os.link(tree / "usr" / "bin" / "linked-a", tree / "usr" / "bin" / "linked-b")
    (tree / "usr" / "bin" / "split").write_text("two names in the parent, two inodes in the step\n")
    os.link(tree / "usr" / "bin" / "split", tree / "usr" / "bin" / "split-twin")
    (tree / "usr" / "bin" / "capped").write_text("a capability differs\n")
    os.symlink("same", tree / "etc" / "link")
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    return tree


def make_child(root: Path, parent: Path) -> Path:
    tree = root / "child" / "tree"
    shutil.copytree(parent, tree, symlinks=True)
    for name in ("linked-a", "linked-b", "split", "split-twin"):  # copytree does not keep links: as cp -a does
        (tree / "usr" / "bin" / name).unlink()
    (tree / "usr" / "bin" / "linked-a").write_text("one inode, two names\n")
    os.link(tree / "usr" / "bin" / "linked-a", tree / "usr" / "bin" / "linked-b")
    (tree / "usr" / "bin" / "split").write_text("two names in the parent, two inodes in the step\n")
    (tree / "usr" / "bin" / "split-twin").write_text("two names in the parent, two inodes in the step\n")
    (tree / "etc" / "edited").write_text("after!\n")
    os.chmod(tree / "etc" / "chmodded", 0o600)
    (tree / "etc" / "gone").unlink()
    (tree / "etc" / "new").write_text("made by the step\n")
    os.setxattr(tree / "usr" / "bin" / "capped", "user.crust-test", b"differs")
    for path in [tree, *tree.rglob("*")]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
    return tree


def inode(path: Path) -> int:
    return path.lstat().st_ino


def test_unchanged_files_are_links_to_the_earlier_entry(tmp_path: Path) -> None:
    parent = make_parent(tmp_path)
    child = make_child(tmp_path, parent)
    before = digest_output(child.parent)
    times = {p: p.lstat().st_mtime_ns for p in [child, *child.rglob("*")] if p.is_dir()}

    shared = share_files(child, parent)

    for name in ("etc/same", "usr/bin/tool"):
        assert inode(child / name) == inode(parent / name), name
    assert inode(child / "usr/bin/linked-a") == inode(parent / "usr/bin/linked-a") == inode(child / "usr/bin/linked-b")
    for name in ("etc/edited", "etc/chmodded", "usr/bin/capped", "usr/bin/split", "usr/bin/split-twin"):
        assert inode(child / name) != inode(parent / name), name
    assert inode(child / "usr/bin/split") != inode(child / "usr/bin/split-twin")  # the step's grouping is kept
    assert (child / "etc" / "link").is_symlink() and not (child / "etc" / "gone").exists()
    assert shared >= 300_000
    assert digest_output(child.parent) == before
    assert {p: p.lstat().st_mtime_ns for p in times} == times
    assert not [p for p in child.rglob(".crust-share-*")]


def test_no_earlier_entry_shares_nothing(tmp_path: Path) -> None:
    parent = make_parent(tmp_path)
    assert share_files(parent, tmp_path / "missing") == 0
