"""What Crust made on Azure for an appliance: VHD blobs with its crust_appliance metadata, and
images, VMs, NICs, public IPs and disks in the resource group with its crust_appliance tag.
An orphan is a blob without crust_complete (an upload killed before it could delete it). A VM
this store's `launch` did not record is listed (recorded: false) but never removed."""

from __future__ import annotations

import os
from typing import Any

from crust.cloud.azure import client as azc
from crust.cloud.azure.launch import TARGET
from crust.cloud.azure.pageblob import delete_blob
from crust.cloud.azure.settings import AzureTarget, require
from crust.cloud.common import prefixed, read_machines
from crust.cloud.target import Job


def blobs(target: AzureTarget, name: str) -> list[tuple[dict[str, Any], Any]]:
    from azure.core.exceptions import ResourceNotFoundError

    container = azc.container_client(target)
    found = []
    try:
        for blob in container.list_blobs(include=["metadata"]):
            meta = blob.metadata or {}
            if meta.get(azc.TAG_APPLIANCE) == name:
                entry = {"kind": "blob", "id": blob.name, "digest": meta.get(azc.TAG_DIGEST, ""), "orphan": azc.TAG_COMPLETE not in meta}
                found.append((entry, container.get_blob_client(blob.name)))
    except ResourceNotFoundError:  # no container yet
        return []
    return found


def tagged(target: AzureTarget, subscription: str, name: str) -> list[dict[str, Any]]:
    compute, network = azc.compute_client(target, subscription), azc.network_client(target, subscription)
    group = target.resource_group
    kinds: list[tuple[str, Any]] = [
        ("image", compute.images.list_by_resource_group(group)),
        ("vm", compute.virtual_machines.list(group)),
        ("disk", compute.disks.list_by_resource_group(group)),
        ("nic", network.network_interfaces.list(group)),
        ("public ip", network.public_ip_addresses.list(group)),
    ]
    if target.gallery:
        kinds += (
            ("gallery image version", compute.gallery_image_versions.list_by_gallery_image(group, target.gallery, target.gallery_image or name)),
        )
    found = []
    for kind, listing in kinds:
        for resource in listing:
            tags = resource.tags or {}
            if tags.get(azc.TAG_APPLIANCE) == name:
                found.append({"kind": kind, "id": resource.id, "name": resource.name, "digest": tags.get(azc.TAG_DIGEST, ""), "orphan": False})
    return found


def resources(target: AzureTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"), azc.errors("Azure"):
        listed_blobs = blobs(target, name) if (os.environ.get(azc.CONNECTION_ENV) or target.storage_account) else []
        found += [entry for entry, _ in listed_blobs]
        if target.resource_group:
            require(target, "location")
            recorded = {m["name"] for m in read_machines(job.store, TARGET, name)}
            for entry in tagged(target, azc.subscription_of(target), name):
                if entry["kind"] == "vm":
                    entry["recorded"] = entry["name"] in recorded
                found.append(entry)
        if remove_orphans:
            for entry, blob in listed_blobs:
                if entry["orphan"]:
                    delete_blob(blob)
                    entry["removed"] = True
                    job.say(f"removed blob {entry['id']} (an orphan)")
    return found
