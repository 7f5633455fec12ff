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


def test_intermediate_trees_keep_no_key_a_package_made(tmp_path: Path) -> None:
    """openssh-server's host keys and ssl-cert's pair are random in every run: a base or packages
    step that keeps them never has the same output twice, and early cut-off never happens."""
    from crust.tree.reproducible import settle_intermediate

    made = [
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "etc/ssl/private/ssl-cert-snakeoil.key",
        "etc/ssl/certs/ssl-cert-snakeoil.pem",
    ]
    for rel in [*made, "etc/ssh/sshd_config", "etc/ssl/certs/ca-certificates.crt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    settle_intermediate(tmp_path, 1_700_000_000)
    assert [rel for rel in made if (tmp_path / rel).exists()] == []
    assert (tmp_path / "etc/ssh/sshd_config").exists() and (tmp_path / "etc/ssl/certs/ca-certificates.crt").exists()


def test_a_file_only_read_since_the_epoch_is_not_written(tmp_path: Path) -> None:
    """Access times are no output: clamping must not touch a file whose content and mtime are
    old (the tree step clamps an overlay of stored files: a write would copy each one up)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    read = tree / "read-only-lately"
    read.write_text("shipped")
    os.utime(read, (EPOCH + 1000, EPOCH - 5000))
    os.utime(tree, (EPOCH, EPOCH))
    before = read.stat().st_ctime_ns
    assert clamp_times(tree, EPOCH) == 0
    assert read.stat().st_ctime_ns == before and read.stat().st_atime == EPOCH + 1000
