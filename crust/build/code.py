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
import json
import os
from collections.abc import Iterator
from pathlib import Path

import crust
from crust.digest import digest_file, digest_json, digest_text

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
    imports, strings = scanned(name, package, path.read_text(encoding="utf-8"), str(path))
    found = set(imports)
    for value in strings:
        sibling = path.with_name(value)
        if sibling.is_file() and sibling != path:
            found.add(package if sibling.stem == "__init__" else f"{package}.{sibling.stem}")
    return frozenset(m for m in found if module_file(m) is not None)


# What scanning a module's source found, kept between runs: parsing Crust's modules was 0.15 s of
# every command that plans (a no-op build of all appliances took 0.5 s). Keyed by the module's
# name and its source's digest, so an edited module is scanned again; beside Python's own byte
# code, and only a speed-up: an unreadable or unwritable cache changes nothing else.
SCAN_CACHE = PACKAGE_DIR / "__pycache__" / "crust-code-scan.json"


class _Scans:
    """The cache, loaded on first use; added: whether this run scanned a module it lacked."""

    entries: dict[str, list[list[str]]] | None = None
    added = False


def scanned(name: str, package: str, source: str, filename: str) -> tuple[list[str], list[str]]:
    """The module names the source imports (``from a import b``: a and a.b, whether or not a.b
    is a module) and the strings in it that name a .py file in its folder."""
    if _Scans.entries is None:
        try:
            loaded = json.loads(SCAN_CACHE.read_text(encoding="utf-8"))
            _Scans.entries = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _Scans.entries = {}
    key = digest_text(f"{name}\0{source}")
    entry = _Scans.entries.get(key)
    if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, list) for part in entry):
        return entry[0], entry[1]
    imports: list[str] = []
    strings: list[str] = []
    for node in runtime_nodes(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            imports.append(base)
            imports.extend(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".py") and "/" not in node.value:
            strings.append(node.value)
    _Scans.entries[key] = [imports, strings]
    _Scans.added = True
    return imports, strings


def save_scans() -> None:
    """Write the scans this run added (atomically; silently not, where the package is read-only)."""
    if not _Scans.added or _Scans.entries is None:
        return
    partial = SCAN_CACHE.with_name(f"{SCAN_CACHE.name}.{os.getpid()}")
    try:
        SCAN_CACHE.parent.mkdir(exist_ok=True)
        partial.write_text(json.dumps(_Scans.entries, sort_keys=True), encoding="utf-8")
        os.replace(partial, SCAN_CACHE)
        _Scans.added = False
    except OSError:
        partial.unlink(missing_ok=True)


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
    save_scans()
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
