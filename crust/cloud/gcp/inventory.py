"""What Crust made on Google Cloud for an appliance: images labelled crust-appliance=NAME, objects
of the bucket's prefix with it in their metadata, instances with the label. An orphan is an
image that FAILED or a part an interrupted composite upload left. An instance this store's
`launch` did not record is listed (recorded: false) but never removed: it may be another
checkout's."""

from __future__ import annotations

from typing import Any

from crust.cloud.common import prefixed
from crust.cloud.gcp import bucket as gcs
from crust.cloud.gcp import client as gcc
from crust.cloud.gcp.launch import read_state
from crust.cloud.gcp.settings import GcpTarget
from crust.cloud.gcp.upload import delete_image, images_with, label_value
from crust.cloud.target import Job


def resources(target: GcpTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"), gcc.errors("Google Cloud"):
        session = gcc.connect(target, need_storage=bool(target.bucket))
        compute = gcc.Compute(session)
        for image in images_with(compute, gcc.LABEL_APPLIANCE, label_value(name)):
            digest = image.get("labels", {}).get(gcc.LABEL_DIGEST, "")
            found.append({"kind": "image", "id": image["name"], "digest": digest, "orphan": image.get("status") == "FAILED"})
        if target.bucket:
            bucket = gcc.storage_client(session).bucket(target.bucket)
            for blob in bucket.list_blobs(prefix=target.prefix):
                meta = blob.metadata or {}
                if meta.get(gcc.META_APPLIANCE) != name:
                    continue
                part = gcs.PART_MARK in blob.name.rsplit("/", 1)[-1]
                found.append(
                    {
                        "kind": "part" if part else "object",
                        "id": f"gs://{target.bucket}/{blob.name}",
                        "digest": meta.get(gcc.META_DIGEST, ""),
                        "orphan": part,
                    }
                )
        recorded = {s["id"] for s in read_state(job.store, name)}
        label = f'labels.{gcc.LABEL_APPLIANCE}="{label_value(name)}"'
        for instance in compute.items("list instances", "/aggregated/instances", filter=label):
            digest = instance.get("labels", {}).get(gcc.LABEL_DIGEST, "")
            found.append({"kind": "instance", "id": instance["name"], "digest": digest, "orphan": False, "recorded": instance["name"] in recorded})
        if remove_orphans:
            for entry in found:
                if not entry["orphan"]:
                    continue
                if entry["kind"] == "image":
                    delete_image(compute, entry["id"], target.wait_timeout)
                else:
                    gcs.delete_quietly(bucket, entry["id"].split("/", 3)[3])
                entry["removed"] = True
                job.say(f"removed {entry['kind']} {entry['id']} (an orphan)")
    return found
