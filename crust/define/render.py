"""Kickstart templates: Jinja2 with StrictUndefined, and no kickstart injection.

Every value that reaches a template is checked first (a newline or a leading '%' is rejected,
naming the appliance key) and every string is shell-quoted on output, so a value can never
open a new kickstart command or section.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from jinja2.bccache import Bucket

from crust.define.distribution import Distribution
from crust.define.project import Project
from crust.define.spec import ApplianceSpec
from crust.errors import UserError

_EXTENDS = re.compile(r"""\{%-?\s*(?:extends|include|import|from)\s+["']([^"']+)["']""")


# Every character str.splitlines() breaks on (pykickstart splits the kickstart with it), and NUL.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00"


class BadApple(ValueError):
    pass


def check_value(value: Any, key: str) -> None:
    """Reject strings that could inject kickstart: newlines, NUL, or a leading '%'."""
    if isinstance(value, str):
        if any(c in value for c in LINE_BREAKS):
            raise BadApple(f"{key}: value contains a newline")
        if value.lstrip().startswith("%"):
            raise BadApple(f"{key}: value starts with '%'")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_value(str(k), f"{key} (key)")
            check_value(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_value(v, f"{key}[{i}]")


class Value(str):
    """A string that came from outside the templates: shell-quoted when output."""


def wrap(value: Any) -> Any:
    if isinstance(value, str):
        return Value(value)
    if isinstance(value, Mapping):
        return {k: wrap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wrap(v) for v in value]
    return value


def _finalize(value: Any) -> Any:
    if isinstance(value, Value):
        check_value(str(value), "template value")
        return shlex.quote(value) if value else "''"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@dataclass(frozen=True)
class Rendered:
    text: str
    template: Path
    sources: tuple[Path, ...]  # the template and every template it extends or includes


class PendingBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Reads compiled templates from a directory, but writes them only on commit(): a
    validation that fails leaves no file behind in the store."""

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))
        self.path = directory
        self.pending: list[Bucket] = []

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.pending.append(bucket)

    def commit(self) -> None:
        if self.pending:
            self.path.mkdir(parents=True, exist_ok=True)
        for bucket in self.pending:
            super().dump_bytecode(bucket)
        self.pending.clear()


def template_sources(kickstarts_dir: Path, name: str) -> tuple[Path, ...]:
    """The template and, transitively, the templates it extends, includes or imports."""
    seen: list[Path] = []
    todo = [name]
    while todo:
        path = kickstarts_dir / todo.pop(0)
        if path in seen or not path.is_file():
            continue
        seen.append(path)
        data = path.read_bytes()
        try:
            todo += _EXTENDS.findall(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise UserError(f"not UTF-8 text: {exc.reason}", file=path, line=line, hint="save the template as UTF-8") from None
    return tuple(seen)


def context_for(spec: ApplianceSpec, distro: Distribution) -> dict[str, Any]:
    return {
        "appliance": {"name": spec.name, "version": spec.version, "description": spec.description},
        "distro": {"name": distro.name, "suite": distro.suite, "mirror": distro.mirror, "description": distro.description},
        "image": {
            "root_size_mib": spec.image.root_size_mib,
            "esp_size_mib": spec.image.esp_size_mib,
            "grow": spec.image.grow,
        },
        "vars": dict(spec.vars),
    }


def _template_line(tb: TracebackType | None) -> tuple[str | None, int | None]:
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def render(spec: ApplianceSpec, distro: Distribution, project: Project, bytecode_cache: PendingBytecodeCache | None = None) -> Rendered:
    kickstarts_dir = project.kickstarts
    context = context_for(spec, distro)
    try:
        check_value(context["vars"], "vars")
        check_value(context["appliance"], "appliance")
    except BadApple as exc:
        key = str(exc).split(":")[0]
        toml_key = key.replace("appliance.", "")
        raise UserError(
            f"{exc} (kickstart injection guard)",
            file=spec.origins.file(toml_key),
            line=spec.origins.locate(toml_key)[1],
            hint="values reaching a kickstart must be one line and must not start with '%'",
        ) from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(kickstarts_dir)),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        bytecode_cache=bytecode_cache,
    )
    name = spec.kickstart.name
    sources = template_sources(kickstarts_dir, name)  # first: names a template that is not UTF-8 text
    try:
        out = env.get_template(name).render(wrap(context))
    except jinja2.TemplateSyntaxError as exc:
        raise UserError(
            f"template syntax error: {exc.message}", file=exc.filename or spec.kickstart, line=exc.lineno, hint="fix the Jinja syntax"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise UserError(f"template {exc.name!r} not found in kickstarts/", file=spec.kickstart, hint="check the extends/include name") from None
    except jinja2.UndefinedError as exc:
        file, line = _template_line(exc.__traceback__)
        raise UserError(
            f"undefined template value: {exc.message}",
            file=file or spec.kickstart,
            line=line,
            hint="define it in the appliance's [vars] or fix the name",
        ) from None
    except BadApple as exc:
        file, line = _template_line(exc.__traceback__)
        raise UserError(
            f"{exc} (kickstart injection guard)", file=file or spec.kickstart, line=line, hint="values must be one line and must not start with '%'"
        ) from None
    except jinja2.TemplateError as exc:
        file, line = _template_line(exc.__traceback__)
        raise UserError(f"template error: {exc}", file=file or spec.kickstart, line=line, hint="fix the template at this line") from None
    except RecursionError as exc:
        file, line = _template_line(exc.__traceback__)
        raise UserError(
            "template recursion: a template extends or includes itself",
            file=file or spec.kickstart,
            line=line,
            hint="break the extends/include cycle",
        ) from None
    except Exception as exc:  # a template is input: an expression that fails there is bad input, not a crash
        file, line = _template_line(exc.__traceback__)
        raise UserError(
            f"template error: {type(exc).__name__}: {exc}", file=file or spec.kickstart, line=line, hint="fix the expression at this line"
        ) from None
    if not out.endswith("\n"):
        out += "\n"
    return Rendered(out, spec.kickstart, sources)
