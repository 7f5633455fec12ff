"""What Crust made in AWS for an appliance, in one region: AMIs, snapshots and instances tagged
crust:appliance=NAME. An orphan is a snapshot no AMI uses, by its block device mapping or by
the image digest both are tagged with (an upload killed before it could register its AMI); instances are listed (recorded or not by `launch`) but never removed here."""

from __future__ import annotations

from typing import Any

from crust.cloud.aws import client as awsops
from crust.cloud.aws.launch import read_state
from crust.cloud.aws.settings import AwsTarget
from crust.cloud.common import prefixed
from crust.cloud.target import Job
from crust.errors import Problem


def _tagged(name: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{awsops.TAG_APPLIANCE}", "Values": [name]}]


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def resources(target: AwsTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    aws = awsops.Aws(target)
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"):
        aws.check_credentials()
        region = aws.region(job.option("region"))
        ec2 = aws.ec2(region)
        images = awsops.call(ec2, "describe_images", f"images tagged {awsops.TAG_APPLIANCE}={name}", Owners=["self"], Filters=_tagged(name))
        used: set[str | None] = set()
        for image in images.get("Images", []):
            used.add(awsops.image_snapshot(image))
            digest = _tags(image).get(awsops.TAG_DIGEST, "")
            used.add(f"digest:{digest}")
            found.append({"kind": "image", "id": image["ImageId"], "region": region, "digest": digest, "orphan": False})
        for page in awsops.pages(ec2, "describe_snapshots", f"snapshots tagged {awsops.TAG_APPLIANCE}", OwnerIds=["self"], Filters=_tagged(name)):
            for snapshot in page.get("Snapshots", []):
                snapshot_id = str(snapshot["SnapshotId"])
                digest = _tags(snapshot).get(awsops.TAG_DIGEST, "")
                found.append(
                    {
                        "kind": "snapshot",
                        "id": snapshot_id,
                        "region": region,
                        "digest": digest,
                        "orphan": not {snapshot_id, f"digest:{digest}"} & used,
                    }
                )
        recorded = {i["id"] for i in read_state(job.store, name)}
        reservations = awsops.call(ec2, "describe_instances", f"instances tagged {awsops.TAG_APPLIANCE}={name}", Filters=_tagged(name))
        for reservation in reservations.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("State", {}).get("Name") in ("terminated", "shutting-down"):
                    continue
                instance_id = str(instance["InstanceId"])
                digest = _tags(instance).get(awsops.TAG_DIGEST, "")
                found.append(
                    {"kind": "instance", "id": instance_id, "region": region, "digest": digest, "orphan": False, "recorded": instance_id in recorded}
                )
        if remove_orphans:
            for entry in found:
                if entry["orphan"]:
                    try:
                        awsops.delete_snapshot(ec2, entry["id"])
                        entry["removed"] = True
                        job.say(f"removed {entry['id']}, used by no AMI")
                    except Problem as exc:
                        entry["removed"] = False
                        job.say(f"left {entry['id']} alone: {exc.one_line()}")
    return found
