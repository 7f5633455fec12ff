"""Upload an appliance's qcow2 to Glance, once per image digest.

The image record carries what Nova needs to boot it as built (UEFI on q35, virtio) and Crust's
properties (appliance, version, image digest, build id, the qcow2's sha256). An image with the
digest that is active is reused and nothing is sent; one in another state (an upload killed
before it could clean up) is deleted first. A failed or interrupted upload deletes its image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from crust import faults
from crust.build.manifest import Manifest
from crust.cloud.common import Undo, prefixed, qcow2_of, record, require_first_boot_agent
from crust.cloud.openstack import client as osc
from crust.cloud.openstack.settings import OpenStackTarget, check_for_upload, image_name
from crust.cloud.target import Job
from crust.errors import CloudError

GIB = 1024**3
# States an image of ours is left in by an upload that was killed (an active one with another
# qcow2, or one importing elsewhere, is left alone).
LEFTOVER_STATES = ("queued", "saving", "killed")


class Reading:
    """The qcow2 for the PUT: a file with its length (sent with Content-Length, not chunked);
    the fault point fires once the first block has been read (the upload is under way)."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size, self.count = fh, size, 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.count += len(data)
        if self.count > len(data):
            faults.point("openstack.upload")
        return data

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(1 << 20), b"")


def image_body(target: OpenStackTarget, manifest: Manifest, digest: str, qcow2_sha256: str, disk_bytes: int) -> dict[str, Any]:
    """What POST /v2/images gets: the record, Nova's properties and Crust's."""
    distro = manifest.distribution.split("-")[0] if manifest.distribution else "debian"
    return {
        **dict(target.properties),  # first: what Crust and Glance own below cannot be overridden
        "name": image_name(target, manifest, digest),
        "disk_format": "qcow2",
        "container_format": "bare",
        "visibility": target.visibility,
        "min_disk": target.min_disk or math.ceil(disk_bytes / GIB),
        "min_ram": target.min_ram,
        "hw_firmware_type": "uefi",
        "hw_machine_type": "q35",
        "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio",
        "os_type": "linux",
        "os_distro": distro,
        osc.PROPERTY_APPLIANCE: manifest.appliance,
        osc.PROPERTY_VERSION: manifest.version,
        osc.PROPERTY_DIGEST: digest,
        osc.PROPERTY_BUILD: manifest.build_id,
        osc.PROPERTY_QCOW2: qcow2_sha256,
    }


def images_with(conn: Any, key: str, value: str) -> list[dict[str, Any]]:
    """Every image the project sees whose property KEY is VALUE (Glance filters server-side)."""
    found: list[dict[str, Any]] = []
    url: str | None = "/images"
    params: dict[str, Any] | None = {key: value, "limit": 100, "member_status": "all", "visibility": "all"}  # community ones too
    while url:
        body = osc.json_of(osc.call(f"list images with {key}", conn.image.get, url, params=params))
        found += body.get("images", [])
        next_url = body.get("next")
        url = next_url.split("/v2", 1)[-1] if next_url else None
        params = None
    return found


def delete_image(conn: Any, image_id: str, timeout: float = 60.0) -> None:
    """Delete the image. Right after an interrupted upload Glance may still be ending the broken
    request ("saving"), and refuses (409, 500) until it has: asked again for up to timeout."""

    def deleted() -> bool | None:
        response = conn.image.delete(f"/images/{image_id}", raise_exc=False)
        if response.status_code in (204, 404):
            return True
        if response.status_code in (409, 500, 503):
            return None
        raise osc.http_error(f"delete image {image_id}", response.status_code, osc.error_text(response))

    osc.wait_until(f"image {image_id} deleted", deleted, timeout, first=0.5, most=5.0)


def sync_members(conn: Any, image_id: str, projects: tuple[str, ...], say: Any) -> list[str]:
    """The image is shared with exactly these projects: missing ones are added, ones no longer
    listed are removed. The projects it is shared with after this."""
    listed = osc.json_of(osc.call(f"members of {image_id}", conn.image.get, f"/images/{image_id}/members"))
    for member in listed.get("members", []):
        if member["member_id"] not in projects:
            osc.call(f"unshare {image_id} with {member['member_id']}", conn.image.delete, f"/images/{image_id}/members/{member['member_id']}")
            say(f"{image_id} no longer shared with project {member['member_id']}")
    for project in projects:
        response = conn.image.post(f"/images/{image_id}/members", json={"member": project}, raise_exc=False)
        if response.status_code == 409:
            continue
        if response.status_code >= 400:
            raise osc.http_error(f"share {image_id} with {project}", response.status_code, osc.error_text(response))
        say(f"shared {image_id} with project {project}")
    body = osc.json_of(osc.call(f"members of {image_id}", conn.image.get, f"/images/{image_id}/members"))
    return sorted(m["member_id"] for m in body.get("members", []))


