"""The one reader of a tree's dpkg database: what is installed (status), which files each
package shipped (*.list) with their checksums (*.md5sums), stat overrides and diversions.

The packages step (what %packages installed, for the roles), the SBOM (every package, with its
source and architecture) and the audit (is this file exactly as its package shipped it?) all
read it here, from the tree itself (no host dpkg-query: the tree's database is plain text).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from crust.tree.paths import inside, read_bytes, read_text

USRMERGE_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    source: str  # the source package (name only), "" when it is the package's own name
    maintainer: str


def parse_control(stanza: str) -> dict[str, str]:
    """A deb822 stanza's fields (names lower-cased; continuation lines dropped)."""
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields


@dataclass(frozen=True)
class DpkgDatabase:
    """The dpkg database of the tree at root; each part is read when first needed."""

    root: Path

    @cached_property
    def packages(self) -> list[DebPackage]:
        """The packages /var/lib/dpkg/status says are installed (Status: install ok installed)."""
        text = read_text(self.root, "/var/lib/dpkg/status")
        found = []
        for stanza in re.split(r"\n\s*\n", text or ""):
            fields = parse_control(stanza)
            if fields.get("status", "").split()[-1:] != ["installed"] or "package" not in fields:
                continue
            found.append(
                DebPackage(
                    name=fields["package"],
                    version=fields.get("version", ""),
                    architecture=fields.get("architecture", ""),
                    source=fields.get("source", "").split(" ")[0],
                    maintainer=fields.get("maintainer", ""),
                )
            )
        return sorted(found, key=lambda p: (p.name, p.architecture))

    def installed(self) -> dict[str, str]:
        """Package -> version of what is installed."""
        return {p.name: p.version for p in self.packages}

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Merged /usr (/bin -> usr/bin): dpkg may list either spelling."""
        aliases = {}
        for name in USRMERGE_DIRS:
            link = self.root / name
            if link.is_symlink() and os.readlink(link).strip("/") == f"usr/{name}":
                aliases[f"/{name}/"] = f"/usr/{name}/"
        return aliases

    def info_text(self, name: str) -> str:
        """A file of dpkg's info directory (read within the tree: it may be a link)."""
        return read_text(self.root, f"/var/lib/dpkg/info/{name}") or ""

    def canonical(self, path: str) -> str:
        for alias, target in self.aliases.items():
            if path.startswith(alias):
                return target + path[len(alias) :]
        return path

    @cached_property
    def info(self) -> Path:
        return inside(self.root, "/var/lib/dpkg/info", follow=True)

    @cached_property
    def diversions(self) -> dict[str, str]:
        """diverted-to path -> the packaged path it stands for."""
        lines = (read_text(self.root, "/var/lib/dpkg/diversions") or "").splitlines()
        return {self.canonical(lines[i + 1]): self.canonical(lines[i]) for i in range(0, len(lines) - 2, 3)}

    @cached_property
    def files(self) -> frozenset[str]:
        """Every path a package shipped (and every diversion's target)."""
        paths: set[str] = set()
        for listing in self.info.glob("*.list") if self.info.is_dir() else ():
            paths.update(self.canonical(p) for p in self.info_text(listing.name).splitlines())
        paths.update(self.diversions)
        return frozenset(paths)

    @cached_property
    def md5sums(self) -> dict[str, str]:
        sums: dict[str, str] = {}
        for listing in self.info.glob("*.md5sums") if self.info.is_dir() else ():
            for line in self.info_text(listing.name).splitlines():
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

    def as_shipped(self, path: str) -> bool | None:
        """Whether path has the content its package shipped (a diverted file: its original's),
        by dpkg's md5sum; None when no package gives a checksum for it."""
        expected = self.md5sums.get(self.diversions.get(path, path))
        if expected is None:
            return None
        data = read_bytes(self.root, path)
        if data is None:
            return False
        return hashlib.md5(data, usedforsecurity=False).hexdigest() == expected
