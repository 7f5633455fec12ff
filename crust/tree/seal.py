"""Seal a configured tree: nothing from the build and nothing machine-specific stays.

Root is locked unless told otherwise, SSH host keys are removed (a first-boot unit makes new
ones on each machine), machine-id is empty, logs and temporary files are gone, known_hosts and
undeclared authorized_keys files are gone, root's home keeps only Debian's own dotfiles, the
host's resolv.conf is taken out, and the distribution backend removes what its package manager
left (apt: policy-rc.d, build-only sources and options, lists, caches). Every path is resolved
inside the tree (crust/tree/paths.py): a symlink a role left cannot point a removal at the host.
"""

from __future__ import annotations

import os
from pathlib import Path

from crust.define.kickstart import KickstartConfig
from crust.distros import Backend
from crust.errors import BuildError
from crust.tree.files import clear_dir, remove, remove_tree, symlink, write_file
from crust.tree.paths import inside, read_text
from crust.tree.reproducible import SNAKEOIL_CERT, SNAKEOIL_KEY, clamp_times, make_reproducible

SSH_KEYGEN_UNIT = """\
[Unit]
Description=Generate this machine's SSH host keys (Crust first boot)
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key
Before=ssh.service ssh.socket

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target
"""

SSHD_POLICY = """\
# Crust: keys only. No password logins, root only with a key. Host keys are made per
# machine at first boot: Ed25519 and ECDSA (an RSA key costs seconds of boot on small VMs).
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
"""

SNAKEOIL_UNIT = """\
[Unit]
Description=Make this machine's self-signed TLS certificate (Crust first boot)
DefaultDependencies=no
After=local-fs.target systemd-random-seed.service
Before=sysinit.target
ConditionPathExists=!/etc/ssl/private/ssl-cert-snakeoil.key

[Service]
Type=oneshot
ExecStart=/usr/sbin/make-ssl-cert generate-default-snakeoil --force-overwrite

[Install]
WantedBy=sysinit.target
"""

BUILD_LEFTOVERS = (
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/var/lib/dbus/machine-id",
    "/etc/ssh/sshd_config.d/.crust-build",
)


def seal(tree: Path, ks: KickstartConfig, backend: Backend, epoch: int) -> None:
    restore_resolver(tree)
    empty_machine_id(tree)
    remove_host_keys(tree)
    remove_snakeoil(tree)
    backend.seal(tree, ks)  # the package manager's guard, build-only sources, lists and caches
    clean_logs(tree)
    for path in BUILD_LEFTOVERS:
        remove_tree(tree, path)
    remove_ssh_leftovers(tree, ks)
    remove_root_dotfiles(tree)
    clear_dir(tree, "/tmp")
    clear_dir(tree, "/var/tmp")
    make_reproducible(tree, epoch)  # before the stamps below: they record /usr's (pinned) time
    mark_updated(tree)
    check_root_locked(tree, ks)
    clamp_times(tree, epoch)  # the directories the stamps went into


def remove_ssh_leftovers(tree: Path, ks: KickstartConfig) -> None:
    """known_hosts of every account (the build's hosts are no business of the image's), and
    every authorized_keys but what the kickstart's sshkey lines wrote (a role's or a script's
    key would be a way in nobody declared)."""
    declared: dict[str, list[str]] = {}
    for key in ks.sshkeys:
        declared.setdefault(key.username, []).append(key.key)
    for name, home in accounts(tree):
        ssh = inside(tree, f"{home}/.ssh", follow=True)
        if not ssh.is_dir() or not ssh.is_relative_to(inside(tree, "/")):
            continue
        for leftover in ("known_hosts", "known_hosts.old"):
            remove(tree, f"{home}/.ssh/{leftover}")
        keys = read_text(tree, f"{home}/.ssh/authorized_keys")
        wanted = "\n".join(declared[name]) + "\n" if name in declared else None
        if keys is not None and keys != wanted:
            remove(tree, f"{home}/.ssh/authorized_keys")


