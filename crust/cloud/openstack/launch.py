"""Launch and terminate servers of an uploaded appliance on OpenStack (Nova).

A server boots the image Crust recorded for this cloud and region, with the flavor and network
of the target, a config drive (cloud-init's ConfigDrive datasource needs no metadata service),
the #cloud-config user data (the target's cloud_config plus the SSH key) and Crust's metadata
(appliance, image digest). `launch` waits until it is ACTIVE; a failure or Ctrl-C deletes it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from pathlib import Path
from typing import Any

from crust import faults
from crust.build.manifest import Manifest
from crust.build.store import Store, write_atomic
from crust.cloud.common import Undo, prefixed, require_first_boot_agent, ssh_public_key, user_data
from crust.cloud.openstack import client as osc
from crust.cloud.openstack.settings import OpenStackTarget
from crust.cloud.target import Job
from crust.errors import CloudError, UserError

UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
USER_DATA_LIMIT = 65535  # Nova's limit on the base64 of user data is 65535 bytes


def state_path(store: Store, name: str) -> Path:
    return store.root / "state" / "openstack" / f"{name}.json"


def read_state(store: Store, name: str) -> list[dict[str, Any]]:
    path = state_path(store, name)
    if not path.is_file():
        return []
    servers: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("servers", [])
    return servers


def write_state(store: Store, name: str, servers: list[dict[str, Any]]) -> None:
    path = state_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"appliance": name, "servers": servers}, indent=2, sort_keys=True))


def find_flavor(conn: Any, wanted: str) -> str:
    """The flavor's id, from its id or its name."""
    if not wanted:
        raise UserError("no flavor for the server", hint='set flavor = "NAME" in [targets.openstack] (openstack flavor list shows them)')
    direct = conn.compute.get(f"/flavors/{wanted}", raise_exc=False)
    if direct.status_code == 200:
        return str(direct.json()["flavor"]["id"])
    listed = osc.json_of(osc.call("list flavors", conn.compute.get, "/flavors"))
    for flavor in listed.get("flavors", []):
        if flavor.get("name") == wanted:
            return str(flavor["id"])
    raise UserError(f"no flavor {wanted!r} in this cloud", hint="set flavor in [targets.openstack] to one openstack flavor list shows")


def find_network(conn: Any, wanted: str) -> str | None:
    """The network's id (an id is taken as it is; a name is looked up in Neutron)."""
    if not wanted:
        return None
    if UUID_RE.fullmatch(wanted):
        return wanted
    found = osc.call(f"find network {wanted}", conn.network.find_network, wanted, ignore_missing=True)
    if found is None:
        raise UserError(f"no network {wanted!r} in this project", hint="set network in [targets.openstack] to one openstack network list shows")
    return str(found.id)


def server_body(
    target: OpenStackTarget, name: str, image_id: str, flavor_id: str, network_id: str | None, data: str, digest: str, appliance: str
) -> dict[str, Any]:
    encoded = base64.b64encode(data.encode()).decode()
    if len(encoded) > USER_DATA_LIMIT:
        raise UserError(f"the user data is {len(encoded)} bytes in base64, over Nova's {USER_DATA_LIMIT}", hint="shorten cloud_config")
    server: dict[str, Any] = {
        "name": name,
        "imageRef": image_id,
        "flavorRef": flavor_id,
        "user_data": encoded,
        "config_drive": True,
        "metadata": {osc.PROPERTY_APPLIANCE: appliance, osc.PROPERTY_DIGEST: digest},
    }
    if network_id is not None:
        server["networks"] = [{"uuid": network_id}]
    if target.security_groups:
        server["security_groups"] = [{"name": g} for g in target.security_groups]
    return {"server": server}


def get_server(conn: Any, server_id: str) -> dict[str, Any] | None:
    response = conn.compute.get(f"/servers/{server_id}", raise_exc=False)
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise osc.http_error(f"server {server_id}", response.status_code, osc.error_text(response))
    server: dict[str, Any] = response.json()["server"]
    return server


def delete_server(conn: Any, server_id: str, timeout: float) -> None:
    response = conn.compute.delete(f"/servers/{server_id}", raise_exc=False)
    if response.status_code not in (202, 204, 404):
        raise osc.http_error(f"delete server {server_id}", response.status_code, osc.error_text(response))
    osc.wait_until(f"server {server_id} deleted", lambda: True if get_server(conn, server_id) is None else None, timeout)


