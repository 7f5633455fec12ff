"""The code that shapes a step's output, derived from what the step runs: never a list kept by hand.

A step kind's module (crust/steps/KIND.py) is the root; every Crust module it imports, at the
top or inside a function, and every module those import, is part of its code, with the package
``__init__`` modules Python runs on the way. A sibling file a module names in a string (a helper
script it runs, say ``secretfs.py``) is followed too. Imports under ``if TYPE_CHECKING:`` are
not: they never run. Registries that import their members by name (crust/registry.py) are not
followed into every member; a kind names the members it runs as more roots (the convert step
its format's module).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import crust
from crust.digest import digest_file, digest_json

PACKAGE_DIR = Path(crust.__file__).parent
TOP = "crust"


def module_file(name: str) -> Path | None:
    """crust.a.b -> crust/a/b.py, or crust/a/b/__init__.py for a package; None if neither."""
    if name != TOP and not name.startswith(TOP + "."):
        return None
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py") if name != TOP else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def parents_of(name: str) -> Iterator[str]:
    """The packages Python imports before a module: crust, crust.a for crust.a.b."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (their else branch runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_by(name: str) -> set[str]:
    """The Crust modules (and package modules) the module imports or runs by file name."""
    path = module_file(name)
    assert path is not None, name
    stat = path.stat()
    return set(_imported_by(name, path, stat.st_mtime_ns, stat.st_size))


@functools.cache
def _imported_by(name: str, path: Path, _mtime_ns: int, _size: int) -> frozenset[str]:
    """imported_by, parsed once per version of the file (a plan parses each module once, not
    once for every step kind that runs it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".py") and "/" not in node.value:
            sibling = path.with_name(node.value)
            if sibling.is_file() and sibling != path:
                found.add(package if sibling.stem == "__init__" else f"{package}.{sibling.stem}")
    return frozenset(m for m in found if module_file(m) is not None)


@functools.cache
def modules_run(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The closure of the roots over imports, with the packages on the way, sorted."""
    seen: set[str] = set()
    todo = [*roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if module_file(name) is None:
            raise ValueError(f"{name} is not a module of Crust")
        seen.add(name)
        todo.extend(m for m in (*parents_of(name), *imported_by(name)) if m not in seen and module_file(m))
    return tuple(sorted(seen))


def code_files(roots: tuple[str, ...]) -> dict[str, Path]:
    """Relative path -> file, for the modules the roots run."""
    files = {}
    for name in modules_run(roots):
        path = module_file(name)
        assert path is not None
        files[str(path.relative_to(PACKAGE_DIR))] = path
    return files


_modules_of: dict[str, dict[str, str]] = {}  # a code digest -> the digest of each of its modules


@functools.cache
def digest_code(roots: tuple[str, ...]) -> str:
    """The digest of every module the roots run: names and contents."""
    modules = {rel: digest_file(p) for rel, p in sorted(code_files(roots).items())}
    digest = digest_json({"version": crust.__version__, **modules})
    _modules_of[digest] = modules
    return digest


def code_explain(digest: str) -> dict[str, str]:
    """For a digest digest_code returned: ``code:MODULE`` -> its digest, so that `plan` can
    name the modules that changed since the last build."""
    return {f"code:{rel}": value for rel, value in _modules_of.get(digest, {}).items()}


@functools.cache
def tool_versions(tools: tuple[str, ...]) -> dict[str, str]:
    """The installed version of the package of each tool (one dpkg-query for all; ansible-playbook:
    the ansible-core Python package), keyed ``tool:PACKAGE``. A package dpkg does not know is
    "unknown": the id stays stable on such a host, it just cannot see that tool change."""
    from importlib import metadata

    from crust.runner import TOOL_PACKAGES, run

    versions: dict[str, str] = {}
    debs = sorted({TOOL_PACKAGES.get(t, t) for t in tools if t != "ansible-playbook"})
    if debs:
        out = run(["dpkg-query", "--show", "--showformat=${Package} ${Version}\\n", *debs], check=False, capture=True).stdout
        known = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        versions.update({f"tool:{pkg}": known.get(pkg) or "unknown" for pkg in debs})
    if "ansible-playbook" in tools:
        try:
            versions["tool:ansible-core"] = metadata.version("ansible-core")
        except metadata.PackageNotFoundError:
            versions["tool:ansible-core"] = "unknown"
    return versions
