"""Audit a root tree for what an appliance must not ship, without booting it.

The build audits every sealed tree before it becomes an image, and ``build.py audit`` audits a
built image (its root file system read with debugfs, see crust/disk/imagefs.py). The rules:

accounts        root locked ('!' or '*'); no other account with a password hash unless the
                kickstart declared it (rootpw, user --password); no empty password anywhere
host-keys       no /etc/ssh/ssh_host_*key* (each machine makes its own at first boot)
ssh-keys        no authorized_keys with a key the kickstart's sshkey lines did not declare
secrets         no private key (PEM, OpenSSH, PGP, PuTTY: armoured, indented in YAML or pasted
                on one line) and no credential (AWS key ids and secret keys, GitHub, Slack
                tokens, Kubernetes client keys) in a regular file under SCAN_LIMIT bytes; no
                credentials file (.netrc, .docker/config.json, .kube/config, .git-credentials,
                .pgpass...) with credentials in it
machine-id      /etc/machine-id empty (or "uninitialized"), no /var/lib/dbus/machine-id
sshd            the effective sshd config allows no password logins: PasswordAuthentication
                no (unset means yes), no `yes` in any Match block, no keyboard-interactive
                logins through PAM, PermitRootLogin not `yes`
world-writable  no world-writable file, nor world-writable directory without the sticky bit,
                outside the temporary paths (WRITABLE_PATHS); no world-writable directory
                in PATH (sticky or not: anyone could plant a command there)
setuid          every setuid/setgid file is shipped by a Debian package (dpkg's *.list),
                unchanged (its md5sums), with the mode a dpkg-statoverride entry gives it;
                in a build, it was so when the packages were installed (a role that makes a
                packaged binary setuid is caught)
capabilities    no file capabilities (security.capability) but those the packages set when
                installed (in a build); outside a build, none on a file no package ships

Allowed, with the reason:
- /usr/share/doc is not scanned for secrets: documentation, and its example keys are examples.
- A secret in a file that a package shipped and nobody changed (its dpkg md5sum, or the sha256
  in a Python distribution's RECORD, matches) is public: every install of that package has the
  same bytes (libgnutls carries self-test keys, Python packages carry test keys). A compiled
  __pycache__/*.pyc is public as far as its unchanged source holds the same secret. A changed
  file, one no package shipped, and a Python distribution installed from a file or URL (the
  appliance's own application, PEP 610's direct_url.json) count.
- AWS's documented example credentials (they contain EXAMPLE) are not credentials.
Findings name the file, the line and the kind of secret, never the secret itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crust.define.kickstart import KickstartConfig
from crust.trust.audit.credentials import credential_file, files_with_anchors, may_hold_secret, scan_secrets
from crust.trust.audit.finding import Finding
from crust.trust.audit.rules import check_accounts, check_host_keys, check_machine_id, check_privileged, check_ssh_keys, check_sshd
from crust.trust.audit.shipped import Shipped

if TYPE_CHECKING:
    from crust.distros import PackageDatabase

RULES = ("accounts", "host-keys", "ssh-keys", "secrets", "machine-id", "sshd", "world-writable", "setuid", "capabilities")
PATH_DIRS = ("/", "/usr", "/usr/local", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
CAPABILITY = "security.capability"
SCAN_LIMIT = 16 * 1024 * 1024  # bigger files (kernels, initrds, large libraries) are not read
NOT_WALKED = ("/proc", "/sys")  # mount points: empty in an image
NOT_SCANNED = ("/usr/share/doc", "/dev", "/proc", "/sys")
WRITABLE_PATHS = ("/tmp", "/var/tmp", "/dev", "/run", "/var/lock")  # tmpfs/devtmpfs at run time, or sticky by design


@dataclass(frozen=True)
class AuditPolicy:
    """What the appliance declared, so the audit does not fail it for that."""

    password_accounts: frozenset[str] = frozenset()  # may have a password hash (root too, when listed)
    ssh_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # account -> its declared authorized keys
    # path -> "MODE CAPS" of every setuid/setgid or capability file as the packages left them
    # (a build knows; an audit of an image alone does not: None)
    privileged: Mapping[str, str] | None = None
    scan_limit: int = SCAN_LIMIT


def policy_from_kickstart(ks: KickstartConfig) -> AuditPolicy:
    """Accounts the kickstart gives a password: `rootpw` (not --lock) and `user --password`."""
    names = {u.name for u in ks.users if u.password_hash}
    if ks.root_password_hash:
        names.add("root")
    keys: dict[str, tuple[str, ...]] = {}
    for key in ks.sshkeys:
        keys[key.username] = (*keys.get(key.username, ()), key.key)
    return AuditPolicy(password_accounts=frozenset(names), ssh_keys=keys)


def audit_tree(root: Path, allowed: AuditPolicy, database: PackageDatabase | None = None) -> list[Finding]:
    """Every finding in the tree at root, rule by rule (RULES order), paths sorted. database is
    the tree's package database (its distribution backend's; found from the tree when None)."""
    shipped = Shipped(root, database)
    findings = [*check_accounts(root, allowed), *check_host_keys(root), *check_machine_id(root), *check_sshd(root)]
    findings += check_ssh_keys(root, allowed.ssh_keys)
    writable: list[Finding] = []
    privileged: list[Finding] = []
    secrets: list[Finding] = []
    candidates = files_with_anchors(root)
    for path, st in walk(root):
        mode = st.st_mode
        if stat.S_ISREG(mode):
            if mode & stat.S_IWOTH and not under(path, WRITABLE_PATHS):
                writable.append(Finding("world-writable", path, f"world-writable file (mode {stat.S_IMODE(mode):04o})"))
            caps = capabilities(root, path)
            if mode & (stat.S_ISUID | stat.S_ISGID) or caps:
                privileged.extend(check_privileged(path, stat.S_IMODE(mode), caps, shipped, allowed.privileged))
            if st.st_size <= allowed.scan_limit and not under(path, NOT_SCANNED) and (may_hold_secret(path, candidates) or credential_file(path)):
                secrets.extend(scan_secrets(root, path, shipped))
        elif stat.S_ISDIR(mode) and mode & stat.S_IWOTH and path in PATH_DIRS:
            writable.append(
                Finding("world-writable", path, f"world-writable directory in PATH (mode {stat.S_IMODE(mode):04o}): anyone could plant a command")
            )
        elif stat.S_ISDIR(mode) and mode & stat.S_IWOTH and not mode & stat.S_ISVTX and not under(path, WRITABLE_PATHS):
            writable.append(Finding("world-writable", path, f"world-writable directory without the sticky bit (mode {stat.S_IMODE(mode):04o})"))
    findings += secrets + writable + privileged
    order = {rule: i for i, rule in enumerate(RULES)}
    return sorted(findings, key=lambda f: (order[f.rule], f.path))


def capabilities(root: Path, path: str) -> str:
    """The file's capabilities (its security.capability attribute, hex), or "" when none."""
    try:
        return os.getxattr(f"{root}{path}", CAPABILITY, follow_symlinks=False).hex()
    except OSError:
        return ""