def addresses(server: dict[str, Any]) -> list[str]:
    return [a["addr"] for net in server.get("addresses", {}).values() for a in net if a.get("version", 4) == 4]


def launch(target: OpenStackTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    manifest = Manifest.load(job.output, name, verb="launch")
    require_first_boot_agent(manifest)
    key = ssh_public_key(target.ssh_key, job.option("ssh_key"), table="targets.openstack")
    data = user_data(key, target.cloud_config, limit=48 * 1024, cloud="Nova")
    digest = str(manifest.raw_digest)
    server_name = f"{name}-{secrets.token_hex(4)}"
    with prefixed(f"launch {name}"), osc.errors(f"launch {name}"):
        conn = osc.connect(target)
        undo = Undo(job.say)
        try:
            location = osc.where(conn)
            entry = manifest.cloud_record("openstack", location)
            if entry is None or entry.get("image_digest") != digest:
                raise UserError(
                    f"the current image of {name} is not uploaded to {location}", hint=f"run ./build.py upload {name} --target openstack first"
                )
            flavor_id = find_flavor(conn, target.flavor)
            network_id = find_network(conn, target.network)
            body = server_body(target, server_name, str(entry["image"]), flavor_id, network_id, data, digest, name)
            created = osc.json_of(osc.call("create the server", conn.compute.post, "/servers", json=body))["server"]
            server_id = str(created["id"])
            undo.push(f"server {server_id}", lambda: delete_server(conn, server_id, target.wait_timeout))
            record: dict[str, Any] = {
                "id": server_id,
                "name": server_name,
                "location": location,
                "image": entry["image"],
                "image_digest": digest,
                "launched": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            with job.store.lock(f"openstack-servers-{name}"):
                write_state(job.store, name, [*read_state(job.store, name), record])
            faults.point("openstack.launch")
            job.say(f"{server_id} ({server_name}) building from image {entry['image']}")

            def active() -> dict[str, Any] | None:
                server = get_server(conn, server_id)
                if server is None:
                    raise CloudError(f"server {server_id} disappeared while building", hint="the cloud's Nova log says why")
                if server.get("status") == "ERROR":
                    fault = server.get("fault", {}).get("message", "no fault message")
                    raise CloudError(f"server {server_id} went to ERROR: {fault}", hint="check the flavor against min_disk/min_ram, and the quota")
                return server if server.get("status") == "ACTIVE" else None

            running = osc.wait_until(f"server {server_id} ACTIVE", active, target.wait_timeout)
            undo.commit()
        except BaseException:
            undo.run()
            with job.store.lock(f"openstack-servers-{name}"):
                write_state(job.store, name, [s for s in read_state(job.store, name) if s.get("name") != server_name])
            raise
        finally:
            conn.close()
    found = addresses(running)
    record = {**record, "addresses": found, "address": found[0] if found else ""}
    record["summary"] = f"{server_id} ({server_name}) ACTIVE at {location} at {record['address'] or 'no address'}"
    with job.store.lock(f"openstack-servers-{name}"):
        write_state(job.store, name, [record if s["id"] == server_id else s for s in read_state(job.store, name)])
    return record


def terminate(target: OpenStackTarget, job: Job) -> list[str]:
    name = job.appliance
    wanted = job.option("instance")
    recorded = read_state(job.store, name)
    chosen = [s for s in recorded if wanted is None or wanted in (s["id"], s.get("name"))]
    if not chosen:
        raise UserError(
            f"no launched server of {name} is recorded" + (f" as {wanted}" if wanted else ""),
            hint=f"./build.py launch {name} --target openstack starts one; resources lists them",
        )
    done = []
    with prefixed(f"terminate {name}"), osc.errors(f"terminate {name}"):
        conn = osc.connect(target)
        try:
            location = osc.where(conn)
            elsewhere = sorted({s["location"] for s in chosen if s.get("location", location) != location})
            if elsewhere:
                raise UserError(
                    f"the recorded servers are in {', '.join(elsewhere)}, this connection is {location}",
                    hint="terminate with the cloud and region they were launched in (cloud, region, --os-cloud)",
                )
            for server in chosen:
                delete_server(conn, server["id"], target.wait_timeout)
                job.say(f"{server['id']} deleted")
                done.append(server["id"])
                with job.store.lock(f"openstack-servers-{name}"):
                    write_state(job.store, name, [s for s in read_state(job.store, name) if s["id"] != server["id"]])
        finally:
            conn.close()
    return done
