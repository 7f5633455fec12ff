"""AWS plumbing: clients with explicit timeouts and a bounded retry budget, one-line errors,
waiting, and the AMI operations (find by image digest, register, tag, copy, share).

Credentials come from boto3's standard chain (profile, environment, instance role) and are
never printed: error messages pass through crust/redact.py, which also learns the resolved keys. Endpoints come from boto3 too
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_EBS``...), so tests need no hook in this code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from crust import __version__
from crust import redact as redaction
from crust.build.manifest import Manifest
from crust.cloud.aws.settings import AwsTarget
from crust.errors import CloudError, Problem, UserError
from crust.redact import redact

T = TypeVar("T")

ARCHITECTURE = "x86_64"  # Crust builds amd64 images (linux-image-cloud-amd64, x64 UEFI stub)
ROOT_DEVICE = "/dev/xvda"
TAG_APPLIANCE = "crust:appliance"
TAG_VERSION = "crust:version"
TAG_DIGEST = "crust:image-digest"
TAG_BUILD = "crust:build-id"


AUTH_CODES = {
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "RequestExpired",
}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Blocked"}
THROTTLE_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "RequestThrottledException"}


class Aws:
    """boto3 clients for one run, cached per (service, region)."""

    def __init__(self, target: AwsTarget, session: Any = None) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        try:
            self.session = session if session is not None else boto3.session.Session()
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
            raise UserError(f"AWS configuration: {redact(str(exc))}", hint="fix AWS_PROFILE or ~/.aws/config") from exc
        self.target = target
        self.config = Config(
            connect_timeout=target.connect_timeout,
            read_timeout=target.read_timeout,
            retries={"mode": "standard", "max_attempts": target.max_attempts},
            max_pool_connections=max(10, target.workers + 2),
            user_agent_extra=f"crust/{__version__}",
        )
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def check_credentials(self) -> None:
        """Fail before any call when the standard chain finds no credentials."""
        from botocore.exceptions import BotoCoreError

        try:
            credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except BotoCoreError as exc:
            raise UserError(f"AWS credentials: {redact(str(exc))}", hint="check the profile, the environment or the instance role") from exc
        if frozen is None or not frozen.access_key:
            raise UserError(
                "no AWS credentials found",
                hint="configure them the usual boto3 way: AWS_PROFILE / ~/.aws/credentials, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role",
            )
        redaction.add({s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s})

    def region(self, override: str | None) -> str:
        region: str | None = override or self.target.region or self.session.region_name
        if not region:
            raise UserError("no AWS region", hint="set region in [targets.aws] (or targets.toml), pass --region, or set AWS_DEFAULT_REGION")
        return region

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self.session.client(service, region_name=region, config=self.config)
            return self._clients[key]

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def ebs(self, region: str) -> Any:
        return self.client("ebs", region)

    def s3(self, region: str) -> Any:
        return self.client("s3", region)


def describe_error(service: str, operation: str, resource: str, exc: BaseException) -> Problem:
    """One line: which call, which resource, what AWS said, what to do. Credentials, region
    and permissions are the user's to fix (UserError, exit 2); throttling, the network,
    timeouts and anything else AWS answers are failures (CloudError, exit 1), reported once
    botocore's bounded retries are spent."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    what = f"{service} {operation} on {resource} failed"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error"))
        message = redact(str(error.get("Message") or "no message"))
        kind: type[Problem] = CloudError
        if code in AUTH_CODES:
            kind, hint = UserError, "check the AWS credentials (profile, environment, instance role) and the region"
        elif code in DENIED_CODES:
            kind, hint = UserError, f"the credentials need permission for {service}:{operation}"
            if service == "ebs":
                hint += ", or use --method s3-import where EBS direct APIs are forbidden"
        elif code in THROTTLE_CODES:
            hint = "AWS throttled the requests (retried until the retry budget was spent): rerun later or with fewer --workers"
        elif code == "InvalidAMIName.Duplicate":
            kind, hint = UserError, "an AMI of that name exists without this image's digest tag: deregister it or change the name pattern"
        else:
            hint = "check the credentials and the region, then rerun (a rerun reuses what is complete)"
        return kind(f"{what}: {code}: {message}", hint=hint)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UserError(
            f"{what}: no usable AWS credentials", hint="configure a profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role"
        )
    if isinstance(exc, NoRegionError):
        return UserError(f"{what}: no region", hint="set region in [targets.aws] or pass --region")
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionError)):
        return CloudError(f"{what}: {redact(str(exc))}", hint="check the network, the region and AWS_ENDPOINT_URL, then rerun")
    if isinstance(exc, ResponseParserError):  # e.g. an HTML error page: an endpoint without this call
        first = redact(str(exc).splitlines()[0] if str(exc) else "")[:200]
        return CloudError(f"{what}: unreadable response from the endpoint: {first}", hint="check AWS_ENDPOINT_URL and the region, then rerun")
    return CloudError(f"{what}: {type(exc).__name__}: {redact(str(exc))[:500]}", hint="rerun; --debug shows the traceback")


