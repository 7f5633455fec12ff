"""The sealed tree's clock-time traces are pinned to SOURCE_DATE_EPOCH."""

from __future__ import annotations

import os
from pathlib import Path

from crust.tree.reproducible import clamp_times, make_reproducible, pin_shadow_dates

EPOCH = 1762595483
DAY = EPOCH // 86400


def test_times_after_the_epoch_are_clamped_older_ones_kept(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    new, old = tree / "etc/new", tree / "etc/old"
    new.write_text("written by the build")
    old.write_text("shipped by a package")
    os.utime(old, (EPOCH - 1000, EPOCH - 5000))
    outside = tmp_path / "host-file"
    outside.write_text("x")
    (tree / "etc/link").symlink_to(outside)
    before = outside.stat().st_mtime
    assert clamp_times(tree, EPOCH) >= 3
    assert new.stat().st_mtime == EPOCH and old.stat().st_mtime == EPOCH - 5000 and old.stat().st_atime == EPOCH - 1000
    assert os.lstat(tree / "etc/link").st_mtime == EPOCH
    assert outside.stat().st_mtime == before  # never through a link
    assert (tree / "etc").stat().st_mtime == EPOCH and tree.stat().st_mtime == EPOCH


def test_shadow_change_days_of_build_made_accounts_are_the_epochs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    shadow = tree / "etc/shadow"
    today = DAY + 400
    shadow.write_text(f"root:*:{DAY - 10}:0:99999:7:::\napp:!:{today}:0:99999:7:::\nodd:!::0:99999:7:::\n")
    os.chmod(shadow, 0o640)
    pin_shadow_dates(tree, EPOCH)
    assert shadow.read_text() == f"root:*:{DAY - 10}:0:99999:7:::\napp:!:{DAY}:0:99999:7:::\nodd:!::0:99999:7:::\n"
    assert shadow.stat().st_mode & 0o777 == 0o640


def test_host_fact_caches_go(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    cache = tree / "var/cache/ldconfig/aux-cache"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"inode numbers and times of the build host")
    make_reproducible(tree, EPOCH)
    assert not cache.exists() and cache.parent.is_dir()