def privileged_files(root: Path) -> dict[str, str]:
    """path -> "MODE CAPS" of every setuid/setgid file and every file with capabilities: the
    baseline the packages step records for the image's audit."""
    found = {}
    for path, st in walk(root):
        if stat.S_ISREG(st.st_mode):
            caps = capabilities(root, path)
            if st.st_mode & (stat.S_ISUID | stat.S_ISGID) or caps:
                found[path] = f"{stat.S_IMODE(st.st_mode):04o} {caps}"
    return found


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(path in the image, lstat) of everything in the tree; symlinks are not followed."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(f"{root}{rel}" if rel else root))
        except OSError:
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode) and not under(path, NOT_WALKED):
                stack.append(path)


def audit_image(image: Path, allowed: AuditPolicy, workdir: Path) -> list[Finding]:
    """Audit a raw disk image's root file system, copied out (debugfs) into a temporary
    directory under workdir that is removed afterwards."""
    from crust.disk.imagefs import extracted_root

    with extracted_root(image, workdir) as root:
        return audit_tree(root, allowed)  # the database the tree holds


def summarize(findings: list[Finding], first: int = 3) -> str:
    """One line: how many findings, and the first few."""
    shown = "; ".join(str(f) for f in findings[:first])
    more = f"; and {len(findings) - first} more" if len(findings) > first else ""
    return f"{len(findings)} problem{'s' if len(findings) != 1 else ''}: {shown}{more}"


def findings_json(findings: list[Finding]) -> dict[str, Any]:
    """What the manifest records."""
    return {"passed": not findings, "findings": [f.to_json() for f in findings]}