def upload(target: OpenStackTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    check_for_upload(target)
    manifest = Manifest.load(job.output, name, verb="upload")
    require_first_boot_agent(manifest)
    artifact, path = qcow2_of(manifest)
    raw = manifest.artifact("raw")
    digest = str(manifest.raw_digest)
    body = image_body(target, manifest, digest, artifact.sha256, raw.size if raw is not None else artifact.size)
    with prefixed(f"upload {name}"), osc.errors(f"upload {name}"), job.store.lock(f"openstack-upload-{name}"):
        conn = osc.connect(target)
        try:
            location = osc.where(conn)
            report = _upload_locked(conn, target, job, body, path, artifact.size, digest)
        finally:
            conn.close()
    assert manifest.path is not None
    record(manifest.path, "openstack", digest, {location: report})
    return {"appliance": name, "target": "openstack", "location": location, **report}


def _upload_locked(conn: Any, target: OpenStackTarget, job: Job, body: dict[str, Any], path: Any, size: int, digest: str) -> dict[str, Any]:
    for image in images_with(conn, osc.PROPERTY_DIGEST, digest):
        if image.get("status") == "active" and image.get(osc.PROPERTY_QCOW2) == body[osc.PROPERTY_QCOW2]:
            job.say(f"{image['id']} ({image['name']}) already holds this image; nothing sent")
            if image.get("visibility") != target.visibility:
                osc.call(
                    f"visibility of {image['id']}",
                    conn.image.patch,
                    f"/images/{image['id']}",
                    json=[{"op": "replace", "path": "/visibility", "value": target.visibility}],
                    headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
                )
                job.say(f"{image['id']} is now {target.visibility}")
            members = sync_members(conn, image["id"], target.members, job.say) if target.visibility == "shared" else []
            return {"image": image["id"], "name": image["name"], "bytes_sent": 0, "seconds": 0.0, "reused": True, "members": members}
        if image.get("status") in LEFTOVER_STATES:
            delete_image(conn, image["id"])
            job.say(f"removed {image['id']}, left {image.get('status')} by an interrupted upload")
    undo = Undo(job.say)
    try:
        created = osc.json_of(osc.call("create the image record", conn.image.post, "/images", json=body))
        image_id = str(created["id"])
        undo.push(f"image {image_id}", lambda: delete_image(conn, image_id))
        job.say(f"sending {path.name} ({size} bytes) to image {image_id} ({body['name']})")
        started = time.monotonic()
        with open(path, "rb") as fh:
            osc.call(
                f"upload to image {image_id}",
                conn.image.put,
                f"/images/{image_id}/file",
                data=Reading(fh, size),
                headers={"Content-Type": "application/octet-stream"},
            )
        seconds = time.monotonic() - started

        def active() -> dict[str, Any] | None:
            image = osc.json_of(osc.call(f"image {image_id}", conn.image.get, f"/images/{image_id}"))
            if image.get("status") in ("killed", "deleted"):
                raise CloudError(
                    f"image {image_id} went {image['status']} after the upload", hint="rerun the upload; the cloud's Glance log says why"
                )
            return image if image.get("status") == "active" else None

        image = osc.wait_until(f"image {image_id} active", active, target.wait_timeout)
        members = sync_members(conn, image_id, target.members, job.say) if target.visibility == "shared" else []
        undo.commit()
    except BaseException:
        undo.run()
        raise
    return {
        "image": image_id,
        "name": body["name"],
        "bytes_sent": size,
        "seconds": round(seconds, 3),
        "checksum": image.get("os_hash_value") or image.get("checksum") or "",
        "reused": False,
        "members": members,
    }


def describe(report: dict[str, Any]) -> list[str]:
    shared = f", shared with {', '.join(report['members'])}" if report.get("members") else ""
    if report.get("reused"):
        return [f"{report['image']} ({report['name']}) at {report['location']}: already there (same image), nothing sent{shared}"]
    mib = report["bytes_sent"] / 2**20
    rate = mib / report["seconds"] if report["seconds"] else 0.0
    return [
        f"{report['image']} ({report['name']}) at {report['location']}: {mib:.1f} MiB sent in {report['seconds']:.1f} s ({rate:.0f} MiB/s){shared}"
    ]
