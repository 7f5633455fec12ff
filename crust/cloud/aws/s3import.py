"""Upload a raw disk image through S3 and EC2 import-snapshot, for accounts that forbid the EBS
direct APIs: an S3 multipart upload (parallel parts), ImportSnapshot with the vmimport role,
then wait for the task. The S3 object is a staging copy: it is deleted whatever happens, and a
failed or interrupted import is cancelled.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from crust.cloud.aws.client import aws_tags, call, wait_until
from crust.errors import CloudError, Problem
from crust.redact import redact

PART_SIZE = 8 * 1024 * 1024  # grown for images over ~78 GiB: S3 allows 10,000 parts


@dataclass
class ImportResult:
    snapshot_id: str
    seconds: float
    bytes_uploaded: int


def object_key(appliance: str, digest: str) -> str:
    return f"crust/{appliance}/{digest}.raw"


def import_params(bucket: str, key: str, description: str, role: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "Description": description,
        "DiskContainer": {"Description": description, "Format": "RAW", "UserBucket": {"S3Bucket": bucket, "S3Key": key}},
        "RoleName": role,
        "ClientToken": str(uuid.uuid4()),
        "TagSpecifications": [{"ResourceType": "import-snapshot-task", "Tags": aws_tags(tags)}],
    }


def put_object(s3: Any, fh: BinaryIO, bucket: str, key: str, workers: int) -> None:
    """S3 multipart upload (parallel parts) of an open file; a failed upload aborts itself."""
    from boto3.exceptions import Boto3Error
    from boto3.s3.transfer import TransferConfig

    part = max(PART_SIZE, -(-os.fstat(fh.fileno()).st_size // 9000))
    config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=part, max_concurrency=workers, use_threads=True)
    try:
        s3.upload_fileobj(fh, bucket, key, Config=config)
    except (Boto3Error, ClientError) as exc:  # S3UploadFailedError wraps the failed part's ClientError
        raise CloudError(
            f"s3 upload on s3://{bucket}/{key} failed: {redact(str(exc))}", hint="check the bucket, its region and the credentials"
        ) from exc


def _check_digest(fh: BinaryIO, expect: str) -> None:
    digest = hashlib.sha256()
    while chunk := fh.read(8 * 1024 * 1024):
        digest.update(chunk)
    fh.seek(0)
    if digest.hexdigest() != expect:
        raise Problem(f"the image's sha256 is {digest.hexdigest()}, the manifest says {expect}", hint="a build replaced the image: rerun the upload")


def delete_object(s3: Any, bucket: str, key: str) -> None:
    call(s3, "delete_object", f"s3://{bucket}/{key}", Bucket=bucket, Key=key)


def import_snapshot(
    ec2: Any,
    s3: Any,
    fh: BinaryIO,
    bucket: str,
    key: str,
    description: str,
    role: str,
    tags: Mapping[str, str],
    workers: int,
    timeout: float,
    on_started: Callable[[str], None],
    say: Callable[[str], None],
    expect_digest: str | None = None,
) -> ImportResult:
    """Upload the open image file to s3://bucket/key, import it as a snapshot, delete the object.
    With expect_digest, the file is hashed first and must match. on_started gets the snapshot id
    as soon as it is known (the caller deletes it on a later failure)."""
    started = time.monotonic()
    task_id: str | None = None
    staged = False
    try:
        if expect_digest:
            _check_digest(fh, expect_digest)
        put_object(s3, fh, bucket, key, workers)
        staged = True
        say(f"uploaded to s3://{bucket}/{key}; importing as a snapshot")
        task = call(ec2, "import_snapshot", f"s3://{bucket}/{key}", **import_params(bucket, key, description, role, tags))
        task_id = str(task["ImportTaskId"])

        def check() -> str | None:
            tasks = call(ec2, "describe_import_snapshot_tasks", task_id or "", ImportTaskIds=[task_id]).get("ImportSnapshotTasks", [])
            detail = tasks[0].get("SnapshotTaskDetail", {}) if tasks else {}
            status = detail.get("Status")
            if status in ("deleting", "deleted") or detail.get("StatusMessage", "").startswith("ClientError"):
                raise CloudError(
                    f"ec2 import-snapshot task {task_id} failed: {detail.get('StatusMessage', status)}",
                    hint="check that the vmimport role can read the bucket, then rerun",
                )
            snapshot = detail.get("SnapshotId")
            return str(snapshot) if status == "completed" and snapshot else None

        snapshot_id = wait_until(f"import-snapshot task {task_id}", check, timeout, first_delay=2.0, max_delay=30.0)
        task_id = None  # finished: nothing to cancel
        on_started(snapshot_id)
    except BaseException:
        if task_id is not None:
            try:
                call(ec2, "cancel_import_task", task_id, ImportTaskId=task_id)
            except Problem as exc:
                say(f"could not cancel import task {task_id}: {exc.one_line()}")
        raise
    finally:
        if staged:
            try:
                delete_object(s3, bucket, key)
            except Problem as exc:
                say(f"could not delete the staging object: {exc.one_line()} (delete s3://{bucket}/{key} by hand)")
    return ImportResult(snapshot_id, time.monotonic() - started, os.fstat(fh.fileno()).st_size)
