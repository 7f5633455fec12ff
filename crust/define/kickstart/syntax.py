"""Kickstart syntax: pykickstart at a pinned syntax version, warnings are errors."""

from __future__ import annotations

import re
import warnings
from typing import Any

from crust.define.kickstart.model import KickstartProblem

SYNTAX_VERSION = "F43"  # pinned: a newer pykickstart must not change what a kickstart means


def parse(text: str) -> Any:
    """Parse kickstart text at the pinned syntax version; warnings are errors."""
    # Imported here: pykickstart takes a fifth of a second to import, and a no-op build
    # reuses the checked result of an unchanged kickstart (see plan.checked_kickstart).
    from pykickstart.errors import KickstartError, KickstartParseError, KickstartParseWarning
    from pykickstart.parser import KickstartParser
    from pykickstart.version import makeVersion

    for lineno, text_line in enumerate(text.splitlines(), start=1):
        word = text_line.strip().split(maxsplit=1)[0] if text_line.strip() else ""
        if word in ("%include", "%ksappend"):
            raise KickstartProblem(
                lineno, f"{word} cannot be honoured: a kickstart must not read files of the build host", "use Jinja's {% include %}"
            )
    commands: list[tuple[int, str]] = []  # (line, command word) of every command line

    class _LineTrackingParser(KickstartParser):  # type: ignore[misc]
        """Remembers the line being handled, so that warnings can name it, and every command's line."""

        current_line = 0

        def handleCommand(self, lineno: int, args: list[str]) -> Any:
            self.current_line = lineno
            if args:
                commands.append((lineno, args[0]))
            return super().handleCommand(lineno, args)

    handler = makeVersion(SYNTAX_VERSION)
    parser = _LineTrackingParser(handler, errorsAreFatal=True, missingIncludeIsFatal=True)
    caught: list[tuple[str, int]] = []

    def record(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        if issubclass(category, KickstartParseWarning):
            caught.append((str(message).strip(), parser.current_line))

    with warnings.catch_warnings():
        warnings.simplefilter("always", KickstartParseWarning)
        warnings.showwarning = record
        try:
            parser.readKickstartFromString(text)
        except KickstartParseError as exc:
            msg = str(exc.value).strip().split("\n")[-1] if exc.value else "syntax error"
            raise KickstartProblem(exc.lineno or None, msg) from None
        except KickstartError as exc:
            raise KickstartProblem(getattr(exc, "lineno", None) or None, str(exc.value).strip().split("\n")[-1]) from None
        except ValueError as exc:  # shlex: a quote that is not closed
            raise KickstartProblem(_unsplittable_line(text), f"{exc} in a command line", "close the quote") from None
    if caught:
        message, line = caught[0]
        said = re.search(r"on line (\d+)", message)
        section = re.search(r"(%[a-z-]+) section", message)  # a section header's warning: its own line, not the last command's
        if section and not said:
            line = command_line(text, section.group(1)) or line
        raise KickstartProblem(int(said.group(1)) if said else line or None, message, "pykickstart warnings are errors in Crust")
    first: dict[int, int] = {}  # a command given once -> its line
    for lineno, word in commands:
        command = handler.commands.get(word)
        if command is None or command.dataList() is not None:  # list commands (user, part, ...) repeat
            continue
        if id(command) in first:
            raise KickstartProblem(
                lineno,
                f"{word!r} is given again (first on rendered line {first[id(command)]})",
                "keep one line: the later one would replace the earlier",
            )
        first[id(command)] = lineno
    return handler


def _unsplittable_line(text: str) -> int | None:
    """The first line pykickstart's shlex cannot split: a command line or a section marker."""
    import shlex

    inside = False  # a section's body is not split, but for its %end (or a next header)
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if inside and not stripped.startswith("%"):
            continue
        try:
            shlex.split(line, comments=not inside)
        except ValueError:
            return lineno
        if stripped.startswith("%"):
            inside = stripped.split()[0] != "%end"
    return None


def command_line(text: str, command: str) -> int | None:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(command)}(\s|$)", line):
            return lineno
    return None
