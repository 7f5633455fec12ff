"""Host-side work on a tree never leaves it (issue 15): symlinks a role or a script left in the
tree are resolved against the tree's root, so writes, removals and reads stay inside.

Each attack plants links in a tree that point at a "host" directory beside it (standing for
the build host's /etc, /root...), runs the code that once followed them, and checks that the
host directory is untouched and the work happened inside the tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crust.define.kickstart import load
from crust.distros.debian import BACKEND as APT
from crust.distros.debian.dpkg import DpkgDatabase
from crust.tree import configure
from crust.tree.files import clear_dir, remove, remove_tree, write_file
from crust.tree.paths import inside, read_text
from crust.tree.seal import seal

EPOCH = 1762595483  # a mirror date


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A stand-in for the build host: files that must survive."""
    root = tmp_path / "host"
    for rel, text in {"etc/ssh/ssh_host_ed25519_key": "HOST KEY", "root/.ansible/keep": "x", "etc/shadow": "root:HOSTHASH:1::::::\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def test_inside_resolves_links_within_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "usr/lib/os-release").write_text("ID=debian\n")
    os.symlink("/usr/lib/os-release", tree / "etc/os-release")  # absolute: the tree's own /usr
    os.symlink("../../..", tree / "usr/lib/up")
    os.symlink("loop", tree / "etc/loop")
    real = Path(os.path.realpath(tree))
    assert inside(tree, "/etc/os-release", follow=True) == real / "usr/lib/os-release"
    assert inside(tree, "/etc/os-release") == real / "etc/os-release"  # the link itself
    assert read_text(tree, "/etc/os-release") == "ID=debian\n"
    assert inside(tree, "/../../../etc/passwd") == real / "etc/passwd"
    assert inside(tree, "/usr/lib/up/etc", follow=True) == real / "etc"  # ../../.. of /usr/lib, and no further
    with pytest.raises(Exception, match="too many symbolic links"):
        inside(tree, "/etc/loop/x")


def test_writes_and_removals_through_links_stay_in_the_tree(tmp_path: Path, host: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    before = snapshot(host)
    os.symlink(str(host / "etc"), tree / "etc")  # a link a role left: /etc -> the host's /etc
    write_file(tree, "/etc/ssh/sshd_config.d/50-crust.conf", "x")
    # The link resolved in the tree: the tree's own copy of that path got the file.
    assert (Path(os.path.realpath(tree)) / str(host).lstrip("/") / "etc/ssh/sshd_config.d/50-crust.conf").read_text() == "x"
    remove(tree, "/etc/ssh/ssh_host_ed25519_key")
    remove_tree(tree, "/etc/ssh")
    clear_dir(tree, "/etc")
    assert snapshot(host) == before


def make_tree(tree: Path) -> None:
    for rel, text in {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\neve:x:1000:1000::/home/eve:/bin/sh\n",
        "etc/shadow": "root:!*:1::::::\neve:!:1::::::\n",
        "etc/group": "root:x:0:\n",
        "usr/lib/os-release": "ID=debian\n",
        "var/lib/dpkg/status": "",
    }.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    for folder in ("var/log", "tmp", "var/tmp", "usr/sbin"):
        (tree / folder).mkdir(parents=True, exist_ok=True)


KS = load("network --hostname=x\npart / --size=1024\nrootpw --lock\n", allow_plaintext=False)


def test_seal_follows_no_link_out_of_the_tree(tmp_path: Path, host: Path) -> None:
    """Before issue 15, seal deleted the host's SSH host keys and /root/.ansible through links
    a role had left in the tree, and wrote the sshd policy into the host's /etc/ssh."""
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "usr/sbin/sshd").write_text("")
    before = snapshot(host)
    os.symlink(str(host / "etc/ssh"), tree / "etc/ssh")
    os.symlink(str(host / "root"), tree / "root")
    os.symlink(str(host / "etc/shadow"), tree / "etc/gshadow")
    seal(tree, KS, APT, EPOCH)
    assert snapshot(host) == before, "the host changed"
    # (The policy went to the tree's own copy of that path, under its /tmp, which sealing then emptied.)


def test_ssh_keys_go_into_the_trees_home_not_the_hosts(tmp_path: Path, host: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "home").symlink_to(host / "root")  # /home -> the host's /root
    before = snapshot(host)
    ks = load(
        "network --hostname=x\npart / --size=1024\nrootpw --lock\nuser --name=eve --lock\nsshkey --username=eve 'ssh-ed25519 AAAAC3Nza eve'\n",
        allow_plaintext=False,
    )
    configure.install_ssh_keys(tree, ks.sshkeys)
    assert snapshot(host) == before
    assert "ssh-ed25519" in (read_text(tree, "/home/eve/.ssh/authorized_keys") or "")


def test_the_package_database_is_read_in_the_tree(tmp_path: Path, host: Path) -> None:
    """A dpkg status that is a link to a host file is read as the tree sees it."""
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "var/lib/dpkg/status").unlink()
    os.symlink(str(host / "etc/shadow"), tree / "var/lib/dpkg/status")
    assert DpkgDatabase(tree).packages == []


def test_seal_removes_undeclared_keys_known_hosts_and_root_leftovers(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "usr/share/base-files").mkdir(parents=True)
    (tree / "usr/share/base-files/dot.bashrc").write_text("# debian\n")
    (tree / "root/.ssh").mkdir(parents=True)
    (tree / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA a-role-key\n")
    (tree / "root/.ssh/known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    (tree / "root/.bashrc").write_text("# debian\n")
    (tree / "root/.netrc").write_text("machine x login y password z\n")
    (tree / "root/.docker").mkdir()
    (tree / "root/.docker/config.json").write_text("{}")
    (tree / "home/eve/.ssh").mkdir(parents=True)
    (tree / "home/eve/.ssh/authorized_keys").write_text("ssh-ed25519 AAAAC3Nza eve\n")
    (tree / "etc/apt/apt.conf.d").mkdir(parents=True)
    (tree / "etc/apt/apt.conf.d/99mmdebstrap").write_text('Acquire::Check-Valid-Until "false";\n')
    ks = load(
        "network --hostname=x\npart / --size=1024\nrootpw --lock\nuser --name=eve --lock\nsshkey --username=eve 'ssh-ed25519 AAAAC3Nza eve'\n",
        allow_plaintext=False,
    )
    seal(tree, ks, APT, EPOCH)
    assert sorted(p.name for p in (tree / "root").iterdir()) == [".bashrc", ".ssh"]
    assert list((tree / "root/.ssh").iterdir()) == []
    assert (tree / "home/eve/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAAC3Nza eve\n"  # declared: kept
    assert not (tree / "etc/apt/apt.conf.d/99mmdebstrap").exists()
