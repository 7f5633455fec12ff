"""What Crust made on OpenStack for an appliance: images with its crust_appliance property,
servers with it in their metadata. An orphan is an image that is not active (an upload killed
before it could delete it) or a server `launch` did not record (its run was killed)."""

from __future__ import annotations

from typing import Any

from crust.cloud.common import prefixed
from crust.cloud.openstack import client as osc
from crust.cloud.openstack.launch import delete_server, read_state
from crust.cloud.openstack.settings import OpenStackTarget
from crust.cloud.openstack.upload import delete_image, images_with
from crust.cloud.target import Job


def resources(target: OpenStackTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"):
        conn = osc.connect(target)
        try:
            for image in images_with(conn, osc.PROPERTY_APPLIANCE, name):
                found.append(
                    {"kind": "image", "id": image["id"], "digest": image.get(osc.PROPERTY_DIGEST, ""), "orphan": image.get("status") != "active"}
                )
            recorded = {s["id"] for s in read_state(job.store, name)}
            if osc.call("the compute service", conn.has_service, "compute"):
                servers = osc.json_of(osc.call("list servers", conn.compute.get, "/servers/detail"))
                for server in servers.get("servers", []):
                    meta = server.get("metadata", {})
                    if meta.get(osc.PROPERTY_APPLIANCE) == name:
                        found.append(
                            {
                                "kind": "server",
                                "id": server["id"],
                                "digest": meta.get(osc.PROPERTY_DIGEST, ""),
                                "orphan": server["id"] not in recorded,
                            }
                        )
            if remove_orphans:
                for entry in found:
                    if not entry["orphan"]:
                        continue
                    if entry["kind"] == "image":
                        delete_image(conn, entry["id"])
                    else:
                        delete_server(conn, entry["id"], target.wait_timeout)
                    entry["removed"] = True
                    job.say(f"removed {entry['kind']} {entry['id']} (an orphan)")
        finally:
            conn.close()
    return found
