"""Errors before any work: root, the tools the missing steps run (with their packages), disk."""

from __future__ import annotations

import os
import shutil

from crust.build.plan import AppliancePlan, Step
from crust.build.store import Store
from crust.errors import UserError
from crust.runner import check_tools

GIB = 1024**3


def missing_steps(plans: list[AppliancePlan], store: Store) -> list[Step]:
    """The steps of these plans that are not in the store, each once (shared ones too)."""
    seen: dict[str, Step] = {}
    for plan in plans:
        for step in plan.steps:
            if step.key not in seen and store.get(step.kind, step.id) is None:
                seen[step.key] = step
    return list(seen.values())


def preflight(plans: list[AppliancePlan], store: Store, needed: list[Step]) -> None:
    """Errors before work: root, tools, disk space."""
    from crust.steps import KINDS

    if not needed:
        return
    if os.geteuid() != 0:
        raise UserError("building images needs root (mmdebstrap, chroot, file ownership in the tree)", hint="run with sudo")
    tools = {t for s in needed for t in KINDS[s.kind].tools}
    for plan in plans:
        tools.update(t for s in plan.steps if s in needed for t in KINDS[s.kind].more_tools(plan))
    check_tools(sorted(tools))
    free = shutil.disk_usage(store.root).free
    need = 0
    for step in needed:
        owner = next((p for p in plans if step in p.steps), None)
        need += KINDS[step.kind].disk_bytes(owner, step) if owner is not None else 2 * GIB
    if free < need:
        raise UserError(
            f"not enough disk space in {store.root}: {free / GIB:.1f} GiB free, this build needs about {need / GIB:.1f} GiB",
            hint="free some space (./build.py clean) or use --store on a bigger disk",
        )