def accounts(tree: Path) -> list[tuple[str, str]]:
    """(name, home) of every account in the tree's /etc/passwd."""
    found = []
    for line in (read_text(tree, "/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[5].startswith("/"):
            found.append((fields[0], fields[5]))
    return found


# root's dotfiles Debian ships (base-files' copies): anything else in /root is the build's.
ROOT_DOTFILES = {".bashrc": "/usr/share/base-files/dot.bashrc", ".profile": "/usr/share/base-files/dot.profile"}


def remove_root_dotfiles(tree: Path) -> None:
    """What the build left in root's home: history, caches, tool configs (a .netrc, a
    .docker/config.json...). root's .bashrc and .profile stay when they are Debian's own."""
    home = inside(tree, "/root", follow=True)
    if not home.is_dir() or not home.is_relative_to(inside(tree, "/")):
        return
    for child in sorted(home.iterdir()):
        name = child.name
        if name == ".ssh":
            continue  # the kickstart's own sshkey lines (see remove_ssh_leftovers)
        packaged = ROOT_DOTFILES.get(name)
        if packaged is not None and read_text(tree, f"/root/{name}") == read_text(tree, packaged):
            continue
        remove_tree(tree, f"/root/{name}")


def mark_updated(tree: Path) -> None:
    """Tell systemd /etc and /var are up to date with /usr (as systemd-update-done would).

    Otherwise the first boot runs ldconfig, hwdb and journal catalog updates that the
    build already did (ConditionNeedsUpdate), seconds under emulation.
    """
    usr_mtime = inside(tree, "/usr", follow=True).stat().st_mtime_ns
    for where in ("etc", "var"):
        stamp = write_file(
            tree, f"/{where}/.updated", f"# Written by Crust at build time, as systemd-update-done would.\nTIMESTAMP_NSEC={usr_mtime}\n"
        )
        os.utime(stamp, ns=(usr_mtime, usr_mtime), follow_symlinks=False)


def restore_resolver(tree: Path) -> None:
    remove(tree, "/etc/resolv.conf")
    if inside(tree, "/usr/lib/systemd/systemd-resolved", follow=True).exists():
        symlink(tree, "/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")


def empty_machine_id(tree: Path) -> None:
    """Empty (not missing): systemd then makes a new id on first boot and treats it as such."""
    write_file(tree, "/etc/machine-id", "", 0o444)


def remove_host_keys(tree: Path) -> None:
    ssh = inside(tree, "/etc/ssh", follow=True)
    for key in ssh.glob("ssh_host_*") if ssh.is_dir() else ():
        key.unlink()
    if inside(tree, "/usr/sbin/sshd", follow=True).exists():
        write_file(tree, "/etc/systemd/system/crust-ssh-keygen.service", SSH_KEYGEN_UNIT)
        symlink(tree, "/etc/systemd/system/multi-user.target.wants/crust-ssh-keygen.service", "/etc/systemd/system/crust-ssh-keygen.service")
        write_file(tree, "/etc/ssh/sshd_config.d/50-crust.conf", SSHD_POLICY)


def remove_snakeoil(tree: Path) -> None:
    """ssl-cert makes a private key at install time: every machine would share it. Remove it
    and make one per machine at first boot (before the services that use it start). The
    packages step already removed it (settle_intermediate): ssl-cert's tool says it belongs."""
    key = inside(tree, SNAKEOIL_KEY)
    if not (key.exists() or key.is_symlink() or inside(tree, "/usr/sbin/make-ssl-cert", follow=True).exists()):
        return
    if key.exists() or key.is_symlink():
        key.unlink()
    remove(tree, SNAKEOIL_CERT)
    write_file(tree, "/etc/systemd/system/crust-snakeoil.service", SNAKEOIL_UNIT)
    symlink(tree, "/etc/systemd/system/sysinit.target.wants/crust-snakeoil.service", "/etc/systemd/system/crust-snakeoil.service")


def clean_logs(tree: Path) -> None:
    """Remove the build's log files; keep the directories packages expect."""
    log_dir = inside(tree, "/var/log", follow=True)
    for dirpath, _dirs, files in os.walk(log_dir):
        for name in files:
            (Path(dirpath) / name).unlink()


def check_root_locked(tree: Path, ks: KickstartConfig) -> None:
    for line in (read_text(tree, "/etc/shadow") or "").splitlines():
        name, hashed = line.split(":")[:2]
        if name == "root" and not ks.root_password_hash and not hashed.startswith(("!", "*")):
            raise BuildError("root is not locked after sealing")
