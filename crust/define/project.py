"""Where a project's definitions are: appliance files, kickstarts, roles, distributions.

Passed explicitly to everything that reads them (never through os.environ): the command line
makes one from the checkout and its --appliances / --roles options (or $CRUST_APPLIANCES /
$CRUST_ROLES), tests make their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crust.errors import UserError


@dataclass(frozen=True)
class Project:
    root: Path  # the checkout: kickstarts/ and distributions/ are here
    appliances: Path  # NAME.toml files (and targets.toml beside this directory)
    roles: Path  # Ansible roles: ROLE/tasks/main.yml
    allowed: tuple[Path, ...] = ()  # more directories whose files host-path variables may name (--allow-path)

    @classmethod
    def at(cls, root: Path, appliances: Path | None = None, roles: Path | None = None, allowed: tuple[Path, ...] = ()) -> Project:
        return cls(root, appliances or root / "appliances", roles or root / "roles", allowed)

    def readable(self) -> tuple[Path, ...]:
        """Where host-path variables may point: the project, its appliances, --allow-path
        directories (and, checked per appliance, the appliance file's own directory)."""
        return (self.root, self.appliances, *self.allowed)

    @property
    def kickstarts(self) -> Path:
        return self.root / "kickstarts"

    @property
    def distributions(self) -> Path:
        return self.root / "distributions"

    @property
    def targets_file(self) -> Path:
        """The shared cloud targets file: targets.toml beside the appliances directory."""
        return self.appliances.parent / "targets.toml"

    def roles_shown(self) -> str:
        """How messages name the roles directory: roles/, or its path when it is elsewhere."""
        return "roles/" if self.roles == self.root / "roles" else f"{self.roles}/"

    def appliance_names(self) -> list[str]:
        return sorted(p.stem for p in self.appliances.glob("*.toml"))

    def appliance_path(self, name: str) -> Path:
        path = self.appliances / f"{name}.toml"
        if "/" in name or name.startswith(".") or not path.is_file():  # a name, never a path to a file elsewhere
            known = ", ".join(self.appliance_names()) or "none"
            raise UserError(f"no appliance named {name!r}", hint=f"use one of: {known} (files in {self.appliances})")
        return path
