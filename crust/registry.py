"""Registries that fill themselves: every module of a package that defines a given name.

Step kinds (crust/steps/), check types (crust/checks/) and formats (crust/formats/) are each
one module defining KIND, CHECK or FORMAT; adding one is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")


def discover(package: str, path: Iterable[str], attribute: str, kind: type[T], order: Callable[[T], Any], key: Callable[[T], str]) -> Mapping[str, T]:
    """attribute of each module of package (but its "kind" module), in order, by key."""
    found: list[T] = []
    for info in pkgutil.iter_modules(list(path)):
        if info.name == "kind":
            continue
        value = getattr(importlib.import_module(f"{package}.{info.name}"), attribute, None)
        if isinstance(value, kind):
            found.append(value)
    return MappingProxyType({key(v): v for v in sorted(found, key=order)})
