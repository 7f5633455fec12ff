"""Smoke checks: the registry of check types, and running one check with its retries.

Each module of this package defines one check type (``CHECK = CheckType(...)``, see kind.py);
a new type is one module: the appliance file's [[test.checks]] tables, ``list --settings``, the
reports and the smoke test pick it up from here. Every attempt returns (passed, what was seen);
a check is retried until it passes or its own timeout expires, and a failed check reports what
was expected and the last thing seen. Host-side checks (tcp, http) go through the forwarded
loopback ports, guest-side checks through the qemu guest agent.
"""

from __future__ import annotations

import importlib.util
import time
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from crust.checks.kind import CheckContext, CheckResult, CheckSpec, CheckType, GuestNotReady
from crust.define.settings import REQUIRED, Setting, apply_settings, parse_seconds, parse_str
from crust.define.tomlfile import find_line
from crust.errors import UserError
from crust.registry import discover

RETRY_INTERVAL = 0.5


CHECK_TYPES: Mapping[str, CheckType] = discover(__name__, __path__, "CHECK", CheckType, lambda v: (v.order, v.name), lambda v: v.name)
COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting("type", parse_str, REQUIRED, "One of " + ", ".join(CHECK_TYPES) + "."),
    Setting("name", parse_str, "", "Shown in reports; defaults to a description of the check."),
    Setting("timeout", parse_seconds, 60.0, "Seconds this check may retry before it fails."),
)


def parse_check(raw: Any, index: int, path: Path, text: str) -> CheckSpec:
    """One [[test.checks]] table of an appliance file, checked against its type's settings."""
    where = f"test.checks[{index}]."
    if not isinstance(raw, dict):
        raise UserError(f"{where[:-1]} must be a table", file=path, line=find_line(text, "test.checks"), hint="write [[test.checks]] tables")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in CHECK_TYPES:
        raise UserError(
            f"{where}type: {kind!r} is not a check type",
            file=path,
            line=find_line(text, where + "type") or find_line(text, where[:-1]),
            hint="use one of " + ", ".join(CHECK_TYPES),
        )
    check_type = CHECK_TYPES[kind]
    values = apply_settings(COMMON_SETTINGS + check_type.settings, raw, where, path, text)
    options = {k: v for k, v in values.items() if k not in ("type", "name", "timeout")}
    name = values["name"] or check_type.describe(options)
    return CheckSpec(kind, name, values["timeout"], MappingProxyType(options))


def expectation(check: CheckSpec) -> str:
    return CHECK_TYPES[check.type].expectation(check.options)


def run_check(check: CheckSpec, ctx: CheckContext, overall_deadline: float) -> CheckResult:
    begun = time.monotonic()
    deadline = min(begun + check.timeout, overall_deadline)
    ctx.deadline = deadline
    attempt = CHECK_TYPES[check.type].attempt
    attempts = 0
    while True:
        attempts += 1
        try:
            passed, seen = attempt(check, ctx)
        except GuestNotReady as exc:
            passed, seen = False, f"guest agent not answering: {exc}"
        except (OSError, urllib.error.URLError) as exc:
            passed, seen = False, f"{type(exc).__name__}: {exc}"
        except AssertionError as exc:
            passed, seen = False, f"assertion failed: {exc}"
        now = time.monotonic()
        if not passed:
            trouble = ctx.stopped()
            if trouble is not None:  # no point retrying: the guest is gone or frozen
                seen = f"{trouble} (last attempt: {seen})"
                deadline = now
        if passed or now >= deadline:
            return CheckResult(check.name, check.type, passed, expectation(check), seen, round(now - begun, 2), round(now - ctx.started, 2), attempts)
        time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - now)))


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"crust_checks_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_digest_input(checks: tuple[CheckSpec, ...]) -> list[dict[str, Any]]:
    return [{"type": c.type, "name": c.name, "timeout": c.timeout, "options": dict(c.options)} for c in checks]


def reference() -> list[str]:
    """The [[test.checks]] part of `list --settings`."""
    from crust.define.settings import reference_lines

    lines = ["[[test.checks]], every check:", *reference_lines(COMMON_SETTINGS)]
    for check_type in CHECK_TYPES.values():
        lines.append(f"[[test.checks]], type = {check_type.name!r}:")
        lines += reference_lines(check_type.settings)
    return lines


__all__ = ["CHECK_TYPES", "CheckContext", "CheckResult", "CheckSpec", "CheckType", "expectation", "load_module", "parse_check", "run_check"]
