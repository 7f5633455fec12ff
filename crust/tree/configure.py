"""Apply kickstart commands to a tree: accounts, locale, keyboard, network, services, disk, %post.

Each function takes the tree and the piece of KickstartConfig it honours. File edits are done
from the host; scripts run chrooted in the build sandbox. (%packages and repo are the
distribution backend's: crust/distros/.)
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from crust.define.kickstart import Network, Script, SshKey, User
from crust.errors import BuildError
from crust.log import log_line
from crust.runner import run, sandboxed
from crust.tree.files import CHROOT_ENV, in_tree, make_dirs, remove, symlink, write_file
from crust.tree.paths import inside, read_text

NETWORK_FILE = "/etc/systemd/network/80-crust.network"


def set_timezone(tree: Path, zone: str) -> None:
    symlink(tree, "/etc/localtime", f"/usr/share/zoneinfo/{zone}")
    write_file(tree, "/etc/timezone", zone + "\n")


def set_lang(tree: Path, lang: str) -> None:
    write_file(tree, "/etc/default/locale", f"LANG={lang}\n")
    write_file(tree, "/etc/locale.conf", f"LANG={lang}\n")
    if lang not in ("C", "C.UTF-8", "POSIX"):
        charset = "UTF-8" if lang.endswith(".UTF-8") else "ISO-8859-1"
        write_file(tree, "/etc/locale.gen", f"{lang} {charset}\n")


def generate_locales(tree: Path, lang: str) -> None:
    if lang not in ("C", "C.UTF-8", "POSIX"):
        in_tree(tree, ["locale-gen"])


def set_keyboard(tree: Path, keymap: str) -> None:
    layout, _, variant = keymap.replace("_", "-").partition("-")
    write_file(
        tree,
        "/etc/default/keyboard",
        f'XKBMODEL="pc105"\nXKBLAYOUT="{layout}"\nXKBVARIANT="{variant}"\nXKBOPTIONS=""\nBACKSPACE="guess"\n',
    )
    write_file(tree, "/etc/vconsole.conf", f"KEYMAP={keymap}\n")


def configure_network(tree: Path, net: Network) -> None:
    write_file(tree, "/etc/hostname", net.hostname + "\n")
    write_file(
        tree,
        "/etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{net.hostname}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    )
    match = f"Name={net.device}" if net.device else "Name=en* eth*"
    body = f"[Match]\n{match}\n\n[Network]\n"
    if net.dhcp:
        body += "DHCP=yes\n"
    else:
        body += f"Address={net.address}\n"
        if net.gateway:
            body += f"Gateway={net.gateway}\n"
    for server in net.nameservers:
        body += f"DNS={server}\n"
    write_file(tree, NETWORK_FILE, body)
    # Any one configured link is "online": appliances have one NIC, and waiting for all of them
    # would stall boot on an unplugged second one.
    write_file(
        tree,
        "/etc/systemd/system/systemd-networkd-wait-online.service.d/crust.conf",
        "[Service]\nExecStart=\nExecStart=/usr/lib/systemd/systemd-networkd-wait-online --any --timeout=30\n",
    )


def network_services(tree: Path) -> tuple[str, ...]:
    """The units that bring up the network written by configure_network."""
    units = ["systemd-networkd.service"]
    if inside(tree, "/usr/lib/systemd/system/systemd-resolved.service", follow=True).exists():
        units.append("systemd-resolved.service")
    return tuple(units)


def set_root_password(tree: Path, password_hash: str) -> None:
    """Lock root ('!*' in shadow) unless a hash was given."""
    set_shadow_hash(tree, "root", password_hash or "!*")


def set_shadow_hash(tree: Path, user: str, value: str) -> None:
    text = read_text(tree, "/etc/shadow")
    if text is None:
        raise BuildError(f"no /etc/shadow in the tree at {tree}")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == user:
            fields[1] = value
            lines[i] = ":".join(fields)
            break
    else:
        raise BuildError(f"no user {user} in the tree's /etc/shadow")
    write_file(tree, "/etc/shadow", "\n".join(lines) + "\n", 0o640)


def create_users(tree: Path, users: tuple[User, ...]) -> None:
    for user in users:
        argv = ["useradd", "--root", str(tree), "--create-home", "--home-dir", user.homedir, "--shell", user.shell, "--user-group"]
        groups = [g for g in user.groups if group_exists(tree, g)]
        if groups:
            argv += ["--groups", ",".join(groups)]
        if user.uid is not None:
            argv += ["--uid", str(user.uid)]
        if user.gecos:
            argv += ["--comment", user.gecos]
        run([*argv, user.name])
        set_shadow_hash(tree, user.name, user.password_hash or "!")


def group_exists(tree: Path, group: str) -> bool:
    text = read_text(tree, "/etc/group") or ""
    return any(line.split(":")[0] == group for line in text.splitlines())


def install_ssh_keys(tree: Path, keys: tuple[SshKey, ...]) -> None:
    by_user: dict[str, list[str]] = {}
    for key in keys:
        by_user.setdefault(key.username, []).append(key.key)
    for username, lines in by_user.items():
        uid, gid, home = passwd_entry(tree, username)
        ssh_dir = make_dirs(tree, f"{home}/.ssh", 0o700)
        auth = write_file(tree, f"{home}/.ssh/authorized_keys", "\n".join(lines) + "\n", 0o600)
        for path, mode in ((ssh_dir, 0o700), (auth, 0o600)):
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode, follow_symlinks=False)


def passwd_entry(tree: Path, username: str) -> tuple[int, int, str]:
    for line in (read_text(tree, "/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if fields[0] == username:
            return int(fields[2]), int(fields[3]), fields[5]
    raise BuildError(f"no user {username} in the tree")


def set_services(tree: Path, enabled: tuple[str, ...], disabled: tuple[str, ...]) -> None:
    """Disabled first, then enabled (kickstart's order), with the host's systemctl --root."""
    if disabled:
        run(["systemctl", f"--root={tree}", "disable", *[unit_name(s) for s in disabled]])
    if enabled:
        run(["systemctl", f"--root={tree}", "enable", *[unit_name(s) for s in enabled]])


def unit_name(service: str) -> str:
    return service if re.search(r"\.(service|socket|timer|target|path|mount)$", service) else f"{service}.service"


def write_fstab(tree: Path, root_uuid: str, grow: bool) -> None:
    options = "rw,relatime,errors=remount-ro" + (",x-systemd.growfs" if grow else "")
    write_file(tree, "/etc/fstab", f"# Written by Crust.\nUUID={root_uuid}\t/\text4\t{options}\t0\t1\n")


def write_grow_config(tree: Path) -> None:
    """systemd-repart grows the root partition to the disk at boot; x-systemd.growfs the fs."""
    write_file(tree, "/etc/repart.d/50-root.conf", "[Partition]\nType=root\n")


def mask_generators(tree: Path, names: tuple[str, ...]) -> None:
    for name in names:
        symlink(tree, f"/etc/systemd/system-generators/{name}", "/dev/null")


def mask_units(tree: Path, names: tuple[str, ...]) -> None:
    """As `systemctl mask`: a /dev/null link in /etc/systemd/system wins over any unit file."""
    for name in names:
        symlink(tree, f"/etc/systemd/system/{name}", "/dev/null")


def write_kernel_cmdline(tree: Path, cmdline: str) -> None:
    write_file(tree, "/etc/kernel/cmdline", cmdline + "\n")


def run_scripts(tree: Path, scripts: tuple[Script, ...], workdir: Path) -> None:
    """%post scripts in order; a failing script fails the build (as if --erroronfail)."""
    for index, script in enumerate(scripts):
        where = "in the tree" if script.chroot else "on the host (--nochroot)"
        log_line(f"# %post at kickstart line {script.line}, {where}, interpreter {script.interpreter}")
        if script.chroot:
            name = f"/tmp/crust-post-{index}"
            write_file(tree, name, script.body, 0o700)
            try:
                in_tree(tree, [script.interpreter, name])
            finally:
                remove(tree, name)
        else:
            path = workdir / f"post-nochroot-{index}"
            path.write_text(script.body, encoding="utf-8")
            path.chmod(0o700)
            env = dict(CHROOT_ENV, INSTALL_ROOT=str(tree), ANA_INSTALL_PATH=str(tree))
            run(sandboxed([*shlex.split(script.interpreter), str(path)]), env=env, cwd=workdir)