def call(client: Any, method: str, resource: str, **params: Any) -> dict[str, Any]:
    """client.method(**params); an AWS or botocore error becomes one Problem line."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        result: dict[str, Any] = getattr(client, method)(**params)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        service = client.meta.service_model.service_name
        operation = client.meta.method_to_api_mapping.get(method, method)
        raise describe_error(service, operation, resource, exc) from exc
    return result


def error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a Problem raised by ``call`` (None otherwise)."""
    from botocore.exceptions import ClientError

    cause = exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", "")) or None
    return None


def wait_until(what: str, check: Callable[[], T | None], timeout: float, first_delay: float = 1.0, max_delay: float = 15.0) -> T:
    """Poll check() until it returns a value; delays grow from first_delay to max_delay."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() + delay > deadline:
            raise CloudError(
                f"timed out after {timeout:.0f} s waiting for {what}",
                hint="raise wait_timeout in the target, or rerun later (a rerun reuses what exists)",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, max_delay)


def aws_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def crust_tags(manifest: Manifest, digest: str, target: AwsTarget, name: str) -> dict[str, str]:
    """The tags of every snapshot, AMI and instance Crust makes: the user's, then Crust's own."""
    return {
        "Name": name,
        **target.tags,
        TAG_APPLIANCE: manifest.appliance,
        TAG_VERSION: manifest.version,
        TAG_DIGEST: digest,
        TAG_BUILD: manifest.build_id,
    }


def _digest_filter(digest: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{TAG_DIGEST}", "Values": [digest]}]


def find_image(ec2: Any, digest: str) -> dict[str, Any] | None:
    """This account's newest usable AMI tagged with the image digest, if any."""
    images = call(ec2, "describe_images", f"images tagged {TAG_DIGEST}={digest[:12]}...", Owners=["self"], Filters=_digest_filter(digest)).get(
        "Images", []
    )
    usable = [i for i in images if i.get("State") in ("available", "pending")]
    return max(usable, key=lambda i: i.get("CreationDate", ""), default=None)


