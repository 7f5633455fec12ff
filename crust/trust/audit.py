"""Audit a root tree for what an appliance must not ship, without booting it.

The build audits every sealed tree before it becomes an image, and ``build.py audit`` audits a
built image (its root file system read with debugfs, see crust/imagefs.py). The rules:

accounts        root locked ('!' or '*'); no other account with a password hash unless the
                kickstart declared it (rootpw, user --password); no empty password anywhere
host-keys       no /etc/ssh/ssh_host_*key* (each machine makes its own at first boot)
secrets         no private key (PEM, OpenSSH, PGP, PuTTY) and no credential (AWS key ids and
                secret keys, GitHub, Slack tokens) in a regular file under SCAN_LIMIT bytes
machine-id      /etc/machine-id empty (or "uninitialized"), no /var/lib/dbus/machine-id
sshd            the effective sshd config allows no password logins: PasswordAuthentication
                no (unset means yes), no `yes` in any Match block, no keyboard-interactive
                logins through PAM, PermitRootLogin not `yes`
world-writable  no world-writable file, nor world-writable directory without the sticky bit,
                outside the temporary paths (WRITABLE_PATHS)
setuid          every setuid/setgid file is shipped by a Debian package (dpkg's *.list),
                unchanged (its md5sums), with the mode a dpkg-statoverride entry gives it

Allowed, with the reason:
- /usr/share/doc is not scanned for secrets: documentation, and its example keys are examples.
- A secret in a file that a package shipped and nobody changed (its dpkg md5sum, or the sha256
  in a Python distribution's RECORD, matches) is public: every install of that package has the
  same bytes (libgnutls carries self-test keys, Python packages carry test keys). A compiled
  __pycache__/*.pyc follows its source file. A changed file, or one no package shipped, counts.
- AWS's documented example credentials (they contain EXAMPLE) are not credentials.
Findings name the file, the line and the kind of secret, never the secret itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from crust.define.kickstart import KickstartConfig
from crust.runner import run
from crust.trust.sshdconfig import read_sshd_config

RULES = ("accounts", "host-keys", "secrets", "machine-id", "sshd", "world-writable", "setuid")
SCAN_LIMIT = 16 * 1024 * 1024  # bigger files (kernels, initrds, large libraries) are not read
NOT_WALKED = ("/proc", "/sys")  # mount points: empty in an image
NOT_SCANNED = ("/usr/share/doc", "/dev", "/proc", "/sys")
WRITABLE_PATHS = ("/tmp", "/var/tmp", "/dev", "/run", "/var/lock")  # tmpfs/devtmpfs at run time, or sticky by design
USRMERGE_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
LOCKED_PREFIXES = ("!", "*")

SEPARATOR = rb"(?:\r?\n|\\r\\n|\\n)"  # real line ends, or escaped ones inside a JSON or code string
SECRET_PATTERNS: tuple[tuple[tuple[bytes, ...], re.Pattern[bytes], str], ...] = (
    # (literals of which every match contains one: a cheap pre-filter; the pattern; what it is)
    (
        (b"-----BEGIN ",),
        re.compile(
            rb"-----BEGIN ([A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----"
            + SEPARATOR
            + rb"+(?:[A-Za-z-]+: [^\r\n\\]*"
            + SEPARATOR
            + rb"+)*[A-Za-z0-9+/=]{40,}"
        ),
        "private key ({0})",
    ),
    (
        (b"Private-Lines: ",),
        re.compile(rb"PuTTY-User-Key-File-\d: [^\r\n]*\r?\n(?:[^\r\n]*\r?\n){0,40}?Private-Lines: \d+\r?\n[A-Za-z0-9+/=]{40,}"),
        "PuTTY private key",
    ),
    ((b"AKIA", b"ASIA"), re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"), "AWS access key id"),
    (
        (b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY"),
        re.compile(rb"(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY)[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
        "AWS secret access key",
    ),
    ((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), re.compile(rb"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,}"), "GitHub token"),
    ((b"github_pat_",), re.compile(rb"github_pat_[A-Za-z0-9_]{22,}"), "GitHub fine-grained token"),
    ((b"xox",), re.compile(rb"(?<![A-Za-z0-9])xox[baprs]-[A-Za-z0-9-]{10,}"), "Slack token"),
)


@dataclass(frozen=True)
class AuditPolicy:
    """What the appliance declared, so the audit does not fail it for that."""

    password_accounts: frozenset[str] = frozenset()  # may have a password hash (root too, when listed)
    scan_limit: int = SCAN_LIMIT


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str  # in the image: "/etc/shadow"
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.path}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "path": self.path, "reason": self.reason}


def policy_from_kickstart(ks: KickstartConfig) -> AuditPolicy:
    """Accounts the kickstart gives a password: `rootpw` (not --lock) and `user --password`."""
    names = {u.name for u in ks.users if u.password_hash}
    if ks.root_password_hash:
        names.add("root")
    return AuditPolicy(password_accounts=frozenset(names))


# Every pattern's match begins with one of its anchors (look-behinds aside), except the PuTTY
# key's, which begins at its header lines before "Private-Lines: ".
STARTS_AT_ANCHOR = frozenset(p for anchors, p, _ in SECRET_PATTERNS if anchors != (b"Private-Lines: ",))


def audit_tree(root: Path, allowed: AuditPolicy) -> list[Finding]:
    """Every finding in the tree at root, rule by rule (RULES order), paths sorted."""
    shipped = Shipped(root)
    findings = [*check_accounts(root, allowed), *check_host_keys(root), *check_machine_id(root), *check_sshd(root)]
    writable: list[Finding] = []
    setuid: list[Finding] = []
    secrets: list[Finding] = []
    candidates = files_with_anchors(root)
    for path, st in walk(root):
        mode = st.st_mode
        if stat.S_ISREG(mode):
            if mode & stat.S_IWOTH and not under(path, WRITABLE_PATHS):
                writable.append(Finding("world-writable", path, f"world-writable file (mode {stat.S_IMODE(mode):04o})"))
            if mode & (stat.S_ISUID | stat.S_ISGID):
                setuid.extend(check_setuid(path, stat.S_IMODE(mode), shipped))
            if st.st_size <= allowed.scan_limit and not under(path, NOT_SCANNED) and may_hold_secret(path, candidates):
                secrets.extend(scan_secrets(root, path, shipped))
        elif stat.S_ISDIR(mode) and mode & stat.S_IWOTH and not mode & stat.S_ISVTX and not under(path, WRITABLE_PATHS):
            writable.append(Finding("world-writable", path, f"world-writable directory without the sticky bit (mode {stat.S_IMODE(mode):04o})"))
    findings += secrets + writable + setuid
    order = {rule: i for i, rule in enumerate(RULES)}
    return sorted(findings, key=lambda f: (order[f.rule], f.path))


def files_with_anchors(root: Path) -> set[str] | None:
    """Paths (in the image) of the files holding any pattern's anchor literal, or None when
    that is unknown. GNU grep's multi-string search reads the tree once, in its own process
    (beside the image assembly), 3x faster than Python's per-literal scans; only these files
    are then matched against the patterns."""
    anchors = [a.decode("ascii") for literals, _, _ in SECRET_PATTERNS for a in literals]
    argv = ["grep", "-rlZF", "--no-messages", "-D", "skip", *(f"--regexp={a}" for a in anchors), "--", str(root)]
    found = run(argv, capture=True, check=False, env={"LC_ALL": "C"})
    if found.status not in (0, 1):  # an unreadable file: let Python look at every file
        return None
    prefix = str(root).rstrip("/")
    return {path[len(prefix) :] for path in found.stdout.split("\0") if path.startswith(prefix + "/")}


def may_hold_secret(path: str, candidates: set[str] | None) -> bool:
    """Whether scan_secrets must read path: grep listed it, or grep's answer cannot be trusted
    for it (unknown, or a name that is not UTF-8, which the listing cannot spell)."""
    if candidates is None or path in candidates:
        return True
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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


def read_text(root: Path, path: str) -> str | None:
    target = root / path.lstrip("/")
    if target.is_symlink() or not target.is_file():
        return None
    return target.read_text(encoding="utf-8", errors="replace")


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
    ssh = root / "etc/ssh"
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
    if not (root / config_path.lstrip("/")).is_file():
        if (root / "usr/sbin/sshd").exists():
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


def check_setuid(path: str, mode: int, shipped: Shipped) -> list[Finding]:
    kind = "setuid" if mode & stat.S_ISUID else "setgid"
    if path not in shipped.files:
        return [Finding("setuid", path, f"{kind} file (mode {mode:04o}) that no Debian package ships")]
    override = shipped.statoverrides.get(path)
    if override is not None and override != mode:
        return [Finding("setuid", path, f"{kind} file with mode {mode:04o}, but dpkg-statoverride says {override:04o}")]
    if shipped.as_shipped(path) is False:
        return [Finding("setuid", path, f"{kind} file changed since its package installed it (its checksum differs)")]
    return []


def scan_secrets(root: Path, path: str, shipped: Shipped) -> list[Finding]:
    try:
        data = (root / path.lstrip("/")).read_bytes()
    except OSError:
        return []
    findings: dict[Finding, None] = {}
    for anchors, pattern, what in SECRET_PATTERNS:
        for found in matches(pattern, anchors, data):
            if b"EXAMPLE" in found.group(0):
                continue
            label = what.format(found.group(1).decode("ascii")) if "{0}" in what else what
            line = data.count(b"\n", 0, found.start()) + 1
            findings[Finding("secrets", path, f"{label} at line {line}")] = None
    if findings and (shipped.unchanged(path) or shipped.compiled_from_unchanged(path)):
        return []
    return list(findings)


def matches(pattern: re.Pattern[bytes], anchors: tuple[bytes, ...], data: bytes) -> Iterator[re.Match[bytes]]:
    """The pattern's matches in data. A pattern whose matches begin with one of its anchors is
    tried only where an anchor occurs (bytes.find is fast; a pattern opening with a look-behind
    or an alternation makes re try every position of a large binary)."""
    if not any(a in data for a in anchors):
        return
    if pattern in STARTS_AT_ANCHOR:
        for anchor in anchors:
            at = data.find(anchor)
            while at != -1:
                if found := pattern.match(data, at):
                    yield found
                at = data.find(anchor, at + 1)
    else:
        yield from pattern.finditer(data)


@dataclass(frozen=True)
class Shipped:
    """What the tree's package managers say they installed: dpkg's file lists, md5sums and
    stat overrides, Python distributions' RECORDs. Each is read when first needed."""

    root: Path

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Merged /usr (/bin -> usr/bin): dpkg may list either spelling."""
        aliases = {}
        for name in USRMERGE_DIRS:
            link = self.root / name
            if link.is_symlink() and os.readlink(link).strip("/") == f"usr/{name}":
                aliases[f"/{name}/"] = f"/usr/{name}/"
        return aliases

    def canonical(self, path: str) -> str:
        for alias, target in self.aliases.items():
            if path.startswith(alias):
                return target + path[len(alias) :]
        return path

    @cached_property
    def info(self) -> Path:
        return self.root / "var/lib/dpkg/info"

    @cached_property
    def diversions(self) -> dict[str, str]:
        """diverted-to path -> the packaged path it stands for."""
        lines = (read_text(self.root, "/var/lib/dpkg/diversions") or "").splitlines()
        return {self.canonical(lines[i + 1]): self.canonical(lines[i]) for i in range(0, len(lines) - 2, 3)}

    @cached_property
    def files(self) -> frozenset[str]:
        paths: set[str] = set()
        for listing in self.info.glob("*.list") if self.info.is_dir() else ():
            paths.update(self.canonical(p) for p in listing.read_text(encoding="utf-8", errors="replace").splitlines())
        paths.update(self.diversions)
        return frozenset(paths)

    @cached_property
    def md5sums(self) -> dict[str, str]:
        sums: dict[str, str] = {}
        for listing in self.info.glob("*.md5sums") if self.info.is_dir() else ():
            for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
                digest, _, rel = line.partition("  ")
                if rel:
                    sums[self.canonical("/" + rel)] = digest
        return sums

    @cached_property
    def statoverrides(self) -> dict[str, int]:
        overrides: dict[str, int] = {}
        for line in (read_text(self.root, "/var/lib/dpkg/statoverride") or "").splitlines():
            fields = line.split(maxsplit=3)
            if len(fields) == 4:
                try:
                    overrides[self.canonical(fields[3])] = int(fields[2], 8)
                except ValueError:
                    continue
        return overrides

    def unchanged(self, path: str) -> bool:
        return self.as_shipped(path) is True

    def as_shipped(self, path: str) -> bool | None:
        """Whether path has the content a package shipped: dpkg's md5sum (a diverted file: its
        original's), else the sha256 in the RECORD of its Python distribution; None when no
        package gives a checksum for it."""
        target = self.root / path.lstrip("/")
        expected = self.md5sums.get(self.diversions.get(path, path))
        recorded = None if expected is not None else self.python_record(path)
        if expected is None and recorded is None:
            return None
        try:
            data = target.read_bytes()
        except OSError:
            return False
        if expected is not None:
            return hashlib.md5(data, usedforsecurity=False).hexdigest() == expected
        return recorded == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    def compiled_from_unchanged(self, path: str) -> bool:
        """path is a __pycache__/NAME.TAG.pyc whose NAME.py is as a package shipped it."""
        parts = path.rsplit("/", 2)
        if len(parts) != 3 or parts[1] != "__pycache__" or not parts[2].endswith(".pyc"):
            return False
        return self.unchanged(f"{parts[0]}/{parts[2].split('.', 1)[0]}.py")

    def python_record(self, path: str) -> str | None:
        """The hash a Python distribution's RECORD gives for path (in a site-packages or
        dist-packages directory), if any."""
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            if parts[i] in ("site-packages", "dist-packages"):
                return self.python_records("/".join(parts[: i + 1])).get("/".join(parts[i + 1 :]))
        return None

    def python_records(self, site: str) -> dict[str, str]:
        """file (relative to site) -> hash, from every *.dist-info/RECORD in site."""
        if site not in self.records:
            records: dict[str, str] = {}
            for record in sorted((self.root / site.lstrip("/")).glob("*.dist-info/RECORD")):
                for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
                    fields = line.rsplit(",", 2)
                    if len(fields) == 3 and fields[1]:
                        records[os.path.normpath(fields[0].strip('"'))] = fields[1]
            self.records[site] = records
        return self.records[site]

    @cached_property
    def records(self) -> dict[str, dict[str, str]]:
        return {}


def audit_image(image: Path, allowed: AuditPolicy, workdir: Path) -> list[Finding]:
    """Audit a raw disk image's root file system, copied out (debugfs) into a temporary
    directory under workdir that is removed afterwards."""
    from crust.disk.imagefs import extracted_root

    with extracted_root(image, workdir) as root:
        return audit_tree(root, allowed)


def summarize(findings: list[Finding], first: int = 3) -> str:
    """One line: how many findings, and the first few."""
    shown = "; ".join(str(f) for f in findings[:first])
    more = f"; and {len(findings) - first} more" if len(findings) > first else ""
    return f"{len(findings)} problem{'s' if len(findings) != 1 else ''}: {shown}{more}"


def findings_json(findings: list[Finding]) -> dict[str, Any]:
    """What the manifest records."""
    return {"passed": not findings, "findings": [f.to_json() for f in findings]}
