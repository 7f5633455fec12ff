"""`build.py upload NAME --target aws`: the built raw image -> snapshot -> AMI, copies, shares.

Idempotent by image digest: an AMI of this account tagged ``crust:image-digest`` with the raw
image's sha256 is reused (nothing is uploaded); copies in the extra regions are found the same
way. Every resource made before the AMI exists has an undo: a failed or interrupted upload
deletes its snapshot (and an AMI registered but not yet tagged), so a rerun starts clean. The
result (AMI and snapshot per region, accounts shared with) goes into build/NAME/manifest.json.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from crust.build.manifest import Manifest
from crust.build.store import Store
from crust.cloud.aws import client as awsops
from crust.cloud.aws.settings import AwsTarget, check_for_upload, image_name
from crust.cloud.common import RawImage, Undo, prefixed, raw_image, record, require_first_boot_agent, stored_digest
from crust.errors import Problem

MB = 1_000_000


@dataclass(frozen=True)
class Job:
    """One upload: what, where, as what, and how to report progress."""

    aws: awsops.Aws
    target: AwsTarget
    store: Store
    name: str
    manifest: Manifest
    image: RawImage
    home: str  # the region the image is uploaded to
    ami_name: str
    description: str
    tags: Mapping[str, str]
    say: Callable[[str], None]


def upload(
    target: AwsTarget,
    output: Path,
    store: Store,
    name: str,
    region: str | None = None,
    session: Any = None,
    stream: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Upload appliance NAME; returns the report (also recorded in its manifest)."""

    def say(text: str) -> None:
        print(f"upload {name}: {text}", file=stream, flush=True)

    manifest = Manifest.load(output, name, verb="upload")
    require_first_boot_agent(manifest)
    image = raw_image(manifest)
    check_for_upload(target)
    ami_name = image_name(target, manifest, image.digest)
    aws = awsops.Aws(target, session)
    with prefixed(f"upload {name}"):
        aws.check_credentials()
        job = Job(
            aws=aws,
            target=target,
            store=store,
            name=name,
            manifest=manifest,
            image=image,
            home=aws.region(region),
            ami_name=ami_name,
            description=f"{name} {manifest.version}, built by Crust (raw image sha256 {image.digest})",
            tags=awsops.crust_tags(manifest, image.digest, target, ami_name),
            say=say,
        )
        with store.lock(f"upload-{name}", on_wait=lambda: say("waiting for another upload of this appliance")):
            report = _upload_locked(job)
        assert manifest.path is not None
        record(manifest.path, "aws", image.digest, report["regions"])
    return report


def _upload_locked(job: Job) -> dict[str, Any]:
    ec2 = job.aws.ec2(job.home)
    report: dict[str, Any] = {
        "appliance": job.name,
        "image_digest": job.image.digest,
        "method": job.target.method,
        "image_bytes": job.image.size,
        "allocated_bytes": job.image.allocated,
        "regions": {},
    }
    found = awsops.find_image(ec2, job.image.digest)
    if found is not None:
        ami, snapshot = str(found["ImageId"]), awsops.image_snapshot(found)
        job.say(f"{job.home}: {ami} already holds this image (tag {awsops.TAG_DIGEST}); nothing uploaded")
        report["reused"] = True
    else:
        ami, snapshot, stats = _new_ami(job)
        report["reused"] = False
        report.update(stats)
    regions: dict[str, dict[str, Any]] = {job.home: {"ami": ami, "snapshot": snapshot, "name": job.ami_name}}
    if (job.target.copy_to or job.target.share_with) and (found is None or found.get("State") != "available"):
        awsops.wait_image(ec2, ami, job.target.wait_timeout)
    for dest in job.target.copy_to:
        if dest != job.home:
            regions[dest] = _copy(job, ami, dest)
    for region, entry in regions.items():
        awsops.share(job.aws.ec2(region), entry["ami"], entry["snapshot"], job.target.share_with)
        entry["shared_with"] = list(job.target.share_with)
        if job.target.share_with:
            job.say(f"{region}: {entry['ami']} shared with {', '.join(job.target.share_with)}")
    report["regions"] = regions
    return report


