"""image: the sealed tree as a GPT disk (ESP with a UKI, ext4 root), audited, with its SBOM.

The sealed tree is the image's root file system: it is audited (a finding fails the step,
nothing is stored or published) while the disk is assembled from it (the audit is Python, the
assembly external tools, so the two share the cores), and its packages go into the SBOM.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crust import faults
from crust.build.plan import AppliancePlan, Planning, Step, code_inputs
from crust.build.store import Entry
from crust.digest import digest_json, step_id
from crust.distros import backend_for
from crust.errors import StepFailed
from crust.steps.kind import Job, Published, StepKind, file_facts

SBOM = "sbom.cdx.json"
UKI = "BOOTX64.EFI"  # left in the step's directory by the assembly (crust/disk/assemble.py)


def plan(p: Planning) -> tuple[Step, ...]:
    assert p.layout is not None
    layout = p.layout.__dict__
    inputs = {
        "tree": p.start_id("tree"),
        "epoch": str(p.epoch),  # the file systems' times
        "layout": digest_json(layout),
        **code_inputs("image", tools=("objcopy",) if p.distro.uki == "objcopy" else ()),
    }
    explain = {"layout": json.dumps(layout, sort_keys=True)}
    return (Step("image", p.spec.name, step_id("image", inputs), MappingProxyType(inputs), MappingProxyType(explain)),)


def run(job: Job) -> dict[str, Any]:
    from crust.disk import assemble as disk
    from crust.log import log_line, phase
    from crust.trust.audit import audit_tree, findings_json, policy_from_kickstart, summarize
    from crust.trust.sbom import Subject, write_sbom

    plan = job.plan
    tree = job.entry("tree").path / "tree"
    database = backend_for(plan.distro).database(tree)
    faults.point("image.start")
    raw = job.tmp / "disk.raw"
    took: list[tuple[str, float]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="audit") as pool:
        baseline = job.entry("packages").meta["outputs"].get("privileged")
        policy = dataclasses.replace(policy_from_kickstart(plan.ks), privileged=baseline)
        audit = pool.submit(audit_tree, tree, policy, database)
        with phase("assemble the disk", took):
            disk.assemble(tree, plan.layout, job.tmp, raw, job.step.inputs["tree"], plan.epoch)
        with phase("disk digest", took):
            facts = file_facts(raw)  # hashed while the audit may still run: hashlib lets go of the GIL
        with phase("wait for the audit", took):
            findings = audit.result()
    for finding in findings:
        log_line(f"audit: {finding}")
    if findings:
        raise StepFailed(f"image step of {plan.spec.name} failed: the audit found {summarize(findings)}")
    os.chmod(raw, 0o444)
    sbom = job.tmp / SBOM
    subject = Subject(plan.spec.name, plan.spec.version, plan.spec.description, facts["sha256"], {"distribution": plan.distro.name}, plan.epoch)
    with phase("SBOM", took):
        counts = write_sbom(tree, subject, sbom, database)
    os.chmod(sbom, 0o444)
    uki = job.tmp / UKI
    os.chmod(uki, 0o444)
    return {"disk.raw": facts, "audit": findings_json(findings), SBOM: {**file_facts(sbom), **counts}, UKI: file_facts(uki), "phases_s": took}


def publish(plan: AppliancePlan, step: Step, entry: Entry) -> list[Published]:
    return [Published("disk.raw", f"{plan.spec.name}.raw", "raw"), Published(SBOM, f"{plan.spec.name}.cdx.json")]


def record(plan: AppliancePlan, step: Step, entry: Entry, out_dir: Path) -> dict[str, Any]:
    """The audit passed (else the step failed) and the SBOM."""
    outputs = entry.meta["outputs"]
    sbom = out_dir / f"{plan.spec.name}.cdx.json"
    uki = {k: v for k, v in outputs.get(UKI, {}).items() if k in ("sha256", "size")}
    return {"audit": outputs["audit"], "sbom": {"path": str(sbom), "format": "CycloneDX 1.6 JSON", **outputs[SBOM]}, "uki": uki}


def disk_bytes(plan: AppliancePlan, step: Step) -> int:
    # the root file system and the disk it is copied into, both sparse: at most the root size
    return plan.layout.root_size_mib * 1024 * 1024


def more_tools(plan: AppliancePlan) -> tuple[str, ...]:
    return ("objcopy",) if plan.distro.uki == "objcopy" else ()


KIND = StepKind(
    name="image",
    order=40,
    tools=("sfdisk", "mkfs.ext4", "dumpe2fs", "debugfs", "mkfs.vfat", "mcopy", "mmd", "dd", "bwrap", "grep"),
    shaping=("sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy"),
    plan=plan,
    run=run,
    disk_bytes=disk_bytes,
    publish=publish,
    record=record,
    more_tools=more_tools,
)
