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
    """What instances.insert gets (the REST resource's fields)."""
    nic: dict[str, Any] = {"nic_type": "GVNIC", "access_configs": [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]}
    if target.network:
        nic["network"] = resource_path(target.network, "networks", session.project)
    if target.subnetwork:
        nic["subnetwork"] = resource_path(target.subnetwork, "subnetworks", session.project, target.zone)
    return {
        "name": name,
        "machine_type": resource_path(target.machine_type, "machineTypes", session.project, target.zone),
        "labels": labels,
        "disks": [{"boot": True, "auto_delete": True, "initialize_params": {"source_image": f"projects/{session.project}/global/images/{image}"}}],
        "network_interfaces": [nic],
        "metadata": {"items": [{"key": "ssh-keys", "value": f"{target.ssh_user}:{key}"}, {"key": "user-data", "value": data}]},
    }


def get_instance(session: gcc.Session, instances: Any, zone: str, name: str) -> Any | None:
    from google.api_core import exceptions as api

    try:
        return instances.get(project=session.project, zone=zone, instance=name)
    except api.NotFound:
        return None


def delete_instance(session: gcc.Session, instances: Any, zone: str, name: str, timeout: float) -> None:
    from google.api_core import exceptions as api

    try:
        instances.delete(project=session.project, zone=zone, instance=name).result(timeout=timeout)
    except api.NotFound:
        pass


def address_of(instance: Any) -> str:
    for nic in instance.network_interfaces:
        for access in nic.access_configs:
            if access.nat_i_p:
                return str(access.nat_i_p)
        if nic.network_i_p:
            return str(nic.network_i_p)
    return ""


def launch(target: GcpTarget, job: Job) -> dict[str, Any]:
    from google.cloud import compute_v1

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
        instances = gcc.compute_client(session, "InstancesClient")
        body = instance_body(target, session, instance_name, str(entry["image"]), key, data, crust_labels(target, manifest, digest))
        undo = Undo(job.say)
        try:
            with gcc.errors(f"instances.insert {instance_name}"):
                operation = instances.insert(project=session.project, zone=target.zone, instance_resource=compute_v1.Instance(**body))
            undo.push(f"instance {instance_name}", lambda: delete_instance(session, instances, target.zone, instance_name, target.wait_timeout))
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
            faults.point("gcp.launch")
            job.say(f"instance {instance_name} starting from image {entry['image']} in {target.zone}")
            operation.result(timeout=target.wait_timeout)

            def running() -> Any | None:
                instance = get_instance(session, instances, target.zone, instance_name)
                if instance is None:
                    raise CloudError(f"instance {instance_name} disappeared while starting", hint="the project's audit log says why")
                if instance.status in ("TERMINATED", "STOPPING", "SUSPENDED"):
                    raise CloudError(
                        f"instance {instance_name} is {instance.status}: {instance.status_message or 'no message'}",
                        hint="check the machine type and the quota",
                    )
                return instance if instance.status == "RUNNING" else None

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
        instances = gcc.compute_client(session, "InstancesClient")
        for instance in chosen:
            delete_instance(session, instances, instance["zone"], instance["id"], target.wait_timeout)
            job.say(f"{instance['id']} deleted")
            done.append(instance["id"])
            with job.store.lock(f"gcp-instances-{name}"):
                write_state(job.store, name, [s for s in read_state(job.store, name) if s["id"] != instance["id"]])
    return done
