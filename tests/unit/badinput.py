"""Harness of the bad-input suite (tests/unit/test_bad_input_*.py).

Every case runs the real command line, ``crust.cli.main(argv)``, in-process, as ``./build.py``
would, against a copy of the project (appliances, kickstarts, roles, distributions: the project
root is redirected to it) with ``--store`` and ``--output`` in a temporary directory. Then it
checks what a user sees and what is left behind:

- exit status 2;
- stderr is exactly one line, ``error: [FILE[:LINE]: ]PROBLEM (fix: HINT)``, with no traceback, and
  stdout is empty;
- the file (and the line, where the input has one) the case expects;
- the build directory is unchanged, and the store holds no file: some verbs open the store
  before they validate, which makes its empty skeleton (steps/, tmp/, locks/, logs/, builds/,
  state/), but no step output, temporary leftover, cache entry, lock file or record may appear.

Nothing here may reach the network, a build step, libvirt or AWS. Those entry points are replaced
by tripwires that fail the test loudly: a malformed input that got past validation would
otherwise start real work (mmdebstrap, a boot, an upload).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

import crust.cli
import crust.cli.common
from tests.conftest import ROOT

PROJECT_PARTS = ("appliances", "kickstarts", "roles", "distributions")
STORE_SKELETON = ("steps", "tmp", "locks", "logs", "builds", "state")

# Where real work would start. A bad input must be refused before any of these is called.
TRIPWIRES = (
    ("crust.distros.debian.mirror", "fetch_state"),  # the network (the mirror's InRelease files)
    ("crust.build.preflight", "preflight"),  # a build: tools checked, then steps run
    ("crust.build.executor", "build_all"),
    ("crust.boot.smoke", "smoke_test"),  # a boot under libvirt
    ("crust.cloud.aws.client", "Aws"),  # AWS
)

# A valid appliance of the suite: every case breaks one thing of it (or of its template).
GOOD = """\
name = "demo"
version = "1.0"
description = "A demo"
kickstart = "demo.ks.j2"
roles = ["common", "wsgi"]

[vars]
wsgi_workers = 3

[image]
formats = ["qcow2"]
root_size = "3GiB"

[test]
ports = [80]

[[test.checks]]
type = "http"
port = 80
path = "/healthz"
body = "ok"
"""

TEMPLATE = """\
{% extends "base.ks.j2" %}
{% block packages %}
{{ super() }}
nginx
{% endblock %}
"""

APPLIANCE = "appliances/demo.toml"
KICKSTART = "kickstarts/demo.ks.j2"


def copy_project(dest: Path) -> Path:
    """A copy of the project's definitions plus the suite's valid demo appliance and template.

    The shipped roles are linked, not copied (most of the files, and no case writes into them):
    roles/ itself is a directory of the copy, so that a case can add a role of its own.
    """
    for name in PROJECT_PARTS:
        if name == "roles":
            (dest / name).mkdir(parents=True)
            for role in (ROOT / name).iterdir():
                (dest / name / role.name).symlink_to(role, target_is_directory=True)
        else:
            shutil.copytree(ROOT / name, dest / name)
    (dest / APPLIANCE).write_text(GOOD, encoding="utf-8")
    (dest / KICKSTART).write_text(TEMPLATE, encoding="utf-8")
    return dest


def write_into(project: Path, rel: str, content: str | bytes) -> None:
    """Write a file of a case into the copy, never through a link into the real project."""
    path = project / rel
    assert not any(p.is_symlink() for p in [path, *path.parents] if project in p.parents or p == project), f"{rel} is in a linked role"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


class Tripped(BaseException):
    """A tripwire fired. Not an Exception: main() reports any Exception as an internal error in
    one line, and this must reach the test."""


def _tripwire(what: str) -> Callable[..., NoReturn]:
    def fired(*args: Any, **kwargs: Any) -> NoReturn:
        raise Tripped(f"bad input got past validation: {what} was called (real work would start)")

    return fired


@contextlib.contextmanager
def project_root(project: Path) -> Iterator[None]:
    """crust.cli sees PROJECT as the project root; the tripwires are armed; all undone after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crust.cli, "PROJECT_ROOT", project)
        mp.setattr(crust.cli.common, "PROJECT_ROOT", project)
        for name in ("CRUST_APPLIANCES", "CRUST_ROLES"):  # --appliances and --roles are the cases' to give
            mp.delenv(name, raising=False)
        for name in ("CRUST_STORE", "CRUST_OUTPUT"):
            mp.delenv(name, raising=False)
        for module, attribute in TRIPWIRES:
            mp.setattr(importlib.import_module(module), attribute, _tripwire(f"{module}.{attribute}"))
        yield


@dataclass(frozen=True)
class Outcome:
    status: int
    stdout: str
    stderr: str


