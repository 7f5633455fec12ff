"""The shape of crust/: small modules, no import cycle, registries that hold every module."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "crust"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_no_module_is_long() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (over {MAX_LINES} lines)"


def module_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """crust modules imported when this one is imported (module level; not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crust"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("crust"))
    return {m for m in found if m in known and m != name}


def test_no_import_cycle() -> None:
    mods = modules()
    edges = {name: module_imports(name, path, set(mods)) for name, path in mods.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize(("package", "registry"), [("steps", "KINDS"), ("checks", "CHECK_TYPES"), ("formats", "REGISTRY")])
def test_every_module_of_a_registry_is_in_it(package: str, registry: str) -> None:
    """A step kind, check type or format is one module: each module but kind.py is registered."""
    import importlib

    module = importlib.import_module(f"crust.{package}")
    names = [m.name for m in pkgutil.iter_modules([str(PACKAGE / package)]) if m.name != "kind"]
    assert len(getattr(module, registry)) == len(names) > 0


def test_step_kinds_extra_code_exists() -> None:
    from crust.build.code import module_file
    from crust.steps import KINDS

    assert [c for kind in KINDS.values() for c in kind.code if module_file(c) is None] == []
