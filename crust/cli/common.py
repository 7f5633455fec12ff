"""What every verb of the command line shares: the parser class, the project, names, options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from crust.define.project import Project
from crust.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}", hint=f"see {self.prog} --help")


def project_from(args: argparse.Namespace) -> Project:
    """The checkout's definitions, with --appliances / --roles (or $CRUST_APPLIANCES / $CRUST_ROLES)."""
    appliances = args.appliances or (Path(os.environ["CRUST_APPLIANCES"]) if os.environ.get("CRUST_APPLIANCES") else None)
    roles = args.roles or (Path(os.environ["CRUST_ROLES"]) if os.environ.get("CRUST_ROLES") else None)
    if args.appliances and not args.appliances.is_dir():
        raise UserError(f"--appliances {args.appliances}: no such directory", hint="give the directory that holds the NAME.toml files")
    if args.roles and not args.roles.is_dir():
        raise UserError(f"--roles {args.roles}: no such directory", hint="give the directory that holds the roles (ROLE/tasks/main.yml)")
    for folder in args.allow_path:
        if not folder.is_dir():
            raise UserError(f"--allow-path {folder}: no such directory", hint="give a directory whose files appliances may name")
    allowed = tuple(folder.resolve() for folder in args.allow_path)
    return Project.at(PROJECT_ROOT, appliances.resolve() if appliances else None, roles.resolve() if roles else None, allowed)


def add_names(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="appliance names (files in appliances/)")
    p.add_argument("--all", action="store_true", help="every appliance in appliances/")


def names_from(args: argparse.Namespace, project: Project) -> list[str]:
    if args.all:
        if args.names:
            raise UserError("give appliance names or --all, not both", hint="drop the names or --all")
        return project.appliance_names()
    if not args.names:
        raise UserError("no appliance given", hint="name one (./build.py list shows them) or use --all")
    names = list(dict.fromkeys(args.names))
    for name in names:  # every name is known before any work starts
        project.appliance_path(name)
    return names


def check_directory(path: Path, option: str) -> None:
    """A directory option names a directory, or a place where one can be made."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is not a directory", hint=f"give {option} a directory")
