"""The managed image of an uploaded VHD blob: Hyper-V generation V2 (the appliance boots UEFI),
Linux, generalized (cloud-init makes each VM its own), tagged with Crust's tags. An image of the
same name with the digest that succeeded is reused; one that failed is replaced."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.azure import client as azc
from crust.cloud.azure.settings import AzureTarget
from crust.cloud.common import Undo
from crust.errors import CloudError, UserError


def image_tags(manifest: Manifest, digest: str) -> dict[str, str]:
    return {azc.TAG_APPLIANCE: manifest.appliance, azc.TAG_VERSION: manifest.version, azc.TAG_DIGEST: digest, azc.TAG_BUILD: manifest.build_id}


def image_body(target: AzureTarget, manifest: Manifest, digest: str, blob_url: str) -> dict[str, Any]:
    """What PUT .../images/NAME gets."""
    return {
        "location": target.location,
        "tags": image_tags(manifest, digest),
        "properties": {
            "hyperVGeneration": "V2",
            "storageProfile": {"osDisk": {"osType": "Linux", "osState": "Generalized", "blobUri": blob_url, "caching": "ReadWrite"}},
        },
    }


def get_image(compute: Any, target: AzureTarget, name: str) -> Any | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return compute.images.get(target.resource_group, name)
    except ResourceNotFoundError:
        return None


def wait_for(poller: Any, what: str, timeout: float) -> Any:
    """The poller's result, or a one-line error after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not poller.done():
        poller.wait(min(5.0, max(0.1, deadline - time.monotonic())))
        if time.monotonic() > deadline and not poller.done():
            raise CloudError(f"{what} did not finish in {timeout:.0f} s", hint="raise wait_timeout in [targets.azure]")
    return poller.result()


def delete_image(compute: Any, target: AzureTarget, name: str) -> bool:
    """Delete the image and wait; False when it was not there (never made: undone before it was
    asked for)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        wait_for(compute.images.begin_delete(target.resource_group, name), f"delete image {name}", target.wait_timeout)
    except ResourceNotFoundError:
        return False
    return True


def make_image(
    target: AzureTarget, compute: Any, name: str, blob_url: str, manifest: Manifest, digest: str, undo: Undo, say: Callable[[str], None]
) -> dict[str, Any]:
    """The managed image (made, or reused): id, name, kind, reused."""
    found = get_image(compute, target, name)
    if found is not None:
        tags = found.tags or {}
        if tags.get(azc.TAG_DIGEST) != digest:
            raise UserError(
                f"image {name} in {target.resource_group} holds another image (digest {tags.get(azc.TAG_DIGEST, 'none')})",
                hint="change name in [targets.azure], or delete that image",
            )
        if found.provisioning_state == "Succeeded":
            say(f"image {found.id} already holds this image")
            return {"id": found.id, "name": name, "kind": "managed image", "reused": True}
        if found.provisioning_state in ("Creating", "Updating"):
            raise CloudError(f"image {name} is {found.provisioning_state}: another upload is making it", hint="rerun when it is done")
        delete_image(compute, target, name)
        say(f"removed image {name}, left {found.provisioning_state} by an interrupted upload")
    # Undone before it is asked for: an interrupt during the request leaves no image.
    undo.push(f"image {name}", azc.guarded(f"delete image {name}", lambda: delete_image(compute, target, name)))
    with azc.errors(f"create image {name}"):
        poller = compute.images.begin_create_or_update(target.resource_group, name, image_body(target, manifest, digest, blob_url))
    with azc.errors(f"create image {name}"):
        made = wait_for(poller, f"image {name}", target.wait_timeout)
    if made.provisioning_state not in (None, "Succeeded"):
        raise CloudError(f"image {name} is {made.provisioning_state}", hint="rerun the upload; the activity log says why")
    say(f"made image {made.id}")
    return {"id": made.id, "name": name, "kind": "managed image", "reused": False}
