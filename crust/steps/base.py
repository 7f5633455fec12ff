"""base: the distribution's tree (mmdebstrap for Debian), shared by every appliance on it.

Its id covers the distribution's sources, base packages and initramfs modules, the keyring,
the backend's code and the mirror state (the digest of each suite's index), so a new mirror
state rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.digest import digest_file, digest_json, digest_text, step_id
from crust.distros import backend_for
from crust.steps.kind import GIB, Job, StepKind
from crust.tree.reproducible import clamp_times, settle_intermediate


def plan(p: Planning) -> tuple[Step, ...]:
    distro = p.distro
    backend = backend_for(distro)
    mirror = backend.mirror_state(distro, p.state_dir, p.refresh)
    keyring = Path(distro.keyring)
    inputs = {
        "sources": digest_text(distro.deb822()),
        "packages": digest_json(sorted(distro.base_packages)),
        "initramfs": digest_json(list(distro.initramfs_modules)),
        "keyring": digest_file(keyring) if keyring.is_file() else "missing",
        **code_inputs("base"),
    }
    inputs.update({f"mirror:{suite}": value for suite, value in mirror.items()})
    p.epoch = source_date_epoch(mirror.values())
    inputs["epoch"] = str(p.epoch)
    explain = {"packages": " ".join(sorted(distro.base_packages))}
    return (Step("base", distro.name, step_id("base", inputs), MappingProxyType(inputs), MappingProxyType(explain)),)


FALLBACK_EPOCH = 1704067200  # 2024-01-01: a mirror whose indexes carry no Date (a fixed time, never the clock)


def source_date_epoch(states: Iterable[str]) -> int:
    """The newest index date of a mirror state (values DIGEST@EPOCH): SOURCE_DATE_EPOCH."""
    dates = [int(v.rpartition("@")[2]) for v in states if "@" in v and v.rpartition("@")[2].isdigit()]
    return max([d for d in dates if d > 0], default=FALLBACK_EPOCH)


def run(job: Job) -> dict[str, Any]:
    backend = backend_for(job.plan.distro)
    backend.bootstrap(job.plan.distro, job.tmp, job.tmp / "tree")
    settle_intermediate(job.tmp / "tree", job.plan.epoch)
    clamp_times(job.tmp, job.plan.epoch)  # the sources and initramfs files written beside the tree
    return {"packages": backend.database(job.tmp / "tree").installed()}


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    return GIB  # a minbase tree with a kernel: 0.3-0.4 GiB measured


KIND = StepKind(
    name="base",
    order=10,
    tools=("mmdebstrap", "unshare", "mount"),
    shaping=("mmdebstrap",),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
)
