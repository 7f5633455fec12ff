"""Launch and terminate VMs of an uploaded appliance on Azure.

A VM boots the managed image Crust recorded for this subscription, resource group and location,
with a NIC on the target's subnet (and a static public IP if asked), the admin user with the SSH
key, and the #cloud-config custom data (the target's cloud_config plus the key). Its NIC, IP and
OS disk are named after it and tagged with Crust's tags; the store records them before they are
made, so that `terminate` finds even what a killed launch left. `launch` waits until the VM is
provisioned; a failure or Ctrl-C deletes what it made (VM, OS disk, NIC, IP, in that order).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

from crust import faults
from crust.build.manifest import Manifest
from crust.cloud.azure import client as azc
from crust.cloud.azure.image import wait_for
from crust.cloud.azure.settings import AzureTarget, require
from crust.cloud.common import Undo, prefixed, read_machines, require_first_boot_agent, ssh_public_key, user_data, write_machines
from crust.cloud.target import Job
from crust.errors import CloudError, UserError

CUSTOM_DATA_LIMIT = 87380  # Azure's limit on the base64 of custom data
TARGET = "azure"


def tags_of(appliance: str, digest: str, vm: str) -> dict[str, str]:
    return {azc.TAG_APPLIANCE: appliance, azc.TAG_DIGEST: digest, "crust_vm": vm}


def public_ip_body(target: AzureTarget, tags: dict[str, str]) -> dict[str, Any]:
    return {"location": target.location, "tags": tags, "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}


def nic_body(target: AzureTarget, tags: dict[str, str], public_ip_id: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"subnet": {"id": target.subnet}, "privateIPAllocationMethod": "Dynamic"}
    if public_ip_id:
        config["publicIPAddress"] = {"id": public_ip_id}
    return {"location": target.location, "tags": tags, "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}}


def vm_body(target: AzureTarget, vm: str, image_id: str, nic_id: str, key: str, data: str, tags: dict[str, str]) -> dict[str, Any]:
    custom = base64.b64encode(data.encode()).decode()
    if len(custom) > CUSTOM_DATA_LIMIT:
        raise UserError(f"the custom data is {len(custom)} bytes in base64, over Azure's {CUSTOM_DATA_LIMIT}", hint="shorten cloud_config")
    user = target.admin_user
    return {
        "location": target.location,
        "tags": tags,
        "properties": {
            "hardwareProfile": {"vmSize": target.vm_size},
            "storageProfile": {
                "imageReference": {"id": image_id},
                "osDisk": {"name": f"{vm}-osdisk", "createOption": "FromImage", "caching": "ReadWrite", "deleteOption": "Delete"},
            },
            "osProfile": {
                "computerName": vm,
                "adminUsername": user,
                "customData": custom,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {"publicKeys": [{"path": f"/home/{user}/.ssh/authorized_keys", "keyData": key}]},
                    "provisionVMAgent": False,
                },
            },
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]},
        },
    }


def resource_id(subscription: str, group: str, provider: str, kind: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/{kind}/{name}"


def deleter(poller_of: Callable[[], Any], what: str, timeout: float) -> Callable[[], None]:
    """Delete a resource and wait; one already gone is fine."""

    def delete() -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with azc.errors(f"delete {what}"):  # outside: errors() makes any HTTP error one line
            try:
                wait_for(poller_of(), f"delete {what}", timeout)
            except ResourceNotFoundError:
                pass

    return delete


def removals(target: AzureTarget, compute: Any, network: Any, machine: dict[str, Any]) -> list[tuple[str, Callable[[], None]]]:
    """What terminate deletes, in that order: the VM, then its OS disk, NIC and public IP."""
    group, timeout = target.resource_group, target.wait_timeout
    vm, disk, nic, ip = machine["name"], machine["disk"], machine["nic"], machine.get("public_ip")
    steps = [
        (f"vm {vm}", deleter(lambda: compute.virtual_machines.begin_delete(group, vm), f"vm {vm}", timeout)),
        (f"disk {disk}", deleter(lambda: compute.disks.begin_delete(group, disk), f"disk {disk}", timeout)),
        (f"nic {nic}", deleter(lambda: network.network_interfaces.begin_delete(group, nic), f"nic {nic}", timeout)),
    ]
    if ip:
        steps.append((f"public ip {ip}", deleter(lambda: network.public_ip_addresses.begin_delete(group, ip), f"public ip {ip}", timeout)))
    return steps


def launch(target: AzureTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    require(target, "resource_group", "location", "subnet")
    manifest = Manifest.load(job.output, name, verb="launch")
    require_first_boot_agent(manifest)
    key = ssh_public_key(target.ssh_key, job.option("ssh_key"), table="targets.azure")
    data = user_data(key, target.cloud_config, limit=64 * 1024, cloud="Azure")
    digest = str(manifest.raw_digest)
    subscription = azc.subscription_of(target)
    location = azc.location_key(target, subscription)
    entry = manifest.cloud_record(TARGET, location)
    if entry is None:
        raise UserError(f"the current image of {name} is not uploaded to {location}", hint=f"run ./build.py upload {name} --target azure first")
    vm = f"{name}-{secrets.token_hex(4)}"
    tags = tags_of(name, digest, vm)
    machine: dict[str, Any] = {
        "name": vm,
        "nic": f"{vm}-nic",
        "public_ip": f"{vm}-ip" if target.public_ip else "",
        "disk": f"{vm}-osdisk",
        "location": location,
        "image": entry["image"],
        "image_digest": digest,
        "launched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    group = target.resource_group
    with prefixed(f"launch {name}"), azc.errors("Azure"):
        azc.sign_in(target)
        compute, network = azc.compute_client(target, subscription), azc.network_client(target, subscription)
        undo = Undo(job.say)
        with job.store.lock(f"azure-vms-{name}"):
            write_machines(job.store, TARGET, name, [*read_machines(job.store, TARGET, name), machine])
        try:
            steps = dict(removals(target, compute, network, machine))
            ip_id = None
            if machine["public_ip"]:
                undo.push(f"public ip {machine['public_ip']}", steps[f"public ip {machine['public_ip']}"])
                with azc.errors(f"create public ip {machine['public_ip']}"):
                    poller = network.public_ip_addresses.begin_create_or_update(group, machine["public_ip"], public_ip_body(target, tags))
                    ip_id = wait_for(poller, f"public ip {machine['public_ip']}", target.wait_timeout).id
            undo.push(f"nic {machine['nic']}", steps[f"nic {machine['nic']}"])
            with azc.errors(f"create nic {machine['nic']}"):
                poller = network.network_interfaces.begin_create_or_update(group, machine["nic"], nic_body(target, tags, ip_id))
                nic = wait_for(poller, f"nic {machine['nic']}", target.wait_timeout)
            body = vm_body(target, vm, str(entry["image"]), nic.id, key, data, tags)
            undo.push(f"disk {machine['disk']}", steps[f"disk {machine['disk']}"])
            undo.push(f"vm {vm}", steps[f"vm {vm}"])
            with azc.errors(f"create vm {vm}"):
                poller = compute.virtual_machines.begin_create_or_update(group, vm, body)
            faults.point("azure.launch")
            job.say(f"{vm} provisioning from image {entry['image']}")
            with azc.errors(f"create vm {vm}"):
                made = wait_for(poller, f"vm {vm}", target.wait_timeout)
            if made.provisioning_state != "Succeeded":
                raise CloudError(f"vm {vm} is {made.provisioning_state}", hint="check vm_size and the quota; the activity log says why")
            address = address_of(network, target, machine, nic)
            undo.commit()
        except BaseException:
            undo.run()
            with job.store.lock(f"azure-vms-{name}"):
                write_machines(job.store, TARGET, name, [m for m in read_machines(job.store, TARGET, name) if m["name"] != vm])
            raise
    machine = {**machine, "id": made.id, "address": address, "summary": f"{vm} running at {location} at {address or 'no address'}"}
    with job.store.lock(f"azure-vms-{name}"):
        write_machines(job.store, TARGET, name, [machine if m["name"] == vm else m for m in read_machines(job.store, TARGET, name)])
    return machine


def address_of(network: Any, target: AzureTarget, machine: dict[str, Any], nic: Any) -> str:
    if machine["public_ip"]:
        with azc.errors(f"public ip {machine['public_ip']}"):
            return str(network.public_ip_addresses.get(target.resource_group, machine["public_ip"]).ip_address or "")
    configs = nic.ip_configurations or []
    return str(configs[0].private_ip_address or "") if configs else ""


def terminate(target: AzureTarget, job: Job) -> list[str]:
    name = job.appliance
    wanted = job.option("instance")
    chosen = [m for m in read_machines(job.store, TARGET, name) if wanted is None or wanted in (m["name"], m.get("id"))]
    if not chosen:
        raise UserError(
            f"no launched VM of {name} is recorded" + (f" as {wanted}" if wanted else ""),
            hint=f"./build.py launch {name} --target azure starts one; resources lists them",
        )
    require(target, "resource_group", "location")
    subscription = azc.subscription_of(target)
    location = azc.location_key(target, subscription)
    elsewhere = sorted({m["location"] for m in chosen if m["location"] != location})
    if elsewhere:
        raise UserError(
            f"the recorded VMs are in {', '.join(elsewhere)}, the settings say {location}", hint="terminate with the settings they were launched with"
        )
    done = []
    with prefixed(f"terminate {name}"), azc.errors("Azure"):
        compute, network = azc.compute_client(target, subscription), azc.network_client(target, subscription)
        for machine in chosen:
            for what, remove in removals(target, compute, network, machine):
                remove()
                job.say(f"deleted {what}")
            done.append(machine["name"])
            with job.store.lock(f"azure-vms-{name}"):
                write_machines(job.store, TARGET, name, [m for m in read_machines(job.store, TARGET, name) if m["name"] != machine["name"]])
    return done
