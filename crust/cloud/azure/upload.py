"""Upload an appliance's fixed VHD to Azure, once per image digest.

The VHD goes to a page blob named by the image digest (crust/cloud/azure/pageblob.py: only its
data, in parallel, each page range with its MD5); then a managed image (Hyper-V generation V2,
Linux, generalized) is made from the blob, tagged with the digest. A complete blob and an image
with the digest are reused and nothing is sent. A failed or interrupted upload deletes the blob
and the image it made.
"""

from __future__ import annotations

from typing import Any

from crust import faults
from crust.build.manifest import Manifest
from crust.cloud.azure import client as azc
from crust.cloud.azure.gallery import check_definition, make_version
from crust.cloud.azure.image import get_image, make_image
from crust.cloud.azure.pageblob import Sent, delete_blob, mark_complete, open_blob, send_pages
from crust.cloud.azure.settings import AzureTarget, image_name, require
from crust.cloud.common import Undo, artifact_of, prefixed, record, require_first_boot_agent
from crust.cloud.target import Job
from crust.errors import UserError

MIB = 1024 * 1024


def vhd_of(manifest: Manifest) -> tuple[Any, Any]:
    """The vhd artifact and its file: fixed, a whole number of MiB plus its 512-byte footer."""
    artifact, path = artifact_of(manifest, "vhd")
    if (artifact.size - 512) % MIB:
        raise UserError(f"{path} is not a fixed VHD of whole MiB", hint=f"rebuild: ./build.py build {manifest.appliance} --format vhd")
    return artifact, path


def blob_metadata(manifest: Manifest, digest: str) -> dict[str, str]:
    return {azc.TAG_APPLIANCE: manifest.appliance, azc.TAG_VERSION: manifest.version, azc.TAG_DIGEST: digest, azc.TAG_BUILD: manifest.build_id}


def upload(target: AzureTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    require(target, "resource_group", "location")
    manifest = Manifest.load(job.output, name, verb="upload")
    require_first_boot_agent(manifest)
    artifact, path = vhd_of(manifest)
    digest = str(manifest.raw_digest)
    image = image_name(target, manifest, digest)
    subscription = azc.subscription_of(target)
    location = azc.location_key(target, subscription)
    with prefixed(f"upload {name}"), azc.errors("Azure"), job.store.lock(f"azure-upload-{name}"):
        azc.sign_in(target)
        container = azc.container_client(target)
        compute = azc.compute_client(target, subscription)
        if target.gallery:
            with azc.errors(f"gallery {target.gallery}"):
                check_definition(compute, target, target.gallery_image or name)
        report = _upload_locked(target, job, container, compute, subscription, manifest, path, artifact.size, digest, image)
    assert manifest.path is not None
    record(manifest.path, "azure", digest, {location: report})
    return {"appliance": name, "target": "azure", "location": location, **report}


def _upload_locked(
    target: AzureTarget, job: Job, container: Any, compute: Any, subscription: str, manifest: Manifest, path: Any, size: int, digest: str, image: str
) -> dict[str, Any]:
    metadata = blob_metadata(manifest, digest)
    if not target.gallery:
        # The image first: once it exists the blob is not needed (an owner may delete it to save
        # its cost), and nothing is sent again.
        with azc.errors(f"image {image}"):
            found = get_image(compute, target, image)
        if found is not None and (found.tags or {}).get(azc.TAG_DIGEST) == digest and found.provisioning_state == "Succeeded":
            job.say(f"image {found.id} already holds this image; nothing sent")
            url = str(container.get_blob_client(f"{digest}.vhd").url).split("?", 1)[0]
            kept = {"blob": url, "image": found.id, "name": image, "kind": "managed image"}
            return {**kept, "bytes_sent": 0, "chunks_sent": 0, "chunks_skipped": 0, "seconds": 0.0, "reused": True}
    undo = Undo(job.say)
    try:
        with azc.errors(f"blob {container.container_name}/{digest}.vhd"):
            blob, complete = open_blob(container, f"{digest}.vhd", size, digest, metadata, job.say)
            url = str(blob.url).split("?", 1)[0]  # never a SAS
            if complete:
                sent = Sent(0, 0, 0, 0.0)
                job.say(f"blob {blob.blob_name} already holds this image; nothing sent")
            else:
                undo.push(f"blob {blob.blob_name}", azc.guarded(f"delete blob {blob.blob_name}", lambda: delete_blob(blob)))
                job.say(f"sending the data of {path.name} ({size} bytes) to blob {url}")
                sent = send_pages(blob, path, target.workers, on_first=lambda: faults.point("azure.upload"))
                mark_complete(blob, metadata, digest)
        if target.gallery:
            account = f"/subscriptions/{subscription}/resourceGroups/{target.resource_group}/providers/Microsoft.Storage/storageAccounts/{container.account_name}"
            made = make_version(target, compute, url, account, manifest, digest, undo, job.say)
        else:
            made = make_image(target, compute, image, url, manifest, digest, undo, job.say)
        undo.commit()
    except BaseException:
        undo.run()
        raise
    return {
        "blob": url,
        "image": made["id"],
        "name": made["name"],
        "kind": made["kind"],
        "bytes_sent": sent.bytes_sent,
        "chunks_sent": sent.chunks_sent,
        "chunks_skipped": sent.chunks_skipped,
        "seconds": round(sent.seconds, 3),
        "reused": sent.bytes_sent == 0 and complete and made["reused"],
    }


def describe(report: dict[str, Any]) -> list[str]:
    where = f"{report['image']} at {report['location']}"
    if report.get("reused"):
        return [f"{where}: already there (same image), nothing sent"]
    mib = report["bytes_sent"] / 2**20
    rate = mib / report["seconds"] if report["seconds"] else 0.0
    return [f"{where}: {mib:.1f} MiB of data sent in {report['seconds']:.1f} s ({rate:.0f} MiB/s), {report['chunks_skipped']} zero chunks skipped"]
