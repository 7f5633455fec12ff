"""The audit's rules on accounts, host keys, machine ids, sshd and setuid files."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from crust.tree.paths import inside, read_text
from crust.trust.audit.finding import Finding
from crust.trust.sshdconfig import read_sshd_config

if TYPE_CHECKING:
    from crust.trust.audit import AuditPolicy
    from crust.trust.audit.shipped import Shipped

LOCKED_PREFIXES = ("!", "*")


def check_accounts(root: Path, allowed: AuditPolicy) -> list[Finding]:
    findings: list[Finding] = []
    try:
        shadow = read_text(root, "/etc/shadow")
    except OSError as exc:
        return [Finding("accounts", "/etc/shadow", f"cannot read it ({exc.strerror}): cannot tell whether root is locked")]
    if shadow is None:
        return [Finding("accounts", "/etc/shadow", "missing: cannot tell whether root is locked")]
    for line in shadow.splitlines():
        fields = line.split(":")
        if len(fields) < 2 or not fields[0]:
            continue
        name, hashed = fields[0], fields[1]
        if hashed == "":
            findings.append(Finding("accounts", "/etc/shadow", f"{name} has an empty password: anyone can log in as {name}"))
        elif hashed.startswith(LOCKED_PREFIXES) or name in allowed.password_accounts:
            continue
        elif name == "root":
            findings.append(Finding("accounts", "/etc/shadow", "root is not locked: it has a password hash the kickstart did not set (rootpw)"))
        else:
            findings.append(Finding("accounts", "/etc/shadow", f"{name} has a password hash the kickstart did not declare (user --password)"))
    for line in (read_text(root, "/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) < 2 or fields[1] in ("x", "*", "!", "!*"):
            continue
        what = "an empty password field: no password needed" if fields[1] == "" else "a password in /etc/passwd itself"
        findings.append(Finding("accounts", "/etc/passwd", f"{fields[0]} has {what}"))
    return findings


def check_host_keys(root: Path) -> list[Finding]:
    ssh = inside(root, "/etc/ssh", follow=True)
    keys = sorted(ssh.glob("ssh_host_*key*")) if ssh.is_dir() else []
    return [Finding("host-keys", f"/etc/ssh/{k.name}", "SSH host key in the image: every machine made from it would share it") for k in keys]


def check_machine_id(root: Path) -> list[Finding]:
    findings = []
    machine_id = read_text(root, "/etc/machine-id")
    if machine_id is not None and machine_id.strip() not in ("", "uninitialized"):
        findings.append(Finding("machine-id", "/etc/machine-id", "not empty: every machine made from the image would have the same id"))
    dbus_id = read_text(root, "/var/lib/dbus/machine-id")
    if dbus_id is not None and dbus_id.strip():
        findings.append(Finding("machine-id", "/var/lib/dbus/machine-id", "not empty: every machine made from the image would have the same id"))
    return findings


def check_sshd(root: Path) -> list[Finding]:
    """Password logins through sshd, from its configuration as sshd would read it."""
    config_path = "/etc/ssh/sshd_config"
    if not inside(root, config_path, follow=True).is_file():
        if inside(root, "/usr/sbin/sshd", follow=True).exists():
            return [Finding("sshd", config_path, "sshd is installed without a configuration: its defaults allow password logins")]
        return []
    config = read_sshd_config(root)
    findings = [Finding("sshd", config_path, problem) for problem in config.problems]
    password = config.value("PasswordAuthentication")
    if password is None:
        findings.append(Finding("sshd", config_path, "PasswordAuthentication is not set (sshd's default is yes): password logins are allowed"))
    elif password.value.lower() != "no":
        findings.append(
            Finding("sshd", password.file, f"PasswordAuthentication {password.value} (line {password.line}): password logins are allowed")
        )
    kbd = config.value("KbdInteractiveAuthentication")
    pam = config.value("UsePAM")
    if (kbd is None or kbd.value.lower() != "no") and pam is not None and pam.value.lower() == "yes":
        where = f"KbdInteractiveAuthentication {kbd.value} (line {kbd.line})" if kbd else "KbdInteractiveAuthentication is not set (default yes)"
        findings.append(Finding("sshd", kbd.file if kbd else config_path, f"{where} with UsePAM yes: PAM asks for passwords"))
    root_login = config.value("PermitRootLogin")
    if root_login is not None and root_login.value.lower() == "yes":
        findings.append(Finding("sshd", root_login.file, f"PermitRootLogin yes (line {root_login.line}): root may log in with a password"))
    for keyword in ("PasswordAuthentication", "KbdInteractiveAuthentication", "PermitRootLogin"):
        for setting in config.in_matches(keyword):
            if setting.value.lower() == "yes":
                findings.append(
                    Finding(
                        "sshd",
                        setting.file,
                        f"{keyword} yes in `Match {setting.match}` (line {setting.line}): password logins for matching connections",
                    )
                )
    return findings


def check_privileged(path: str, mode: int, caps: str, shipped: Shipped, baseline: Mapping[str, str] | None) -> list[Finding]:
    """A setuid/setgid file or one with capabilities: shipped so by a package, and (in a build)
    so when the packages were installed."""
    kind = "setuid" if mode & stat.S_ISUID else "setgid" if mode & stat.S_ISGID else ""
    rule = "setuid" if kind else "capabilities"
    what = f"{kind} file (mode {mode:04o})" if kind else f"file with capabilities ({caps})"
    if path not in shipped.files:
        return [Finding(rule, path, f"{what} that no package ships")]
    if baseline is not None and baseline.get(path) != f"{mode:04o} {caps}":
        before = baseline.get(path)
        return [Finding(rule, path, f"{what}, made so after its package installed it" + (f" (was {before})" if before else ""))]
    if kind:
        override = shipped.statoverrides.get(path)
        if override is not None and override != mode:
            return [Finding("setuid", path, f"{kind} file with mode {mode:04o}, but dpkg-statoverride says {override:04o}")]
    if shipped.as_shipped(path) is False:
        return [Finding(rule, path, f"{what} changed since its package installed it (its checksum differs)")]
    return []


def check_ssh_keys(root: Path, declared: Mapping[str, tuple[str, ...]]) -> list[Finding]:
    """authorized_keys files in the accounts' homes: every key in them was declared for that
    account by the kickstart (sshkey --username=...)."""
    findings = []
    for line in (read_text(root, "/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        name, home = fields[0], fields[5].rstrip("/")
        for file in ("authorized_keys", "authorized_keys2"):
            text = read_text(root, f"{home}/.ssh/{file}")
            keys = [k.strip() for k in (text or "").splitlines() if k.strip() and not k.strip().startswith("#")]
            extra = [k for k in keys if k not in declared.get(name, ())]
            if extra:
                findings.append(
                    Finding(
                        "ssh-keys", f"{home}/.ssh/{file}", f"{len(extra)} key(s) for {name} that no sshkey line declared: a way in nobody reviewed"
                    )
                )
    return findings
