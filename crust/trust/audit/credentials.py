"""The audit's secrets rule: private keys and credentials in the image's files.

GNU grep's multi-string search finds the files holding any pattern's anchor literal (one pass,
in its own process); only those are matched against the patterns, and a pattern whose matches
begin at their anchor is tried only where it occurs. A secret in a file exactly as a package
shipped it is public (see shipped.py); findings name the file and line, never the secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from crust.runner import run
from crust.trust.audit.finding import Finding
from crust.trust.audit.shipped import Shipped

# Line ends (real, or escaped inside a JSON or code string) and the indentation of a YAML block,
# or plain spaces: a key pasted on one line.
SEPARATOR = rb"(?:[ \t]*(?:\r?\n|\\r\\n|\\n)[ \t]*|[ \t]+)"
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
    ((b"client-key-data:",), re.compile(rb"client-key-data:[ \t]*[\"']?[A-Za-z0-9+/=]{40,}"), "Kubernetes client key"),
)
# Files that are credentials by what they are: (path pattern, what in them is a credential, label).
CREDENTIAL_FILES: tuple[tuple[re.Pattern[str], re.Pattern[bytes], str], ...] = (
    (re.compile(r"(^|/)[._]netrc$"), re.compile(rb"(?m)\bpassword[ \t]+\S"), ".netrc password"),
    (
        re.compile(r"/\.docker/config\.json$"),
        re.compile(rb"\"(auth|identitytoken|registrytoken)\"[ \t]*:[ \t]*\"[^\"]{4,}\""),
        "Docker registry credential",
    ),
    (re.compile(r"/\.kube/config$"), re.compile(rb"(?m)^[ \t]*(token|password|client-key-data)[ \t]*:[ \t]*\S{8,}"), "Kubernetes credential"),
    (re.compile(r"/\.(git-credentials|pgpass|my\.cnf)$|/\.config/gh/hosts\.yml$"), re.compile(rb"\S{8,}"), "stored credentials"),
)


# Every pattern's match begins with one of its anchors (look-behinds aside), except the PuTTY
# key's, which begins at its header lines before "Private-Lines: ".
STARTS_AT_ANCHOR = frozenset(p for anchors, p, _ in SECRET_PATTERNS if anchors != (b"Private-Lines: ",))


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


def credential_file(path: str) -> bool:
    """Whether path is a file that holds credentials by what it is (.netrc, .docker/config.json...)."""
    return any(name.search(path) for name, _, _ in CREDENTIAL_FILES)


def scan_secrets(root: Path, path: str, shipped: Shipped) -> list[Finding]:
    try:
        data = (root / path.lstrip("/")).read_bytes()
    except OSError:
        return []
    findings: dict[Finding, None] = {}
    public = shipped.compiled_source(path)  # a pyc's secrets are public when its packaged source has them
    for anchors, pattern, what in SECRET_PATTERNS:
        for found in matches(pattern, anchors, data):
            if b"EXAMPLE" in found.group(0) or (public is not None and found.group(0)[-40:] in public):
                continue
            label = what.format(found.group(1).decode("ascii")) if "{0}" in what else what
            line = data.count(b"\n", 0, found.start()) + 1
            findings[Finding("secrets", path, f"{label} at line {line}")] = None
    for name, pattern, label in CREDENTIAL_FILES:
        stored = pattern.search(data) if name.search(path) else None
        if stored is not None:
            line = data.count(b"\n", 0, stored.start()) + 1
            findings[Finding("secrets", path, f"{label} at line {line}")] = None
    if findings and shipped.unchanged(path):
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
