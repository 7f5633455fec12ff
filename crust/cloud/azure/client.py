"""Azure SDK clients and calls, with errors as one line (never a key, a connection string or a
SAS: every one Crust reads is registered with crust.redact before any call)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from crust import __version__
from crust.cloud.azure.settings import LOOPBACK, PUBLIC_ARM, AzureTarget
from crust.errors import CloudError, UserError
from crust.redact import redact, register

TAG = "crust_"  # prefix of the tags and blob metadata Crust sets
TAG_APPLIANCE = "crust_appliance"
TAG_VERSION = "crust_version"
TAG_DIGEST = "crust_image_digest"
TAG_BUILD = "crust_build_id"
TAG_COMPLETE = "crust_complete"  # blob metadata, written last: the digest of a complete VHD
CONNECTION_ENV = "AZURE_STORAGE_CONNECTION_STRING"
KEY_ENV = "AZURE_STORAGE_KEY"
NO_LOGIN_HINT = "sign in with az login, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or use a managed identity)"
NO_STORAGE_HINT = f"set {CONNECTION_ENV}, or storage_account in [targets.azure] with {KEY_ENV} or an Azure sign-in"
SECRET_PARTS = re.compile(r"(?:AccountKey|SharedAccessSignature|sig)=([^;&\s]+)", re.IGNORECASE)


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


def register_storage_secrets(connection: str) -> None:
    register(connection)
    for part in SECRET_PARTS.findall(connection):
        register(part)


def location_key(target: AzureTarget, subscription: str) -> str:
    """The manifest's location key: subscription, resource group and location."""
    return f"{subscription}/{target.resource_group}/{target.location}"


def subscription_of(target: AzureTarget) -> str:
    subscription = target.subscription or os.environ.get("AZURE_SUBSCRIPTION_ID", "")
    if not subscription:
        raise UserError("no Azure subscription", file=target.source, hint="set subscription in [targets.azure] or AZURE_SUBSCRIPTION_ID")
    return subscription


@functools.cache
def credential() -> Any:
    """The SDK's default chain: environment, workload or managed identity, az/azd/PowerShell
    (one per process: its tokens are cached). The SDK's own log lines stay quiet: what fails
    is reported once, as an error."""
    from azure.identity import DefaultAzureCredential

    sdk_log = logging.getLogger("azure")
    sdk_log.addHandler(logging.NullHandler())
    sdk_log.propagate = False
    return DefaultAzureCredential()


def scope_of(target: AzureTarget) -> str:
    endpoint = target.management_endpoint if urlsplit(target.management_endpoint).scheme == "https" else PUBLIC_ARM
    return f"{endpoint}/.default"


def sign_in(target: AzureTarget) -> None:
    """A management token now, before anything is made or sent: no credentials is one line."""
    with errors("Azure sign-in"):
        credential().get_token(scope_of(target))


def management_options(target: AzureTarget) -> dict[str, Any]:
    options: dict[str, Any] = {
        "base_url": target.management_endpoint,
        "credential_scopes": [scope_of(target)],
        "user_agent": f"crust/{__version__}",
        "polling_interval": 2,
    }
    if urlsplit(target.management_endpoint).scheme == "http":  # a stand-in on loopback: the settings allow http:// nowhere else
        options["authentication_policy"] = loopback_policy(credential(), scope_of(target))
    return options


def loopback_policy(cred: Any, scope: str) -> Any:
    """ARM's bearer token policy, letting the token go to an http:// stand-in on loopback."""
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class LoopbackPolicy(ARMChallengeAuthenticationPolicy):
        def on_request(self, request: Any) -> None:
            if urlsplit(request.http_request.url).hostname in LOOPBACK:
                request.context["enforce_https"] = False
            super().on_request(request)

    return LoopbackPolicy(cred, scope)


def compute_client(target: AzureTarget, subscription: str) -> Any:
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(credential(), subscription, **management_options(target))


def network_client(target: AzureTarget, subscription: str) -> Any:
    from azure.mgmt.network import NetworkManagementClient

    return NetworkManagementClient(credential(), subscription, **management_options(target))


def container_client(target: AzureTarget) -> Any:
    """The blob container, from AZURE_STORAGE_CONNECTION_STRING, else the storage account with
    AZURE_STORAGE_KEY or the default credential."""
    from azure.storage.blob import BlobServiceClient

    options: dict[str, Any] = {"user_agent": f"crust/{__version__}", "max_page_size": 4 * 1024 * 1024}
    connection = os.environ.get(CONNECTION_ENV, "")
    if connection:
        register_storage_secrets(connection)
        with errors("the storage connection string"):
            service = BlobServiceClient.from_connection_string(connection, **options)
    elif target.storage_account:
        key = os.environ.get(KEY_ENV, "")
        if key:
            register(key)
        auth: Any = {"account_name": target.storage_account, "account_key": key} if key else credential()
        service = BlobServiceClient(f"https://{target.storage_account}.blob.core.windows.net", credential=auth, **options)
    else:
        raise UserError("no storage account for the VHD blob", file=target.source, hint=NO_STORAGE_HINT)
    return service.get_container_client(target.container)


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """An Azure SDK or HTTP error inside becomes one line naming what was asked."""
    from azure.core import exceptions as az
    from azure.identity import CredentialUnavailableError

    try:
        yield
    except CredentialUnavailableError:
        raise UserError(f"{what}: no Azure credentials", hint=NO_LOGIN_HINT) from None
    except az.ClientAuthenticationError as exc:
        if "credential" in type(exc).__name__.lower() or exc.status_code is None:
            raise UserError(f"{what}: no usable Azure credentials ({first_line(exc)})", hint=NO_LOGIN_HINT) from None
        raise UserError(f"{what}: Azure refused the credentials: HTTP {exc.status_code}", hint=NO_LOGIN_HINT) from None
    except az.HttpResponseError as exc:
        raise http_error(what, exc) from None
    except (az.ServiceRequestError, az.ServiceResponseError) as exc:
        raise CloudError(f"{what}: {first_line(exc)}", hint="check the endpoint and the network") from None
    except ValueError as exc:  # e.g. a malformed connection string
        if "connection string" in str(exc).lower() or "account" in str(exc).lower():
            raise UserError(f"{what}: {first_line(exc)}", hint=NO_STORAGE_HINT) from None
        raise


def guarded(what: str, action: Callable[[], object]) -> Callable[[], object]:
    """action, its Azure errors one line naming what (for the undo stack: never an SDK text)."""

    def run() -> object:
        with errors(what):
            return action()

    return run


def http_error(what: str, exc: Any) -> CloudError:
    code = getattr(getattr(exc, "error", None), "code", None) or getattr(exc, "error_code", None) or ""
    message = getattr(getattr(exc, "error", None), "message", None) or first_line(exc)
    text = redact(" ".join(str(message).split()))[:300]
    hints = {
        403: "the identity's role does not allow it (e.g. Contributor on the resource group)",
        404: "it is gone, or the subscription, resource group or container is wrong",
        409: "it is in another state; rerun",
    }
    status = getattr(exc, "status_code", None)
    return CloudError(f"{what}: HTTP {status}{f' {code}' if code else ''}: {text}", hint=hints.get(status or 0, "rerun; the activity log says more"))
