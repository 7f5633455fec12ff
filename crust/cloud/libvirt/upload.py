"""Upload an appliance's qcow2 into a libvirt storage pool, once per image digest."""

from __future__ import annotations

import time
from typing import Any

from crust.boot.machine import connect
from crust.build.manifest import Manifest
from crust.cloud.common import Undo, prefixed, qcow2_of, record, require_first_boot_agent
from crust.cloud.libvirt import pool as pools
from crust.cloud.libvirt.settings import LibvirtTarget, volume_name
from crust.cloud.target import Job


def location(target: LibvirtTarget) -> str:
    """The manifest's location key: the host and the pool."""
    return f"{target.uri}#{target.pool}"


def upload(target: LibvirtTarget, job: Job) -> dict[str, Any]:
    name = job.appliance
    manifest = Manifest.load(job.output, name, verb="upload")
    require_first_boot_agent(manifest)
    artifact, path = qcow2_of(manifest)
    digest = str(manifest.raw_digest)
    volume = volume_name(target, manifest, digest)
    with prefixed(f"upload {name}"), pools.libvirt_errors(f"upload {name}"), job.store.lock(f"libvirt-upload-{name}"):
        conn = connect(target.uri)
        try:
            pool = pools.find_pool(conn, target.pool, target.uri, job.say)
            report = _upload_locked(conn, pool, target, job, manifest, artifact, path, volume, digest)
        finally:
            conn.close()
    assert manifest.path is not None
    record(manifest.path, "libvirt", digest, {location(target): report})
    return {"appliance": name, "target": "libvirt", "location": location(target), **report}


def _upload_locked(
    conn: Any, pool: Any, target: LibvirtTarget, job: Job, manifest: Manifest, artifact: Any, path: Any, volume: str, digest: str
) -> dict[str, Any]:
    existing = pools.lookup(pool, volume)
    found = pools.read_record(conn, pool, volume) if existing is not None else None
    if existing is not None and found and found.get("complete") and found.get("qcow2_sha256") == artifact.sha256:
        job.say(f"{volume} in pool {target.pool} already holds this image; nothing sent")
        return {
            "volume": volume,
            "path": existing.path(),
            "qcow2_sha256": artifact.sha256,
            "bytes_sent": 0,
            "holes_skipped": 0,
            "seconds": 0.0,
            "reused": True,
        }
    if existing is not None or pools.lookup(pool, volume + pools.RECORD_SUFFIX) is not None:
        pools.delete_volume(pool, volume)
        pools.delete_volume(pool, volume + pools.RECORD_SUFFIX)
        job.say(f"removed {volume}, left incomplete by an interrupted upload")
    undo = Undo(job.say)
    meta = {"appliance": manifest.appliance, "version": manifest.version, "image_digest": digest, "qcow2_sha256": artifact.sha256}
    try:
        pools.write_record(conn, pool, volume, {**meta, "complete": False})
        undo.push(f"{volume}{pools.RECORD_SUFFIX}", lambda: pools.remove_volume(pool, volume + pools.RECORD_SUFFIX))
        raw = manifest.artifact("raw")
        vol = pools.create_volume(pool, volume, raw.size if raw is not None else artifact.size, "qcow2")  # the disk's size
        undo.push(volume, lambda: pools.remove_volume(pool, volume))
        job.say(f"sending {path.name} ({artifact.size} bytes) to {volume} in pool {target.pool} at {target.uri}")
        started = time.monotonic()
        sent = pools.upload_file(conn, vol, path, fault="libvirt.upload")
        seconds = time.monotonic() - started
        pools.write_record(conn, pool, volume, {**meta, "complete": True})
        undo.commit()
    except BaseException:
        undo.run()
        raise
    vol = pools.lookup(pool, volume)
    return {
        "volume": volume,
        "path": vol.path() if vol is not None else "",
        "qcow2_sha256": artifact.sha256,
        "bytes_sent": sent.data,
        "holes_skipped": sent.holes,
        "seconds": round(seconds, 3),
        "reused": False,
    }


def describe(report: dict[str, Any]) -> list[str]:
    if report.get("reused"):
        return [f"{report['volume']} at {report['location']}: already there (same image), nothing sent"]
    mib = report["bytes_sent"] / 2**20
    rate = mib / report["seconds"] if report["seconds"] else 0.0
    return [
        f"{report['volume']} at {report['location']}: {mib:.1f} MiB sent, {report['holes_skipped'] / 2**20:.1f} MiB of holes skipped, {report['seconds']:.1f} s ({rate:.0f} MiB/s)"
    ]