def _new_ami(job: Job) -> tuple[str, str, dict[str, Any]]:
    """Upload the image as a snapshot and register an AMI from it; on any failure or Ctrl-C,
    what was made is removed."""
    from crust.cloud.aws.ebs import volume_gib

    ec2 = job.aws.ec2(job.home)
    _remove_leftovers(ec2, job.image.digest, job.say)
    undo = Undo(job.say)
    snapshots: list[str] = []

    def started(snapshot_id: str) -> None:
        snapshots.append(snapshot_id)
        undo.push(f"snapshot {snapshot_id}", lambda: awsops.delete_snapshot(ec2, snapshot_id))

    try:
        with open(job.image.path, "rb") as fh:  # one open file: a build replacing the path cannot mix images
            known = stored_digest(fh.fileno(), job.manifest, job.store) == job.image.digest
            expect = None if known else job.image.digest  # else the upload hashes what it reads
            stats = _upload_ebs(job, fh, started, expect) if job.target.method == "ebs" else _upload_s3(job, fh, started, expect)
        snapshot = snapshots[-1]
        awsops.wait_snapshot(ec2, snapshot, job.target.wait_timeout)
        size = max(volume_gib(job.image.size), job.target.root_volume_size)
        ami = awsops.register_image(ec2, awsops.register_params(job.ami_name, job.description, snapshot, size, job.tags))
        undo.push(f"AMI {ami}", lambda: awsops.deregister_image(ec2, ami))
        awsops.tag(ec2, [ami], job.tags)
        undo.commit()  # registered and tagged: a rerun finds it by its digest tag
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            job.say("interrupted: removing what this upload made")
        undo.run()
        raise
    job.say(f"{job.home}: registered {ami} ({job.ami_name}) from {snapshot}")
    if stats.get("seconds"):
        stats["mb_per_s_allocated"] = round(job.image.allocated / MB / stats["seconds"], 1)
    return ami, snapshot, stats


def _upload_ebs(job: Job, fh: BinaryIO, started: Callable[[str], None], expect: str | None) -> dict[str, Any]:
    from crust.cloud.aws.ebs import upload_snapshot

    image = job.image
    job.say(
        f"{job.home}: uploading {image.path.name} ({image.size / MB:.0f} MB, {image.allocated / MB:.0f} MB allocated) "
        f"with the EBS direct APIs, {job.target.workers} workers"
    )
    result = upload_snapshot(job.aws.ebs(job.home), fh.fileno(), job.description, job.tags, job.target.workers, started, expect)
    job.say(
        f"{job.home}: snapshot {result.snapshot_id}: {result.stats.data_blocks} blocks written, "
        f"{result.stats.skipped} of {result.stats.total_blocks} skipped as zero, {result.seconds:.1f} s "
        f"({image.allocated / MB / max(result.seconds, 1e-9):.0f} MB/s of allocated data)"
    )
    return {
        "blocks_total": result.stats.total_blocks,
        "blocks_uploaded": result.stats.data_blocks,
        "blocks_skipped_zero": result.stats.zero_blocks,
        "blocks_skipped_hole": result.stats.hole_blocks,
        "bytes_uploaded": result.bytes_uploaded,
        "seconds": round(result.seconds, 3),
        "checksum": result.checksum,
    }


def _upload_s3(job: Job, fh: BinaryIO, started: Callable[[str], None], expect: str | None) -> dict[str, Any]:
    from crust.cloud.aws.s3import import import_snapshot, object_key

    target = job.target
    key = object_key(job.name, job.image.digest)
    job.say(f"{job.home}: uploading {job.image.path.name} to s3://{target.bucket}/{key}, {target.workers} workers")
    ec2 = job.aws.ec2(job.home)
    imported = import_snapshot(
        ec2,
        job.aws.s3(job.home),
        fh,
        target.bucket,
        key,
        job.description,
        target.import_role,
        job.tags,
        target.workers,
        target.wait_timeout,
        started,
        job.say,
        expect,
    )
    awsops.tag(ec2, [imported.snapshot_id], job.tags)
    return {"bytes_uploaded": imported.bytes_uploaded, "seconds": round(imported.seconds, 3)}


def _remove_leftovers(ec2: Any, digest: str, say: Callable[[str], None]) -> None:
    """Snapshots tagged with this digest but used by no AMI: left by a killed upload (which had no
    chance to clean up). Uploads of one appliance are serialised by a lock, so none is running."""
    for snapshot in awsops.find_snapshots(ec2, digest):
        snapshot_id = str(snapshot["SnapshotId"])
        try:
            awsops.delete_snapshot(ec2, snapshot_id)
            say(f"removed {snapshot_id}, left by an interrupted upload")
        except Problem as exc:
            say(f"left {snapshot_id} alone: {exc.one_line()}")


def _copy(job: Job, ami: str, dest: str) -> dict[str, Any]:
    ec2 = job.aws.ec2(dest)
    found = awsops.find_image(ec2, job.image.digest)
    if found is not None:
        copy_id = str(found["ImageId"])
        job.say(f"{dest}: {copy_id} already holds this image")
    else:
        copy_id = awsops.copy_image(ec2, job.home, ami, job.ami_name, job.description, job.tags)
        job.say(f"{dest}: copying {ami} from {job.home} as {copy_id}")
    copied = awsops.wait_image(ec2, copy_id, job.target.wait_timeout)
    return {"ami": copy_id, "snapshot": awsops.image_snapshot(copied), "name": job.ami_name, "copied_from": job.home}


def recorded_ami(manifest: Manifest, region: str) -> str | None:
    """The AMI recorded for this region, if it was made from the manifest's raw image."""
    entry = manifest.cloud_record("aws", region)
    return str(entry["ami"]) if entry else None


def human_report(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for region, entry in report["regions"].items():
        extra = f" (copied from {entry['copied_from']})" if entry.get("copied_from") else ""
        lines.append(f"{report['appliance']} {region} {entry['ami']}{extra}")
    return lines
