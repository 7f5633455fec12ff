"""What Crust made on a libvirt host for an appliance: image volumes (with their records),
launched domains and their volumes. Orphans: an image volume whose upload never completed, a
machine volume whose domain is gone. A domain this store's `launch` did not record is listed
(recorded: false) but never removed: it may be another checkout's or another host's."""

from __future__ import annotations

from typing import Any

from crust.boot.machine import connect
from crust.cloud.common import prefixed
from crust.cloud.libvirt import pool as pools
from crust.cloud.libvirt.launch import crust_domains, machine_volumes, read_state
from crust.cloud.libvirt.settings import LibvirtTarget
from crust.cloud.target import Job


def resources(target: LibvirtTarget, job: Job, remove_orphans: bool) -> list[dict[str, Any]]:
    name = job.appliance
    found: list[dict[str, Any]] = []
    with prefixed(f"resources {name}"), pools.libvirt_errors(f"resources {name}"):
        conn = connect(target.uri)
        try:
            pool = pools.find_pool(conn, target.pool, target.uri)
            volumes = set(pool.listVolumes())
            for image, record in sorted(pools.records(conn, pool).items()):
                if record.get("appliance") != name:
                    continue
                whole = bool(record.get("complete")) and image in volumes
                found.append({"kind": "image", "id": image, "digest": record.get("image_digest", ""), "orphan": not whole})
            recorded = {m["id"] for m in read_state(job.store, name)}
            domains = crust_domains(conn, name)
            for machine, digest in domains:
                # A domain this store did not record may be another checkout's or host's: listed, never removed.
                found.append({"kind": "domain", "id": machine, "digest": digest, "orphan": False, "recorded": machine in recorded})
            live = {machine for machine, _ in domains}
            prefix = f"{name}-"
            for volume in sorted(volumes):
                owner = next((v[: -len(s)] for v, s in ((volume, ".qcow2"), (volume, "-seed.img")) if v.endswith(s)), None)
                if owner is None or not owner.startswith(prefix) or volume not in machine_volumes(owner):
                    continue
                if any(e["id"] == volume for e in found) or len(owner) != len(prefix) + 8:
                    continue
                found.append({"kind": "volume", "id": volume, "digest": "", "orphan": owner not in live})
            if remove_orphans:
                for entry in found:
                    if not entry["orphan"]:
                        continue
                    if entry["kind"] == "image":
                        pools.delete_volume(pool, entry["id"])
                        pools.delete_volume(pool, entry["id"] + pools.RECORD_SUFFIX)
                    else:
                        pools.delete_volume(pool, entry["id"])
                    entry["removed"] = True
                    job.say(f"removed {entry['kind']} {entry['id']} (an orphan)")
        finally:
            conn.close()
    return found
