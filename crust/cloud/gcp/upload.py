"""Upload an appliance to Compute Engine, once per image digest: its gce tar.gz into the bucket
(crust.cloud.gcp.bucket), then an image made from it (images.insert, rawDisk.source gs://...).

The image boots as built: UEFI only (a UKI on the ESP), virtio-scsi with multiqueue and gVNIC
(virtio_scsi is in the initramfs, gve loads from the root). Its labels carry the appliance and
the digest (a label value holds 63 characters: the digest's first 63 hex digits), its description
the whole digest. A READY image with the digest is reused and nothing is sent; one that FAILED is
deleted first. A failed or interrupted upload deletes the image and the object it made.
"""

from __future__ import annotations

import re
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.common import Undo, prefixed, record, require_first_boot_agent
from crust.cloud.gcp import bucket as gcs
from crust.cloud.gcp import client as gcc
from crust.cloud.gcp.settings import GcpTarget, check_for_upload, image_name
from crust.cloud.target import Job
from crust.errors import CloudError, UserError

GUEST_OS_FEATURES = ("UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC")
MIB = 1024 * 1024


def label_value(text: str) -> str:
    """text as a label value: lower-case letters, digits, _ and -, at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def crust_labels(target: GcpTarget, manifest: Manifest, digest: str) -> dict[str, str]:
    return {
        **dict(target.labels),
        gcc.LABEL_APPLIANCE: label_value(manifest.appliance),
        gcc.LABEL_DIGEST: digest[:63],
        gcc.LABEL_BUILD: label_value(manifest.build_id),
    }


def gce_of(manifest: Manifest) -> tuple[Any, Any]:
    """The gce artifact the manifest records, and its file (checked against its size)."""
    artifact = manifest.artifact("gce")
    name = manifest.appliance
    if artifact is None:
        raise UserError(
            f"{manifest.path}: no gce artifact recorded", hint=f'add "gce" to image.formats of {name}, or ./build.py build {name} --format gce'
        )
    path = manifest.located(artifact)
    if not path.is_file() or path.stat().st_size != artifact.size:
        raise UserError(f"{name}: {path} is missing or not the size the manifest says", hint=f"rebuild: ./build.py build {name} --format gce")
    return artifact, path


def image_body(target: GcpTarget, manifest: Manifest, digest: str, source: str) -> dict[str, Any]:
    """What images.insert gets (the REST resource)."""
    body: dict[str, Any] = {
        "name": image_name(target, manifest, digest),
        "description": f"Crust appliance {manifest.appliance} {manifest.version}, image digest sha256:{digest}, build {manifest.build_id}",
        "labels": crust_labels(target, manifest, digest),
        "rawDisk": {"source": source},
        "guestOsFeatures": [{"type": feature} for feature in GUEST_OS_FEATURES],
    }
    if target.family:
        body["family"] = target.family
    return body


def images_with(compute: gcc.Compute, label: str, value: str) -> list[dict[str, Any]]:
    """The project's images with this label value."""
    return list(compute.items(f"list images with {label}", "/global/images", filter=f'labels.{label}="{value}"'))


def delete_image(compute: gcc.Compute, name: str, timeout: float) -> bool:
    """Delete it and wait; False when it was not there."""
    operation = compute.call(f"delete image {name}", "DELETE", f"/global/images/{name}", missing_ok=True)
    if operation is None:
        return False
    compute.wait(f"delete image {name}", operation, timeout)
    return True


