"""packages: the base tree plus the kickstart's %packages (and repo sources), one apt run."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.digest import digest_json, step_id
from crust.distros import backend_for
from crust.runner import run as run_command
from crust.steps.kind import GIB, Job, StepKind
from crust.tree.reproducible import settle_intermediate


def plan(p: Planning) -> tuple[Step, ...]:
    backend = backend_for(p.distro)
    package_set = backend.package_set(p.ks, p.distro)
    inputs = {
        "base": p.start_id("base"),
        "epoch": str(p.epoch),  # its commands see it (SOURCE_DATE_EPOCH)
        "package-set": digest_json(package_set),
        "excluded": digest_json(sorted(p.ks.excluded)),
        "repos": digest_json([dataclasses.asdict(r) for r in p.ks.repos]),
        **code_inputs("packages"),
    }
    explain = {"package-set": " ".join(package_set)}
    return (Step("packages", p.spec.name, step_id("packages", inputs), MappingProxyType(inputs), MappingProxyType(explain)),)


def run(job: Job) -> dict[str, Any]:
    backend = backend_for(job.plan.distro)
    tree = job.tmp / "tree"
    run_command(["cp", "-a", "--reflink=auto", str(job.entry("base").path / "tree"), str(tree)])
    backend.install(tree, job.plan.ks, job.plan.distro)
    settle_intermediate(tree, job.plan.epoch)
    from crust.trust.audit import privileged_files

    # The setuid/setgid files and file capabilities as the packages left them: the image's
    # audit finds any a role or a script adds later.
    return {"packages": backend.database(tree).installed(), "privileged": privileged_files(tree)}


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    return GIB  # the tree with the appliance's packages: 0.3-0.7 GiB measured


KIND = StepKind(
    name="packages",
    order=20,
    tools=("bwrap", "cp"),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
)
