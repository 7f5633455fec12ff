"""A gallery image version of an uploaded VHD blob, when the settings name a gallery (instead of
a managed image). The image definition is the gallery owner's (publisher, offer, SKU are theirs
to choose): Crust checks that it is Linux, generalized, Hyper-V generation V2, and adds a
version tagged with Crust's tags, named by the time of its upload (YYYY.MMDD.HHMMSS: a later
upload is a later version). A version with the digest that succeeded is reused; one that failed
is replaced."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from crust.build.manifest import Manifest
from crust.cloud.azure import client as azc
from crust.cloud.azure.image import image_tags, wait_for
from crust.cloud.azure.settings import AzureTarget
from crust.cloud.common import Undo
from crust.errors import CloudError, UserError


def version_name(now: dt.datetime) -> str:
    return f"{now.year}.{now.month:02d}{now.day:02d}.{now.hour:02d}{now.minute:02d}{now.second:02d}"


def version_body(target: AzureTarget, manifest: Manifest, digest: str, blob_url: str, account_id: str) -> dict[str, Any]:
    """What PUT .../galleries/G/images/D/versions/V gets."""
    return {
        "location": target.location,
        "tags": image_tags(manifest, digest),
        "properties": {
            "storageProfile": {"osDiskImage": {"source": {"storageAccountId": account_id, "uri": blob_url}, "hostCaching": "ReadWrite"}},
            "publishingProfile": {"targetRegions": [{"name": target.location, "regionalReplicaCount": 1}]},
        },
    }


def check_definition(compute: Any, target: AzureTarget, definition: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    fix = f"az sig image-definition create -g {target.resource_group} -r {target.gallery} -i {definition} --os-type Linux --os-state Generalized --hyper-v-generation V2 ..."
    try:
        found = compute.gallery_images.get(target.resource_group, target.gallery, definition)
    except ResourceNotFoundError:
        raise UserError(f"no image definition {definition} in gallery {target.gallery}", hint=fix) from None
    have = tuple(str(getattr(v, "value", v)) for v in (found.hyper_v_generation, found.os_type, found.os_state))
    have = (have[0], have[1].lower(), have[2].lower())
    if have != ("V2", "linux", "generalized"):
        raise UserError(
            f"image definition {definition} in gallery {target.gallery} is {', '.join(have)}: the appliance needs V2, linux, generalized",
            hint=fix,
        )


def make_version(
    target: AzureTarget,
    compute: Any,
    blob_url: str,
    account_id: str,
    manifest: Manifest,
    digest: str,
    undo: Undo,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The gallery image version (made, or reused): id, name, kind, reused. The definition is
    checked first (check_definition), before anything is sent."""
    group, gallery, definition = target.resource_group, target.gallery, target.gallery_image or manifest.appliance
    versions = compute.gallery_image_versions
    for version in versions.list_by_gallery_image(group, gallery, definition):
        if (version.tags or {}).get(azc.TAG_DIGEST) != digest:
            continue
        if version.provisioning_state == "Succeeded":
            say(f"gallery image version {version.id} already holds this image")
            return {"id": version.id, "name": version.name, "kind": "gallery image version", "reused": True}
        if version.provisioning_state in ("Creating", "Updating"):
            raise CloudError(
                f"gallery image version {version.name} is {version.provisioning_state}: another upload is making it", hint="rerun when it is done"
            )
        wait_for(versions.begin_delete(group, gallery, definition, version.name), f"delete version {version.name}", target.wait_timeout)
        say(f"removed gallery image version {version.name}, left {version.provisioning_state} by an interrupted upload")
    name = version_name(dt.datetime.now(dt.UTC))

    def remove() -> bool:  # False: not there (never made)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            wait_for(versions.begin_delete(group, gallery, definition, name), f"delete version {name}", target.wait_timeout)
        except ResourceNotFoundError:
            return False
        return True

    # Undone before it is asked for: an interrupt during the request leaves no version.
    undo.push(f"gallery image version {name}", azc.guarded(f"delete gallery image version {name}", remove))
    with azc.errors(f"create gallery image version {definition}/{name}"):
        poller = versions.begin_create_or_update(group, gallery, definition, name, version_body(target, manifest, digest, blob_url, account_id))
    with azc.errors(f"create gallery image version {definition}/{name}"):
        made = wait_for(poller, f"gallery image version {name}", target.wait_timeout)
    if made.provisioning_state not in (None, "Succeeded"):
        raise CloudError(f"gallery image version {name} is {made.provisioning_state}", hint="rerun the upload; the activity log says why")
    say(f"made gallery image version {made.id}")
    return {"id": made.id, "name": name, "kind": "gallery image version", "reused": False}