def upload(target: GcpTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    check_for_upload(target)
    manifest = Manifest.load(job.output, name, verb="upload")
    require_first_boot_agent(manifest)
    artifact, path = gce_of(manifest)
    digest = str(manifest.raw_digest)
    image_name(target, manifest, digest)  # a bad name pattern is refused before anything is sent
    with prefixed(f"upload {name}"), gcc.errors("Google Cloud"), job.store.lock(f"gcp-upload-{name}"):
        session = gcc.connect(target)
        report = _upload_locked(session, target, job, manifest, artifact, path, digest)
    assert manifest.path is not None
    record(manifest.path, "gcp", digest, {session.project: report})
    return {"appliance": name, "target": "gcp", "location": session.project, **report}


def _upload_locked(session: gcc.Session, target: GcpTarget, job: Job, manifest: Manifest, artifact: Any, path: Any, digest: str) -> dict[str, Any]:
    compute = gcc.Compute(session)
    for image in images_with(compute, gcc.LABEL_DIGEST, digest[:63]):
        if digest not in image.get("description", ""):
            continue
        if image.get("status") == "READY":
            job.say(f"image {image['name']} already holds this image; nothing sent")
            return {"image": image["name"], "object": "", "bytes_sent": 0, "seconds": 0.0, "parts": 0, "reused": True}
        if image.get("status") == "FAILED":
            delete_image(compute, image["name"], target.wait_timeout)
            job.say(f"removed image {image['name']}, left FAILED by an earlier upload")
    storage = gcc.storage_client(session)
    bucket = storage.bucket(target.bucket)
    object_name = f"{target.prefix}{digest}.tar.gz"
    source = f"gs://{target.bucket}/{object_name}"
    undo = Undo(job.say)
    try:
        blob = gcs.existing(bucket, object_name)
        if blob is not None and gcs.complete(blob, artifact.sha256, artifact.size):
            job.say(f"{source} already holds {path.name}; nothing sent")
            sent = gcs.Sent(0, 0.0, 0)
        else:
            metadata = {
                gcc.META_APPLIANCE: manifest.appliance,
                gcc.META_DIGEST: digest,
                gcc.META_SHA256: artifact.sha256,
                gcc.META_CRC32C: gcs.crc32c_of(path),
            }
            if gcs.delete_parts(bucket, object_name):
                job.say(f"removed the parts of {source} an interrupted upload left")
            undo.push(source, lambda: gcs.delete_quietly(bucket, object_name))
            job.say(f"sending {path.name} ({artifact.size} bytes) to {source}")
            sent = gcs.send(bucket, object_name, path, metadata, target.composite_threshold * MIB, target.composite_parts, job.say)
        # rawDisk.source in the form the Compute API documents (gs:// is what people read).
        body = image_body(target, manifest, digest, f"https://storage.googleapis.com/{target.bucket}/{object_name}")
        job.say(f"creating image {body['name']} from {source}")
        what = f"images.insert {body['name']}"
        # Undone before it is asked for: an interrupt during the request leaves no image.
        undo.push(f"image {body['name']}", lambda: delete_image(compute, body["name"], target.wait_timeout))
        operation = compute.call(what, "POST", "/global/images", body)
        compute.wait(what, operation, target.wait_timeout)
        image = compute.call(f"image {body['name']}", "GET", f"/global/images/{body['name']}")
        if image.get("status") != "READY":
            raise CloudError(f"image {body['name']} is {image.get('status')} after its creation", hint="rerun the upload")
        undo.commit()
    except BaseException:
        undo.run()
        raise
    return {
        "image": body["name"],
        "object": source,
        "bytes_sent": sent.bytes_sent,
        "seconds": round(sent.seconds, 3),
        "parts": sent.parts,
        "reused": False,
    }


def describe(report: dict[str, Any]) -> list[str]:
    if report.get("reused"):
        return [f"image {report['image']} in {report['location']}: already there (same image), nothing sent"]
    mib = report["bytes_sent"] / MIB
    rate = mib / report["seconds"] if report["seconds"] else 0.0
    how = f" in {report['parts']} parallel parts" if report.get("parts") else ""
    return [
        f"image {report['image']} in {report['location']} from {report['object']}: {mib:.1f} MiB sent{how} in {report['seconds']:.1f} s ({rate:.0f} MiB/s)"
    ]
