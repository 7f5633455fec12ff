"""What the tree's package managers say they installed, and whether a file is as they shipped it:
the distribution's package database (crust/distros/), and Python distributions' RECORDs."""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from crust.tree.paths import inside, read_bytes, read_text

if TYPE_CHECKING:
    from crust.distros import PackageDatabase


class Shipped:
    """Each part is read when first needed."""

    def __init__(self, root: Path, database: PackageDatabase | None = None) -> None:
        self.root = root
        self._database = database
        self.records: dict[str, dict[str, str]] = {}

    @cached_property
    def database(self) -> PackageDatabase:
        if self._database is None:
            from crust.distros import database_of

            self._database = database_of(self.root)
        return self._database

    @property
    def files(self) -> frozenset[str]:
        return self.database.files

    @property
    def statoverrides(self) -> dict[str, int]:
        return self.database.statoverrides

    def unchanged(self, path: str) -> bool:
        return self.as_shipped(path) is True

    def as_shipped(self, path: str) -> bool | None:
        """Whether path has the content a package shipped: the package database's checksum,
        else the sha256 in the RECORD of its Python distribution; None when nothing gives a
        checksum for it."""
        packaged = self.database.as_shipped(path)
        if packaged is not None:
            return packaged
        recorded = self.python_record(path)
        if recorded is None:
            return None
        data = read_bytes(self.root, path)
        if data is None:
            return False
        return recorded == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    def compiled_source(self, path: str) -> bytes | None:
        """For a __pycache__/NAME.TAG.pyc whose NAME.py is as a package shipped it, that source
        (a secret of the compiled file is public only if it is in the source too)."""
        parts = path.rsplit("/", 2)
        if len(parts) != 3 or parts[1] != "__pycache__" or not parts[2].endswith(".pyc"):
            return None
        source = f"{parts[0]}/{parts[2].split('.', 1)[0]}.py"
        if not self.unchanged(source):
            return None
        return read_bytes(self.root, source)

    def python_record(self, path: str) -> str | None:
        """The hash a Python distribution's RECORD gives for path (in a site-packages or
        dist-packages directory), if any."""
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            if parts[i] in ("site-packages", "dist-packages"):
                return self.python_records("/".join(parts[: i + 1])).get("/".join(parts[i + 1 :]))
        return None

    def python_records(self, site: str) -> dict[str, str]:
        """file (relative to site) -> hash, from every *.dist-info/RECORD in site but those of
        distributions installed from a file or URL (an appliance's own application: its
        files are the builder's, and a secret in them is a finding like any other)."""
        if site not in self.records:
            records: dict[str, str] = {}
            for record in sorted(inside(self.root, site, follow=True).glob("*.dist-info/RECORD")):
                if (record.parent / "direct_url.json").exists():
                    continue  # installed from a file or URL (PEP 610): the builder's own code, not a public package
                for line in (read_text(self.root, f"{site}/{record.parent.name}/RECORD") or "").splitlines():
                    fields = line.rsplit(",", 2)
                    if len(fields) == 3 and fields[1]:
                        records[os.path.normpath(fields[0].strip('"'))] = fields[1]
            self.records[site] = records
        return self.records[site]
