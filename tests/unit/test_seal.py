"""Sealing removes everything machine-specific or build-time from a tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.define.kickstart import load
from crust.distros.debian import BACKEND as APT
from crust.errors import BuildError
from crust.tree.seal import seal

EPOCH = 1762595483  # a mirror date

KS = load("network --hostname=x\npart / --size=1024\nrepo --name=extra --baseurl=http://example.org/debian\n", allow_plaintext=False)

PLANTED = {
    "etc/ssh/ssh_host_ed25519_key": "PRIVATE",
    "etc/ssh/ssh_host_ed25519_key.pub": "public",
    "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    "var/lib/dbus/machine-id": "0123456789abcdef0123456789abcdef\n",
    "usr/sbin/policy-rc.d": "exit 101\n",
    "var/lib/apt/lists/deb.debian.org_dists_trixie_InRelease": "x",
    "var/cache/apt/pkgcache.bin": "x",
    "var/cache/apt/archives/nginx.deb": "x",
    "var/log/apt/history.log": "x",
    "var/log/dpkg.log": "x",
    "tmp/crust-post-0": "x",
    "var/tmp/crust-wheels/gunicorn.whl": "x",
    "root/.ansible/tmp/x": "x",
    "root/.cache/pip/x": "x",
    "etc/apt/sources.list.d/crust-extra.sources": "x",
    "var/lib/systemd/random-seed": "x",
    "etc/resolv.conf": "nameserver 10.0.0.1\n",
    "usr/sbin/sshd": "",
    "usr/lib/systemd/systemd-resolved": "",
    "etc/ssl/private/ssl-cert-snakeoil.key": "PRIVATE",
    "etc/ssl/certs/ssl-cert-snakeoil.pem": "cert",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel, content in PLANTED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    (root / "etc/shadow").write_text("root:!*:19000::::::\n")
    (root / "var/lib/apt/lists/partial").mkdir()
    return root


def test_seal_removes_build_and_machine_state(tree: Path) -> None:
    seal(tree, KS, APT, EPOCH)
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    assert (tree / "etc/machine-id").read_text() == ""
    assert not (tree / "var/lib/dbus/machine-id").exists()
    for gone in (
        "usr/sbin/policy-rc.d",
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/archives/nginx.deb",
        "var/log/apt/history.log",
        "var/log/dpkg.log",
        "tmp/crust-post-0",
        "var/tmp/crust-wheels",
        "root/.ansible",
        "root/.cache",
        "etc/apt/sources.list.d/crust-extra.sources",
        "var/lib/systemd/random-seed",
    ):
        assert not (tree / gone).exists(), gone
    assert list((tree / "var/lib/apt/lists").iterdir()) == [tree / "var/lib/apt/lists/partial"]
    assert (tree / "var/log/apt").is_dir()


def test_seal_adds_first_boot_keys_and_ssh_policy(tree: Path) -> None:
    seal(tree, KS, APT, EPOCH)
    assert (tree / "etc/systemd/system/multi-user.target.wants/crust-ssh-keygen.service").is_symlink()
    assert "ssh-keygen -q -t ed25519" in (tree / "etc/systemd/system/crust-ssh-keygen.service").read_text()
    assert "PasswordAuthentication no" in (tree / "etc/ssh/sshd_config.d/50-crust.conf").read_text()


def test_seal_restores_resolver_link(tree: Path) -> None:
    seal(tree, KS, APT, EPOCH)
    assert (tree / "etc/resolv.conf").is_symlink()
    assert str((tree / "etc/resolv.conf").readlink()) == "../run/systemd/resolve/stub-resolv.conf"


def test_seal_refuses_unlocked_root(tree: Path) -> None:
    (tree / "etc/shadow").write_text("root:$6$x$y:19000::::::\n")
    with pytest.raises(BuildError):
        seal(tree, KS, APT, EPOCH)


def test_seal_removes_the_snakeoil_key(tree: Path) -> None:
    seal(tree, KS, APT, EPOCH)
    assert not (tree / "etc/ssl/private/ssl-cert-snakeoil.key").exists()
    assert not (tree / "etc/ssl/certs/ssl-cert-snakeoil.pem").exists()
    unit = tree / "etc/systemd/system/crust-snakeoil.service"
    assert "make-ssl-cert generate-default-snakeoil" in unit.read_text()
    assert (tree / "etc/systemd/system/sysinit.target.wants/crust-snakeoil.service").is_symlink()


def test_a_tree_whose_key_an_earlier_step_removed_still_gets_one_per_machine(tree: Path) -> None:
    """The packages step removes ssl-cert's key (settle_intermediate); ssl-cert's tool in the tree
    is what tells the seal that each machine must make its own."""
    (tree / "etc/ssl/private/ssl-cert-snakeoil.key").unlink()
    (tree / "etc/ssl/certs/ssl-cert-snakeoil.pem").unlink()
    (tree / "usr/sbin").mkdir(parents=True, exist_ok=True)
    (tree / "usr/sbin/make-ssl-cert").write_text("#!/bin/sh\n")
    seal(tree, KS, APT, EPOCH)
    assert (tree / "etc/systemd/system/sysinit.target.wants/crust-snakeoil.service").is_symlink()
