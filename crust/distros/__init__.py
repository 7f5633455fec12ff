"""Distribution backends: how a distribution's trees are made and read, by package manager.

Distributions are data (distributions/*.toml, crust/define/distribution.py); each names the
backend of its package manager (``backend = "apt"``, the default). A backend bootstraps the base
tree, installs the package set into a copy of it, reads the tree's package database (for the
roles, the SBOM and the audit) and removes what the package manager leaves at sealing. A new
package manager (dnf, say) is one package beside debian/ and an entry in BACKENDS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from crust.define.distribution import Distribution
from crust.define.kickstart import KickstartConfig


class Package(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def maintainer(self) -> str: ...


class PackageDatabase(Protocol):
    """What a tree's package manager says it installed."""

    @property
    def packages(self) -> Sequence[Package]: ...
    @property
    def files(self) -> frozenset[str]: ...  # every path a package shipped
    @property
    def statoverrides(self) -> dict[str, int]: ...  # path -> the mode the admin set for it

    def installed(self) -> dict[str, str]: ...  # package -> version
    def as_shipped(self, path: str) -> bool | None: ...  # content as packaged? None: no checksum


@dataclass(frozen=True)
class Backend:
    name: str
    purl_type: str  # the package URL type of its packages in an SBOM ("deb")
    bootstrap_tools: tuple[str, ...]
    install_tools: tuple[str, ...]
    mirror_state: Callable[[Distribution, Path, bool], dict[str, str]]  # suite -> digest of its index
    bootstrap: Callable[[Distribution, Path, Path], None]  # (distro, workdir, target tree)
    install: Callable[[Path, KickstartConfig, Distribution], None]  # into a copy of the base tree
    package_set: Callable[[KickstartConfig, Distribution], list[str]]
    database: Callable[[Path], PackageDatabase]
    seal: Callable[[Path, KickstartConfig], None]


def backends() -> Mapping[str, Backend]:
    from crust.distros.debian import BACKEND as APT

    return {APT.name: APT}


def backend_for(distro: Distribution) -> Backend:
    return backends()[distro.backend]


def database_of(root: Path) -> PackageDatabase:
    """The package database of a tree whose distribution is not known (an image to audit)."""
    for backend in backends().values():
        database = backend.database(root)
        if database.packages:
            return database
    return backends()["apt"].database(root)
