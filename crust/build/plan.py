"""Build plans: the steps of each appliance, each with an id that is a hash of its inputs.

The step kinds (crust/steps/, in their order: base -> packages -> tree -> image -> convert)
each plan their steps from what is known of the appliance and the steps planned before them.
Computing a plan has no side effects beyond reading files (and, at most once per TTL, the
mirror's InRelease files): `build.py plan` shows it, `build.py build` runs what is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.code import code_explain, digest_code, tool_versions
from crust.build.equivalence import canonical_id
from crust.define.distribution import Distribution
from crust.define.kickstart import KickstartConfig
from crust.define.project import Project
from crust.define.render import Rendered
from crust.define.roles import Option, check_vars, role_closure
from crust.define.spec import ApplianceSpec
from crust.define.validate import validate_appliance
from crust.disk.assemble import Layout


@dataclass(frozen=True)
class Step:
    kind: str
    name: str  # what it builds: "debian-13", "wsgi", "wsgi.qcow2"
    id: str
    inputs: Mapping[str, str]  # hashed into the id
    explain: Mapping[str, str] = field(default_factory=dict)  # not hashed: names what changed

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.id}"


@dataclass
class Planning:
    """What a step kind plans from: the checked appliance, and the steps planned before it.

    A kind may leave what later kinds and the build need: the tree kind the disk layout (its
    root file system UUID derives from the tree's id) and the build id."""

    project: Project
    spec: ApplianceSpec
    distro: Distribution
    rendered: Rendered
    ks: KickstartConfig
    options: Mapping[str, Option]  # the role variables' declarations
    roles: tuple[str, ...]  # the roles and those they depend on, in order
    state_dir: Path
    refresh: bool  # re-read the mirror state now
    formats: tuple[str, ...]  # formats asked for besides image.formats
    steps: list[Step] = field(default_factory=list)
    layout: Layout | None = None
    build_id: str = ""
    epoch: int = 0  # SOURCE_DATE_EPOCH: the base kind's, from its mirror state

    def one(self, kind: str) -> Step:
        return next(s for s in self.steps if s.kind == kind)

    def start_id(self, kind: str) -> str:
        """The id a step that starts from the appliance's step of this kind puts in its inputs:
        that step's, or that of an earlier step whose output was the same (early cut-off)."""
        return canonical_id(self.state_dir, kind, self.one(kind).id)


@dataclass(frozen=True)
class AppliancePlan:
    spec: ApplianceSpec
    distro: Distribution
    rendered: Rendered
    ks: KickstartConfig
    layout: Layout
    variables: Mapping[str, Any]
    roles: tuple[str, ...]
    steps: tuple[Step, ...]  # in build order
    build_id: str
    epoch: int  # SOURCE_DATE_EPOCH of every step: the newest index date of the mirror state
    formats: tuple[str, ...] = ()  # formats asked for besides image.formats (to plan again)

    def step(self, kind: str) -> Step:
        """The appliance's step of a kind that has one."""
        return next(s for s in self.steps if s.kind == kind)

    def steps_of(self, kind: str) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.kind == kind)


def code_inputs(kind: str, roots: tuple[str, ...] = (), tools: tuple[str, ...] = ()) -> dict[str, str]:
    """What shapes a step's output besides its data: the code it runs (crust/steps/KIND.py and
    every module it imports, crust/build/code.py) and the versions of the host tools whose
    output it keeps (a host upgrade is a reason to rebuild that plan names)."""
    from crust.steps import KINDS

    k = KINDS[kind]
    return {"code": digest_code((f"crust.steps.{kind}", *k.code, *roots)), **tool_versions(tuple(sorted({*k.shaping, *tools})))}


def plan_appliance(project: Project, name: str, state_dir: Path, refresh: bool = False, formats: Sequence[str] = ()) -> AppliancePlan:
    """The appliance's steps; formats adds output formats to the appliance's image.formats."""
    from crust.steps import KINDS

    spec, distro, rendered, ks = validate_appliance(project, name, state_dir / "cache")
    options = check_vars(project.roles, spec.roles, spec.vars, spec.origins, project.readable())
    planning = Planning(project, spec, distro, rendered, ks, options, role_closure(project.roles, spec.roles), state_dir, refresh, tuple(formats))
    for kind in KINDS.values():
        for step in kind.plan(planning):  # the modules behind its code digest, to name what changed
            planning.steps.append(dataclasses.replace(step, explain=MappingProxyType({**step.explain, **code_explain(step.inputs.get("code", ""))})))
    assert planning.layout is not None, "no step kind planned the disk layout"
    variables = {
        **dict(spec.vars),
        "crust_appliance": spec.name,
        "crust_version": spec.version,
        "crust_description": spec.description,
        "crust_distribution": distro.name,
        # Where the roles are on the build host: lets a role hand a sibling role's files
        # (say, a sample application) to a role it depends on.
        "crust_roles_dir": str(project.roles),
    }
    return AppliancePlan(
        spec,
        distro,
        rendered,
        ks,
        planning.layout,
        MappingProxyType(variables),
        planning.roles,
        tuple(planning.steps),
        planning.build_id,
        planning.epoch,
        tuple(formats),
    )
