"""convert: one step per format the appliance asks for (crust/formats/), each from the raw image."""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any

from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.build.store import Entry
from crust.digest import step_id
from crust.formats import FORMATS, REGISTRY, ConvertJob, Machine
from crust.steps.kind import Job, Published, StepKind, file_facts


def machine_of(plan: AppliancePlan | Planning) -> Machine:
    return Machine(plan.spec.name, plan.spec.version, plan.spec.description)


def plan(p: Planning) -> tuple[Step, ...]:
    steps = []
    for fmt in sorted({*p.spec.image.formats, *p.formats}, key=FORMATS.index):  # a format after the one it packs
        if REGISTRY[fmt].convert is None:
            continue  # raw: the image step's own output
        inputs = {
            "image": p.start_id("image"),
            "epoch": str(p.epoch),
            "format": fmt,
            "compress": str(p.spec.image.compress),
            **code_inputs("convert", format_code(fmt)),
        }
        inputs.update(REGISTRY[fmt].inputs(machine_of(p)))
        steps.append(Step("convert", f"{p.spec.name}.{fmt}", step_id("convert", inputs), MappingProxyType(inputs)))
    return tuple(steps)


def format_code(fmt: str) -> tuple[str, ...]:
    """The format's module and, for one that packs another, that one's (the formats registry
    imports them by name: crust/build/code.py does not follow it into every format)."""
    used = REGISTRY[fmt].uses
    return (f"crust.formats.{fmt}", *((f"crust.formats.{used}",) if used else ()))


def run(job: Job) -> dict[str, Any]:
    fmt = job.step.inputs["format"]
    out = job.tmp / f"disk.{fmt}"
    uses = REGISTRY[fmt].uses
    packed = next((s for s in job.plan.steps_of("convert") if s.inputs["format"] == uses), None) if uses else None
    convert = REGISTRY[fmt].convert
    assert convert is not None
    used = job.entries[packed.key].path / f"disk.{uses}" if packed is not None else None
    convert(
        ConvertJob(job.entry("image").path / "disk.raw", out, job.plan.spec.image.compress, machine_of(job.plan), used, job.step.id, job.plan.epoch)
    )
    os.chmod(out, 0o444)
    return {f"disk.{fmt}": file_facts(out)}


def publish(plan: AppliancePlan, step: Step, entry: Entry) -> list[Published]:
    fmt = step.inputs["format"]
    return [Published(f"disk.{fmt}", f"{plan.spec.name}.{fmt}", fmt)]


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    return plan.layout.root_size_mib * 1024 * 1024 // 2


KIND = StepKind(
    name="convert",
    order=50,
    tools=("qemu-img",),
    shaping=("qemu-img",),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
    publish=publish,
    multiple=True,
)
