"""Seal a configured tree: nothing from the build and nothing machine-specific stays.

Root is locked unless told otherwise, SSH host keys are removed (a first-boot unit makes new
ones on each machine), machine-id is empty, logs and temporary files are gone, the host's
resolv.conf is taken out, and the distribution backend removes what its package manager left
(apt: policy-rc.d, build-only sources, lists, caches).
"""

from __future__ import annotations

import os
from pathlib import Path

from crust.define.kickstart import KickstartConfig
from crust.distros import Backend
from crust.errors import BuildError
from crust.tree.files import clear_dir, remove, write_file

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
    "/root/.ansible",
    "/root/.cache",
    "/root/.bash_history",
    "/root/.python_history",
    "/root/.wget-hsts",
    "/root/.lesshst",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/var/lib/dbus/machine-id",
    "/etc/ssh/sshd_config.d/.crust-build",
)


def seal(tree: Path, ks: KickstartConfig, backend: Backend) -> None:
    restore_resolver(tree)
    empty_machine_id(tree)
    remove_host_keys(tree)
    remove_snakeoil(tree)
    backend.seal(tree, ks)  # the package manager's guard, build-only sources, lists and caches
    clean_logs(tree)
    for path in BUILD_LEFTOVERS:
        target = tree / path.lstrip("/")
        if target.is_dir() and not target.is_symlink():
            clear_dir(tree, path)
            target.rmdir()
        else:
            remove(tree, path)
    clear_dir(tree, "/tmp")
    clear_dir(tree, "/var/tmp")
    mark_updated(tree)
    check_root_locked(tree, ks)


def mark_updated(tree: Path) -> None:
    """Tell systemd /etc and /var are up to date with /usr (as systemd-update-done would).

    Otherwise the first boot runs ldconfig, hwdb and journal catalog updates that the
    build already did (ConditionNeedsUpdate), seconds under emulation.
    """
    usr_mtime = (tree / "usr").stat().st_mtime_ns
    for where in ("etc", "var"):
        stamp = tree / where / ".updated"
        stamp.write_text(
            f"# Written by Crust at build time, as systemd-update-done would.\nTIMESTAMP_NSEC={usr_mtime}\n",
            encoding="utf-8",
        )
        os.utime(stamp, ns=(usr_mtime, usr_mtime))


def restore_resolver(tree: Path) -> None:
    remove(tree, "/etc/resolv.conf")
    if (tree / "usr/lib/systemd/systemd-resolved").exists():
        os.symlink("../run/systemd/resolve/stub-resolv.conf", tree / "etc/resolv.conf")


def empty_machine_id(tree: Path) -> None:
    """Empty (not missing): systemd then makes a new id on first boot and treats it as such."""
    write_file(tree, "/etc/machine-id", "", 0o444)


def remove_host_keys(tree: Path) -> None:
    ssh = tree / "etc/ssh"
    for key in ssh.glob("ssh_host_*") if ssh.is_dir() else ():
        key.unlink()
    if (tree / "usr/sbin/sshd").exists():
        write_file(tree, "/etc/systemd/system/crust-ssh-keygen.service", SSH_KEYGEN_UNIT)
        wants = tree / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "crust-ssh-keygen.service"
        if not link.is_symlink():
            os.symlink("/etc/systemd/system/crust-ssh-keygen.service", link)
        write_file(tree, "/etc/ssh/sshd_config.d/50-crust.conf", SSHD_POLICY)


def remove_snakeoil(tree: Path) -> None:
    """ssl-cert makes a private key at install time: every machine would share it. Remove it
    and make one per machine at first boot (before the services that use it start)."""
    key = tree / "etc/ssl/private/ssl-cert-snakeoil.key"
    if not key.exists():
        return
    key.unlink()
    remove(tree, "/etc/ssl/certs/ssl-cert-snakeoil.pem")
    write_file(tree, "/etc/systemd/system/crust-snakeoil.service", SNAKEOIL_UNIT)
    wants = tree / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "crust-snakeoil.service"
    if not link.is_symlink():
        os.symlink("/etc/systemd/system/crust-snakeoil.service", link)


def clean_logs(tree: Path) -> None:
    """Remove the build's log files; keep the directories packages expect."""
    log_dir = tree / "var/log"
    for dirpath, _dirs, files in os.walk(log_dir):
        for name in files:
            (Path(dirpath) / name).unlink()


def check_root_locked(tree: Path, ks: KickstartConfig) -> None:
    for line in (tree / "etc/shadow").read_text(encoding="utf-8").splitlines():
        name, hashed = line.split(":")[:2]
        if name == "root" and not ks.root_password_hash and not hashed.startswith(("!", "*")):
            raise BuildError("root is not locked after sealing")
