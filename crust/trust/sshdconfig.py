"""sshd's configuration as sshd reads it, from a tree on the host (no sshd -T: nothing boots).

sshd_config(5) semantics kept here: keywords are case-insensitive, ``Keyword value`` and
``Keyword=value`` both work, the first value obtained for a keyword wins, ``Include`` takes
globs (relative ones under /etc/ssh) read in lexical order at the point of the Include, and a
``Match`` line starts a conditional block that lasts until the next Match (or the end of the
file). Settings in a Match block override the global ones for the connections they match, so
they are kept apart: a check that cares about any connection looks at them too.
"""

from __future__ import annotations

import glob
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crust.tree.paths import inside

SSHD_CONFIG = "/etc/ssh/sshd_config"
MAX_INCLUDE_DEPTH = 16  # sshd's own limit
# Deprecated names sshd still accepts, mapped to the keyword they set.
ALIASES: Mapping[str, str] = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
LINE_RE = re.compile(r"^([A-Za-z0-9]+)(?:\s*=\s*|\s+)(.*)$")


@dataclass(frozen=True)
class Setting:
    keyword: str  # lower case
    value: str  # the first argument, as written
    file: str  # path in the tree, "/etc/ssh/sshd_config.d/50-crust.conf"
    line: int
    match: str = ""  # the Match line's criteria when inside a Match block

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class SshdConfig:
    settings: tuple[Setting, ...]  # in the order sshd reads them
    problems: tuple[str, ...] = ()  # unreadable Include targets, include loops

    def value(self, keyword: str) -> Setting | None:
        """The effective global setting: the first one outside any Match block."""
        keyword = keyword.lower()
        return next((s for s in self.settings if s.keyword == keyword and not s.match), None)

    def in_matches(self, keyword: str) -> tuple[Setting, ...]:
        keyword = keyword.lower()
        return tuple(s for s in self.settings if s.keyword == keyword and s.match)


def read_sshd_config(root: Path, path: str = SSHD_CONFIG) -> SshdConfig:
    """Parse path (and what it includes) inside the tree at root."""
    settings: list[Setting] = []
    problems: list[str] = []
    read_file(root, path, "", 0, settings, problems)
    return SshdConfig(tuple(settings), tuple(problems))


def split_args(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: sshd would refuse it; keep the words
        return text.split()


def read_file(root: Path, path: str, match: str, depth: int, settings: list[Setting], problems: list[str]) -> None:
    """Append path's settings. A Match block opened in an included file ends with that file
    (sshd restores the including file's Match state after an Include)."""
    if depth > MAX_INCLUDE_DEPTH:
        problems.append(f"{path}: Include nested deeper than {MAX_INCLUDE_DEPTH}")
        return
    try:
        text = inside(root, path, follow=True).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        problems.append(f"{path}: cannot read ({exc.strerror})")
        return
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = LINE_RE.match(line)
        if not found:
            continue
        keyword = found.group(1).lower()
        args = split_args(found.group(2))
        if keyword == "match":
            match = " ".join(args) or "(empty)"
        elif keyword == "include":
            for pattern in args:
                absolute = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                for included in include_targets(root, absolute):
                    read_file(root, included, match, depth + 1, settings, problems)
        elif args:
            settings.append(Setting(ALIASES.get(keyword, keyword), args[0], path, number, match))


def include_targets(root: Path, pattern: str) -> list[str]:
    """The tree paths a glob names, sorted as sshd sorts them (glob(3) order)."""
    base = str(root).rstrip("/")
    matches = sorted(glob.glob(glob.escape(base) + pattern))
    return [m[len(base) :] for m in matches if Path(m).is_file()]
