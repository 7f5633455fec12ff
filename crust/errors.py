"""Error types, one hierarchy. Each exit status means one thing:

    2  bad input or an unmet precondition the user fixes (UserError)
    1  a failure: a command, a step, a full disk, a cloud call that failed after its retries
       (CloudError), a broken invariant (BuildError), an interrupted cloud resource
  130  interrupted (Ctrl-C, SIGTERM)

Every error is reported as one line; --debug adds the traceback. An exception that is none of
these is a bug: main() reports it in one line too (exit 1), never as a bare traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class CrustError(Exception):
    """Base of every error Crust reports without a traceback."""

    exit_status = 1


class Problem(CrustError):
    """One line naming where (file, line), what, and the fix."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.line = line
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        text = f"{where}{self.problem}"
        if self.hint:
            text += f" (fix: {self.hint})"
        return " ".join(text.splitlines())  # every line break, not only \n: stderr gets exactly one line

    def prefixed(self, prefix: str) -> Problem:
        """The same problem (same class) with its text prefixed: 'upload wsgi: ...'."""
        return type(self)(f"{prefix}: {self.problem}", file=self.file, line=self.line, hint=self.hint)


class UserError(Problem):
    """Bad input or an unmet precondition: the user can fix it."""

    exit_status = 2


class CloudError(Problem):
    """A cloud call failed (after botocore's bounded retries: throttling, the network, a
    timeout), or a cloud resource failed or did not get ready in time."""

    exit_status = 1


class BuildError(CrustError):
    """An invariant of the build does not hold (a tree that should be sealed is not)."""


class CommandError(CrustError):
    """An external command failed during a build step."""

    def __init__(self, argv: Sequence[str], status: int, tail: str, log: Path | None) -> None:
        self.argv = list(argv)
        self.status = status
        self.tail = tail
        self.log = log
        where = f"; full log: {log}" if log else ""
        last = telling_line(tail)
        super().__init__(f"{command_name(self.argv)} exited with status {status}: {last}{where}")


class StepFailed(CrustError):
    """A build step failed; carries the step and its log."""


class DiskFull(CrustError):
    """A build ran out of disk space: where, how much is left, and what to do (exit status 1)."""

    def __init__(self, what: str, folder: Path, free_bytes: int) -> None:
        self.folder = folder
        self.free_bytes = free_bytes
        super().__init__(
            f"{what}: no space left on device in {folder} ({free_bytes // (1024 * 1024)} MiB free; "
            "fix: free space there (./build.py clean removes unused steps), or set CRUST_STORE (--store) "
            "and CRUST_OUTPUT (--output) to a bigger disk)"
        )


NO_SPACE = "no space left on device"


def command_name(argv: Sequence[str]) -> str:
    """The program that matters in argv, looking through wrappers: unshare, bwrap (and
    secretfs.py) up to their last "--", and chroot TREE."""
    rest = list(argv)
    if rest and rest[0].rsplit("/", 1)[-1] in ("unshare", "bwrap") and "--" in rest:
        rest = rest[len(rest) - rest[::-1].index("--") :]
    if len(rest) > 2 and rest[0].rsplit("/", 1)[-1] == "chroot":
        rest = rest[2:]
    return rest[0].rsplit("/", 1)[-1] if rest else "?"


def telling_line(tail: str) -> str:
    """The line of a command's output that best says what went wrong."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return "no output"
    for line in reversed(lines):
        low = line.lower()
        if low.startswith(("e: ", "error", "[error]", "fatal", "msg:")) or " error: " in low:
            return line
    return lines[-1]
