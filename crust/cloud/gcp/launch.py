"""Launch and terminate Compute Engine instances of an uploaded appliance.

An instance boots a disk made from the image Crust recorded for the project, with the target's
machine type, zone and network, gVNIC, Crust's labels, and two metadata entries: ``ssh-keys``
("USER:ssh-ed25519 ...", what the guest environment and cloud-init read) and ``user-data`` (the
#cloud-config cloud-init's GCE datasource reads). `launch` waits until it is RUNNING; a failure
or Ctrl-C deletes it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

from crust import faults
from crust.build.manifest import Manifest
from crust.build.store import Store, write_atomic
from crust.cloud.common import Undo, prefixed, require_first_boot_agent, ssh_public_key, user_data
from crust.cloud.gcp import client as gcc
from crust.cloud.gcp.settings import GcpTarget, check_for_launch
from crust.cloud.gcp.upload import crust_labels
from crust.cloud.target import Job
from crust.errors import CloudError, UserError

USER_DATA_LIMIT = 256 * 1024  # a metadata value holds 256 KiB


def state_path(store: Store, name: str) -> Path:
    return store.root / "state" / "gcp" / f"{name}.json"


def read_state(store: Store, name: str) -> list[dict[str, Any]]:
    path = state_path(store, name)
    if not path.is_file():
        return []
    instances: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("instances", [])
    return instances


def write_state(store: Store, name: str, instances: list[dict[str, Any]]) -> None:
    path = state_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"appliance": name, "instances": instances}, indent=2, sort_keys=True))


def resource_path(value: str, kind: str, project: str, zone: str = "") -> str:
    """A name as the path Compute Engine wants (a path is kept as it is)."""
    if "/" in value:
        return value
    if kind == "machineTypes":
        return f"zones/{zone}/machineTypes/{value}"
    if kind == "subnetworks":
        return f"projects/{project}/regions/{zone.rsplit('-', 1)[0]}/subnetworks/{value}"
    return f"projects/{project}/global/{kind}/{value}"


def instance_body(target: GcpTarget, session: gcc.Session, name: str, image: str, key: str, data: str, labels: dict[str, str]) -> dict[str, Any]:
    """What instances.insert gets (the REST resource)."""
    nic: dict[str, Any] = {"nicType": "GVNIC", "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}
    if target.network:
        nic["network"] = resource_path(target.network, "networks", session.project)
    if target.subnetwork:
        nic["subnetwork"] = resource_path(target.subnetwork, "subnetworks", session.project, target.zone)
    return {
        "name": name,
        "machineType": resource_path(target.machine_type, "machineTypes", session.project, target.zone),
        "labels": labels,
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": f"projects/{session.project}/global/images/{image}"}}],
        "networkInterfaces": [nic],
        "metadata": {"items": [{"key": "ssh-keys", "value": f"{target.ssh_user}:{key}"}, {"key": "user-data", "value": data}]},
    }


def get_instance(compute: gcc.Compute, zone: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = compute.call(f"instance {name}", "GET", f"/zones/{zone}/instances/{name}", missing_ok=True)
    return found


def delete_instance(compute: gcc.Compute, zone: str, name: str, timeout: float) -> bool:
    """Delete it and wait; False when it was not there."""
    operation = compute.call(f"delete instance {name}", "DELETE", f"/zones/{zone}/instances/{name}", missing_ok=True)
    if operation is None:
        return False
    compute.wait(f"delete instance {name}", operation, timeout)
    return True


def address_of(instance: dict[str, Any]) -> str:
    for nic in instance.get("networkInterfaces", []):
        for access in nic.get("accessConfigs", []):
            if access.get("natIP"):
                return str(access["natIP"])
        if nic.get("networkIP"):
            return str(nic["networkIP"])
    return ""


def launch(target: GcpTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    check_for_launch(target)
    manifest = Manifest.load(job.output, name, verb="launch")
    require_first_boot_agent(manifest)
    key = ssh_public_key(target.ssh_key, job.option("ssh_key"), table="targets.gcp")
    data = user_data(key, target.cloud_config, limit=USER_DATA_LIMIT, cloud="Compute Engine metadata")
    digest = str(manifest.raw_digest)
    instance_name = f"{name}-{secrets.token_hex(4)}".lower().replace("_", "-")
    with prefixed(f"launch {name}"), gcc.errors("Google Cloud"):
        session = gcc.connect(target, need_storage=False)
        entry = manifest.cloud_record("gcp", session.project)
        if entry is None or entry.get("image_digest") != digest:
            raise UserError(
                f"the current image of {name} is not uploaded to {session.project}", hint=f"run ./build.py upload {name} --target gcp first"
            )
        compute = gcc.Compute(session)
        body = instance_body(target, session, instance_name, str(entry["image"]), key, data, crust_labels(target, manifest, digest))
        undo = Undo(job.say)
        try:
            what = f"instances.insert {instance_name}"
            # Recorded and undone before it is asked for: an interrupt during the request, or a
            # kill, leaves a record terminate finds (a missing instance is fine to delete).
            undo.push(f"instance {instance_name}", lambda: delete_instance(compute, target.zone, instance_name, target.wait_timeout))
            record: dict[str, Any] = {
                "id": instance_name,
                "name": instance_name,
                "location": f"{session.project}/{target.zone}",
                "zone": target.zone,
                "image": entry["image"],
                "image_digest": digest,
                "launched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            with job.store.lock(f"gcp-instances-{name}"):
                write_state(job.store, name, [*read_state(job.store, name), record])
            operation = compute.call(what, "POST", f"/zones/{target.zone}/instances", body)
            faults.point("gcp.launch")
            job.say(f"instance {instance_name} starting from image {entry['image']} in {target.zone}")
            compute.wait(what, operation, target.wait_timeout)

            def running() -> dict[str, Any] | None:
                instance = get_instance(compute, target.zone, instance_name)
                if instance is None:
                    raise CloudError(f"instance {instance_name} disappeared while starting", hint="the project's audit log says why")
                status = instance.get("status")
                if status in ("TERMINATED", "STOPPING", "SUSPENDED"):
                    message = instance.get("statusMessage") or "no message"
                    raise CloudError(f"instance {instance_name} is {status}: {message}", hint="check the machine type and the quota")
                return instance if status == "RUNNING" else None

            instance = gcc.wait_until(f"instance {instance_name} RUNNING", running, target.wait_timeout)
            undo.commit()
        except BaseException:
            undo.run()
            with job.store.lock(f"gcp-instances-{name}"):
                write_state(job.store, name, [s for s in read_state(job.store, name) if s.get("name") != instance_name])
            raise
    record = {**record, "address": address_of(instance)}
    record["summary"] = f"{instance_name} RUNNING in {record['location']} at {record['address'] or 'no address'}"
    with job.store.lock(f"gcp-instances-{name}"):
        write_state(job.store, name, [record if s["id"] == instance_name else s for s in read_state(job.store, name)])
    return record


def terminate(target: GcpTarget, job: Job) -> list[str]:
    name = job.appliance
    wanted = job.option("instance")
    chosen = [s for s in read_state(job.store, name) if wanted is None or wanted in (s["id"], s.get("name"))]
    if not chosen:
        raise UserError(
            f"no launched instance of {name} is recorded" + (f" as {wanted}" if wanted else ""),
            hint=f"./build.py launch {name} --target gcp starts one; resources lists them",
        )
    done = []
    with prefixed(f"terminate {name}"), gcc.errors("Google Cloud"):
        session = gcc.connect(target, need_storage=False)
        elsewhere = sorted({s["location"].split("/")[0] for s in chosen if s["location"].split("/")[0] != session.project})
        if elsewhere:
            raise UserError(
                f"the recorded instances are in project {', '.join(elsewhere)}, not {session.project}",
                hint="terminate with the project they were launched in (project in [targets.gcp], or --project)",
            )
        compute = gcc.Compute(session)
        for instance in chosen:
            delete_instance(compute, instance["zone"], instance["id"], target.wait_timeout)
            job.say(f"{instance['id']} deleted")
            done.append(instance["id"])
            with job.store.lock(f"gcp-instances-{name}"):
                write_state(job.store, name, [s for s in read_state(job.store, name) if s["id"] != instance["id"]])
    return done
