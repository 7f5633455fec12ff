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
    """What images.insert gets (the REST resource's fields)."""
    body: dict[str, Any] = {
        "name": image_name(target, manifest, digest),
        "description": f"Crust appliance {manifest.appliance} {manifest.version}, image digest sha256:{digest}, build {manifest.build_id}",
        "labels": crust_labels(target, manifest, digest),
        "raw_disk": {"source": source},
        "guest_os_features": [{"type_": feature} for feature in GUEST_OS_FEATURES],
    }
    if target.family:
        body["family"] = target.family
    return body


def images_with(session: gcc.Session, images: Any, digest: str) -> list[Any]:
    """The project's images labelled with this digest."""
    from google.cloud import compute_v1

    request = compute_v1.ListImagesRequest(project=session.project, filter=f'labels.{gcc.LABEL_DIGEST}="{digest[:63]}"')
    found = images.list(request=request)
    return [image for image in found if digest in image.description]


def delete_image(session: gcc.Session, images: Any, name: str, timeout: float) -> None:
    from google.api_core import exceptions as api

    try:
        images.delete(project=session.project, image=name).result(timeout=timeout)
    except api.NotFound:
        pass


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
    images = gcc.compute_client(session, "ImagesClient")
    for image in images_with(session, images, digest):
        if image.status == "READY":
            job.say(f"image {image.name} already holds this image; nothing sent")
            return {"image": image.name, "object": "", "bytes_sent": 0, "seconds": 0.0, "parts": 0, "reused": True}
        if image.status == "FAILED":
            delete_image(session, images, image.name, target.wait_timeout)
            job.say(f"removed image {image.name}, left FAILED by an earlier upload")
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
        body = image_body(target, manifest, digest, source)
        job.say(f"creating image {body['name']} from {source}")
        from google.cloud import compute_v1

        with gcc.errors(f"images.insert {body['name']}"):
            operation = images.insert(project=session.project, image_resource=compute_v1.Image(**body))
        undo.push(f"image {body['name']}", lambda: delete_image(session, images, body["name"], target.wait_timeout))
        operation.result(timeout=target.wait_timeout)
        if operation.error_code:
            raise CloudError(
                f"images.insert {body['name']}: {operation.error_message}", hint="the image's tar.gz or the project's quota; the operation says which"
            )
        image = images.get(project=session.project, image=body["name"])
        if image.status != "READY":
            raise CloudError(f"image {body['name']} is {image.status} after its creation", hint="rerun the upload")
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
