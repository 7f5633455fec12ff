"""The S3 calls of the shared cache: a client, a streamed parallel multipart upload, a
conditional put, a parallel download, listing. Errors are one line (crust/cloud/aws/client.py's
describe_error: credentials never printed)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from crust import __version__, faults
from crust import redact as redaction
from crust.cache.config import CacheConfig
from crust.cloud.aws.client import call, describe_error
from crust.errors import CloudError, UserError
from crust.redact import redact

PART_BYTES = 16 * 1024 * 1024
WORKERS = 4


@dataclass(frozen=True)
class Uploaded:
    sha256: str
    size: int


def make_client(config: CacheConfig) -> Any:
    """An S3 client (boto3's credential chain, the configured or boto3's endpoint)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.session.Session()
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as exc:
        raise UserError(f"shared cache {config.url}: AWS configuration: {redact(str(exc))}", hint="fix AWS_PROFILE or ~/.aws/config") from exc
    if frozen is not None:
        redaction.add({s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s})
    settings = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=WORKERS + 4,
        user_agent_extra=f"crust/{__version__}",
    )
    return session.client("s3", endpoint_url=config.endpoint, config=settings)


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=WORKERS, use_threads=True)


class HashingReader:
    """The read end of the producer's pipe, hashed as the upload reads it. At its end the
    producer must have finished without error: a truncated stream is never taken as whole."""

    def __init__(self, source: BinaryIO, finished: Callable[[], None]) -> None:
        self.source = source
        self.finished = finished
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, amount: int = -1) -> bytes:
        data = self.source.read(amount)
        if not data and amount != 0:
            self.finished()
        self.hash.update(data)
        self.size += len(data)
        if self.size > PART_BYTES:  # a part is on its way: CRUST_FAULT=cache.upload:SIGKILL kills the push here
            faults.point("cache.upload")
        return data


def upload_stream(client: Any, bucket: str, key: str, produce: Callable[[BinaryIO], None]) -> Uploaded:
    """Upload what produce(out) writes (in a thread, through a pipe) as one object: multipart,
    parts in parallel. The object appears only when the upload completes; on any failure the
    multipart upload is aborted (s3transfer does) and nothing is visible."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            with open(write_fd, "wb") as out:
                produce(out)
        except BaseException as exc:  # reported by the reader at the end of the stream
            errors.append(exc)

    thread = threading.Thread(target=producer, name="crust-cache-pack", daemon=True)

    def finished() -> None:
        thread.join()
        if errors:
            raise errors[0]

    with open(read_fd, "rb") as pipe:
        reader = HashingReader(pipe, finished)
        thread.start()
        try:
            client.upload_fileobj(reader, bucket, key, Config=transfer_config())
        except S3UploadFailedError as exc:
            raise CloudError(f"s3 upload to s3://{bucket}/{key} failed: {redact(str(exc))}", hint="check the network and the credentials") from exc
        except (ClientError, BotoCoreError) as exc:
            raise describe_error("s3", "CreateMultipartUpload", f"s3://{bucket}/{key}", exc) from exc
        finally:
            pipe.close()  # a producer still writing gets EPIPE and stops
            thread.join()
    return Uploaded(reader.hash.hexdigest(), reader.size)


def put_if_absent(client: Any, bucket: str, key: str, body: bytes) -> bool:
    """Create the object only if no object has that key (If-None-Match: *); False if one has."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/json")
    except BotoCoreError as exc:
        raise describe_error("s3", "PutObject", f"s3://{bucket}/{key}", exc) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
            return False
        raise describe_error("s3", "PutObject", f"s3://{bucket}/{key}", exc) from exc
    return True


def get_small(client: Any, bucket: str, key: str) -> bytes | None:
    """A small object's bytes; None if there is none."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_object(Bucket=bucket, Key=key)
        body: bytes = response["Body"].read(1024 * 1024)
    except BotoCoreError as exc:
        raise describe_error("s3", "GetObject", f"s3://{bucket}/{key}", exc) from exc
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
            return None
        raise describe_error("s3", "GetObject", f"s3://{bucket}/{key}", exc) from exc
    return body


def download(client: Any, bucket: str, key: str, dest: Path) -> None:
    """The object into dest (ranged GETs in parallel)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.download_file(bucket, key, str(dest), Config=transfer_config())
    except (ClientError, BotoCoreError) as exc:
        raise describe_error("s3", "GetObject", f"s3://{bucket}/{key}", exc) from exc


def delete(client: Any, bucket: str, key: str) -> None:
    call(client, "delete_object", f"s3://{bucket}/{key}", Bucket=bucket, Key=key)


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: dt.datetime


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[Listed]:
    """Every object under prefix: its key, size and last modification time."""
    token: dict[str, str] = {}
    while True:
        page = call(client, "list_objects_v2", f"s3://{bucket}/{prefix}", Bucket=bucket, Prefix=prefix, **token)
        for item in page.get("Contents", []):
            yield Listed(str(item["Key"]), int(item["Size"]), item["LastModified"])
        if not page.get("IsTruncated"):
            return
        token = {"ContinuationToken": str(page["NextContinuationToken"])}


def unfinished_uploads(client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, str, dt.datetime]]:
    """(key, upload id, started) of every multipart upload under prefix not completed nor aborted."""
    markers: dict[str, str] = {}
    while True:
        page = call(client, "list_multipart_uploads", f"s3://{bucket}/{prefix}", Bucket=bucket, Prefix=prefix, **markers)
        for item in page.get("Uploads", []):
            yield str(item["Key"]), str(item["UploadId"]), item["Initiated"]
        if not page.get("IsTruncated"):
            return
        markers = {"KeyMarker": str(page["NextKeyMarker"]), "UploadIdMarker": str(page["NextUploadIdMarker"])}


def abort_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    call(client, "abort_multipart_upload", f"s3://{bucket}/{key}", Bucket=bucket, Key=key, UploadId=upload_id)
