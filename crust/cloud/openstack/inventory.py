"""What Crust made on OpenStack for an appliance: images with its crust_appliance property,
servers with it in their metadata. An orphan is an image left queued, saving or killed (an
upload killed before it could delete it). A server this store's `launch` did not record is
listed (recorded: false) but never removed: it may be another checkout's."""

from __future__ import annotations

from typing import Any

from crust.cloud.common import prefixed
from crust.cloud.openstack import client as osc
from crust.cloud.openstack.launch import read_state
from crust.cloud.openstack.settings import OpenStackTarget
from crust.cloud.openstack.upload import LEFTOVER_STATES, delete_image, images_with
from crust.cloud.target import Job


def resources(target: OpenStackTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"), osc.errors(f"resources {name}"):
        conn = osc.connect(target)
        try:
            for image in images_with(conn, osc.PROPERTY_APPLIANCE, name):
                left = image.get("status") in LEFTOVER_STATES
                found.append({"kind": "image", "id": image["id"], "digest": image.get(osc.PROPERTY_DIGEST, ""), "orphan": left})
            recorded = {s["id"] for s in read_state(job.store, name)}
            if osc.call("the compute service", conn.has_service, "compute"):
                servers = osc.json_of(osc.call("list servers", conn.compute.get, "/servers/detail"))
                for server in servers.get("servers", []):
                    meta = server.get("metadata", {})
                    if meta.get(osc.PROPERTY_APPLIANCE) == name:
                        # A server this store did not record may be another checkout's: listed, never removed.
                        digest = meta.get(osc.PROPERTY_DIGEST, "")
                        found.append({"kind": "server", "id": server["id"], "digest": digest, "orphan": False, "recorded": server["id"] in recorded})
            if remove_orphans:
                for entry in found:
                    if not entry["orphan"]:
                        continue
                    delete_image(conn, entry["id"])  # only images are ever orphans
                    entry["removed"] = True
                    job.say(f"removed {entry['kind']} {entry['id']} (an orphan)")
        finally:
            conn.close()
    return found
