"""What a step kind is: one module of crust/steps/ defining ``KIND = StepKind(...)``.

A kind declares the tools it runs (and which of them shape its output: their versions are part
of its steps' ids, as is every module its module imports, crust/build/code.py),
how it plans its steps from the appliance (their inputs, hence their ids), how it builds one
into a fresh directory (returning what the store records of it), how much disk a build of it
may take, which of its files are published beside the manifest, and what it adds to the
manifest. The executor, preflight, plan and manifest read these; nothing else names a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crust.build.plan import AppliancePlan, Planning, Step
    from crust.build.store import Entry, Store
    from crust.define.project import Project

GIB = 1024**3


@dataclass(frozen=True)
class Job:
    """One step to build: its plan, its fresh output directory, and what was built before it."""

    plan: AppliancePlan
    step: Step
    tmp: Path  # empty; renamed into the store when run() returns
    store: Store
    project: Project
    entries: Mapping[str, Entry]  # step key -> entry, for the appliance's steps built before this one
    # Shared by the steps of this build of this appliance, removed when it ends (made by whoever
    # needs it): for what one step may hand the next within one build, never an output.
    scratch: Path | None = None

    def entry(self, kind: str) -> Entry:
        """The entry of the appliance's (one) step of this kind."""
        return self.entries[self.plan.step(kind).key]


@dataclass(frozen=True)
class Published:
    """A file of a step's entry that appears in build/NAME/ (by hard link, atomically)."""

    source: str  # file name in the entry
    dest: str  # file name in build/NAME/
    format: str | None = None  # an artifact of this format (listed in the manifest), or None


def nothing_published(plan: AppliancePlan, step: Step, entry: Entry) -> list[Published]:
    return []


def nothing_recorded(plan: AppliancePlan, step: Step, entry: Entry, out_dir: Path) -> dict[str, Any]:
    return {}


def no_more_tools(plan: AppliancePlan) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class StepKind:
    name: str
    order: int  # kinds run in this order; a kind's steps start from the kinds before it
    tools: tuple[str, ...]  # external commands it runs (checked before any work, with their package)
    plan: Callable[[Planning], tuple[Step, ...]]  # its steps for an appliance (and their inputs)
    run: Callable[[Job], dict[str, Any]]  # build one step into job.tmp; what the store records as its outputs
    disk_bytes: Callable[[AppliancePlan, Step], int]  # what building one may take on the store's disk
    publish: Callable[[AppliancePlan, Step, Entry], list[Published]] = nothing_published
    record: Callable[[AppliancePlan, Step, Entry, Path], dict[str, Any]] = nothing_recorded  # manifest fields
    more_tools: Callable[[AppliancePlan], tuple[str, ...]] = no_more_tools  # tools only some appliances need
    multiple: bool = False  # several steps per appliance (named, e.g. one per format)
    shaping: tuple[str, ...] = ()  # tools whose version shapes its output: part of its ids
    code: tuple[str, ...] = ()  # modules it runs that its imports do not reach (crust/build/code.py)


def command_environment(epoch: int) -> dict[str, str]:
    """What every command of a step sees besides Crust's fixed locale and time zone. Here, in a
    module every kind imports, so that it is part of every step's code digest: it shapes outputs.
    Tools that honour SOURCE_DATE_EPOCH write no clock time (py_compile: hash-checked .pyc); no
    Python of the build caches what it imports (such .pyc carry the source's install time)."""
    return {"SOURCE_DATE_EPOCH": str(epoch), "PYTHONDONTWRITEBYTECODE": "1"}


def file_facts(path: Path) -> dict[str, Any]:
    """What the store records of an output file: its sha256, size and allocated bytes."""
    from crust.digest import digest_file

    st = path.stat()
    return {"sha256": digest_file(path), "size": st.st_size, "allocated": st.st_blocks * 512}