def run_cli(argv: Sequence[str]) -> Outcome:
    """crust.cli.main(argv) with stdout and stderr captured (inside project_root())."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = crust.cli.main(list(argv))
        except SystemExit as exc:  # main() must return, not exit: recorded, then failed below
            status = 1000 + (exc.code if isinstance(exc.code, int) else 1)
    return Outcome(status, out.getvalue(), err.getvalue())


Snapshot = dict[Path, tuple[str, int, int]]


def snapshot(*roots: Path) -> Snapshot:
    """Every path under the roots: kind, size and mtime of files (directories by kind only)."""
    found: Snapshot = {}
    for root in roots:
        for path in [root, *(sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [])]:
            if path.is_symlink() or path.is_file():
                st = path.lstat()
                found[path] = ("file", st.st_size, st.st_mtime_ns)
            elif path.is_dir():
                found[path] = ("dir", 0, 0)
    return found


def left_behind(before: Snapshot, after: Snapshot, store: Path) -> list[str]:
    """What changed, less the empty store skeleton that opening the store makes."""
    skeleton = {store, *(store / sub for sub in STORE_SKELETON)}
    changes = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        if path not in before and path in skeleton and after[path][0] == "dir":
            continue  # the empty skeleton: any file inside it is a change of its own
        changes.append(f"{'new' if path not in before else 'removed' if path not in after else 'changed'}: {path}")
    return changes


@dataclass(frozen=True)
class Expect:
    """What the one error line must say: words in it, and the location it must start with."""

    words: tuple[str, ...] = ()
    file: str | None = None  # the file named (relative to the project), or None: a command-line error
    line: int | None = None  # the line named; None: the input has none (the file is named alone)
    any_line: bool = False  # some line of the file is named (generated inputs: which one varies)
    within: str | None = None  # some file of this directory is named, e.g. "kickstarts/"


@dataclass
class Workdir:
    """--store and --output of one run, in a fresh directory."""

    root: Path
    store: Path = field(init=False)
    output: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = self.root / "store"
        self.output = self.root / "build"


def check_bad(argv: Sequence[str], work: Workdir, expect: Expect, watch: Sequence[Path] = ()) -> str:
    """Run ./build.py --store S --output O ARGV; assert bad input is refused as the suite requires."""
    roots = (work.store, work.output, *watch)
    before = snapshot(*roots)
    outcome = run_cli(["--store", str(work.store), "--output", str(work.output), *argv])
    shown = f"argv={list(argv)!r}\nstatus={outcome.status}\nstdout={outcome.stdout!r}\nstderr={outcome.stderr!r}"
    assert outcome.status == 2, shown
    assert "Traceback" not in outcome.stderr, shown
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and outcome.stderr.endswith("\n") and outcome.stderr.count("\n") == 1, shown
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 10, shown
    assert "(fix: " in line and line.endswith(")"), f"no hint: {shown}"
    assert outcome.stdout == "", shown
    for words in expect.words:
        assert words in line, f"{words!r} not in the error: {shown}"
    if expect.file is not None:
        if expect.line is not None:
            assert line.startswith(f"error: {expect.file}:{expect.line}: "), shown
        elif expect.any_line:
            assert line.startswith(f"error: {expect.file}:"), shown
        else:
            assert line.startswith(f"error: {expect.file}: "), shown
    if expect.within is not None:
        assert line.startswith(f"error: {expect.within}") and re.match(r"error: [^ :]+(:\d+)?: ", line), shown
    changes = left_behind(before, snapshot(*roots), work.store)
    assert not changes, f"bad input left files behind: {changes}\n{shown}"
    return line


def line_of(text: str, marker: str) -> int:
    """The number of the first line of text that contains marker."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"marker {marker!r} is not in the text")


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"{old!r} is not in the text"
    return text.replace(old, new, 1)


@dataclass(frozen=True)
class FileCase:
    """A malformed project: files written over the copy, the verbs to run, the error expected.

    where/at: the error must name the file `where` and the line of it that contains `at` (None:
    the file alone, as when a key is missing). The file's text is its entry in `files` or, when
    absent there, the copy's.
    """

    id: str
    files: Mapping[str, str | bytes]
    words: str
    where: str | None
    at: str | None
    verbs: tuple[str, ...]


def run_file_case(case: FileCase, project: Path, tmp: Path) -> None:
    for rel, content in case.files.items():  # @PROJECT@ in a text file is the copy's own path
        write_into(project, rel, content.replace("@PROJECT@", str(project)) if isinstance(content, str) else content)
    line = None
    if case.where is not None and case.at is not None:
        written = case.files.get(case.where)
        text = written.decode("utf-8", "replace") if isinstance(written, bytes) else written
        line = line_of(text if text is not None else (project / case.where).read_text(encoding="utf-8"), case.at)
    expect = Expect(words=(case.words,), file=case.where, line=line)
    with project_root(project):
        for i, verb in enumerate(case.verbs):
            check_bad([*verb.split(), "demo"], Workdir(tmp / f"run{i}-{verb.replace(' ', '-')}"), expect)
