"""Name the template line a problem of the rendered kickstart comes from (the file users edit)."""

from __future__ import annotations

import re
from pathlib import Path

from crust.define.kickstart.model import KickstartProblem
from crust.errors import UserError


def _renders(template_line: str, text: str) -> bool:
    """Whether a template line with {{ ... }} or {% ... %} in it can render as text."""
    parts = re.split(r"\{\{.*?\}\}|\{%.*?%\}", template_line.strip())
    if len(parts) < 2 or not "".join(parts).strip():
        return False
    return re.fullmatch(".*".join(re.escape(p) for p in parts), text) is not None


def problem_to_error(problem: KickstartProblem, template: Path, rendered: str, sources: list[Path]) -> UserError:
    """Name the template line when the rendered line can be found in it, else the rendered line."""
    where_file: Path = template
    where_line: int | None = None
    detail = ""
    if problem.line:
        lines = rendered.splitlines()
        text = lines[problem.line - 1].strip() if problem.line <= len(lines) else ""
        for src in sources:
            for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), start=1):
                if text and line.strip() == text:
                    where_file, where_line = src, n
                    break
            if where_line:
                break
        if text and not where_line:  # a line with {{ values }}: the one template line it can come from
            found = [
                (src, n) for src in sources for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), start=1) if _renders(line, text)
            ]
            if len(found) == 1:
                where_file, where_line = found[0]
        detail = f"rendered kickstart line {problem.line}: "
    return UserError(
        detail + problem.message,
        file=where_file,
        line=where_line,
        hint=problem.hint or "fix the kickstart line (./build.py render NAME shows the rendered kickstart)",
    )