def find_snapshots(ec2: Any, digest: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in pages(ec2, "describe_snapshots", f"snapshots tagged {TAG_DIGEST}", OwnerIds=["self"], Filters=_digest_filter(digest)):
        found.extend(page.get("Snapshots", []))
    return found


def pages(client: Any, method: str, resource: str, **params: Any) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        page = call(client, method, resource, **params, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken")
        if not token:
            return


def image_snapshot(image: Mapping[str, Any]) -> str | None:
    for mapping in image.get("BlockDeviceMappings", []):
        snapshot = mapping.get("Ebs", {}).get("SnapshotId")
        if snapshot:
            return str(snapshot)
    return None


def wait_snapshot(ec2: Any, snapshot_id: str, timeout: float) -> None:
    def check() -> bool | None:
        snapshots = call(ec2, "describe_snapshots", snapshot_id, SnapshotIds=[snapshot_id]).get("Snapshots", [])
        state = snapshots[0].get("State") if snapshots else None
        if state == "error":
            raise CloudError(f"snapshot {snapshot_id} failed: {snapshots[0].get('StateMessage', 'state error')}", hint="rerun the upload")
        return True if state == "completed" else None

    wait_until(f"snapshot {snapshot_id} to complete", check, timeout)


def wait_image(ec2: Any, image_id: str, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        images = call(ec2, "describe_images", image_id, ImageIds=[image_id]).get("Images", [])
        state = images[0].get("State") if images else None
        if state in ("failed", "error", "invalid", "deregistered"):
            reason = images[0].get("StateReason", {}).get("Message", state)
            raise CloudError(f"AMI {image_id} is {state}: {reason}", hint="rerun the upload")
        return images[0] if state == "available" else None

    return wait_until(f"AMI {image_id} to be available", check, timeout)


def register_params(name: str, description: str, snapshot_id: str, volume_gib: int, tags: Mapping[str, str]) -> dict[str, Any]:
    """RegisterImage's request: UEFI, ENA, x86_64, gp3 root deleted with the instance, IMDSv2."""
    return {
        "Name": name,
        "Description": description,
        "Architecture": ARCHITECTURE,
        "VirtualizationType": "hvm",
        "BootMode": "uefi",
        "EnaSupport": True,
        "ImdsSupport": "v2.0",
        "RootDeviceName": ROOT_DEVICE,
        "BlockDeviceMappings": [
            {
                "DeviceName": ROOT_DEVICE,
                "Ebs": {"SnapshotId": snapshot_id, "VolumeType": "gp3", "VolumeSize": volume_gib, "DeleteOnTermination": True},
            }
        ],
        "TagSpecifications": [{"ResourceType": "image", "Tags": aws_tags(tags)}],
    }


def register_image(ec2: Any, params: Mapping[str, Any]) -> str:
    """RegisterImage. Its TagSpecifications tag atomically on AWS; not every endpoint honours
    them, so the caller tags again with CreateTags (after arranging to deregister on failure)."""
    snapshot = params["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    return str(call(ec2, "register_image", f"snapshot {snapshot}", **params)["ImageId"])


def tag(ec2: Any, resources: list[str], tags: Mapping[str, str]) -> None:
    call(ec2, "create_tags", ", ".join(resources), Resources=resources, Tags=aws_tags(tags))


def copy_image(ec2_dest: Any, source_region: str, image_id: str, name: str, description: str, tags: Mapping[str, str]) -> str:
    copy = call(
        ec2_dest,
        "copy_image",
        f"{image_id} from {source_region}",
        SourceImageId=image_id,
        SourceRegion=source_region,
        Name=name,
        Description=description,
        TagSpecifications=[{"ResourceType": "image", "Tags": aws_tags(tags)}],
    )
    copy_id = str(copy["ImageId"])
    tag(ec2_dest, [copy_id], tags)
    return copy_id


def share(ec2: Any, image_id: str, snapshot_id: str | None, accounts: tuple[str, ...]) -> None:
    """Launch permission on the AMI and create-volume permission on its snapshot (to copy it)."""
    if not accounts:
        return
    call(ec2, "modify_image_attribute", image_id, ImageId=image_id, LaunchPermission={"Add": [{"UserId": a} for a in accounts]})
    if snapshot_id:
        call(
            ec2,
            "modify_snapshot_attribute",
            snapshot_id,
            SnapshotId=snapshot_id,
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=list(accounts),
        )


def delete_snapshot(ec2: Any, snapshot_id: str) -> None:
    call(ec2, "delete_snapshot", snapshot_id, SnapshotId=snapshot_id)


def deregister_image(ec2: Any, image_id: str) -> None:
    call(ec2, "deregister_image", image_id, ImageId=image_id)
