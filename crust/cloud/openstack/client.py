"""openstacksdk connections and calls, with errors as one line (never a credential)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from crust import __version__
from crust.cloud import common
from crust.cloud.openstack.settings import OpenStackTarget
from crust.errors import CloudError, UserError

T = TypeVar("T")
TAG = "crust_"  # prefix of the properties and metadata keys Crust sets
PROPERTY_APPLIANCE = "crust_appliance"
PROPERTY_VERSION = "crust_version"
PROPERTY_DIGEST = "crust_image_digest"
PROPERTY_BUILD = "crust_build_id"
PROPERTY_QCOW2 = "crust_qcow2_sha256"
NO_CREDENTIALS_HINT = "name a cloud of clouds.yaml (cloud = in [targets.openstack], or OS_CLOUD), or set OS_AUTH_URL and the other OS_* variables"


def where(conn: Any) -> str:
    """The manifest's location key: the cloud and the region the connection really uses
    (clouds.yaml's name, or "envvars" for OS_*; the region from the settings or the cloud's)."""
    return f"{conn.config.name}:{conn.config.region_name or 'default'}"


def connect(target: OpenStackTarget) -> Any:
    """A connection as openstacksdk configures it (clouds.yaml, OS_* variables)."""
    import openstack
    from openstack import exceptions

    try:
        conn = call(
            "the cloud's configuration",
            openstack.connect,
            cloud=target.cloud or None,
            region_name=target.region or None,
            app_name="crust",
            app_version=__version__,
        )
    except exceptions.ConfigException as exc:  # e.g. a cloud clouds.yaml does not name
        raise UserError(f"OpenStack configuration: {first_line(exc)}", hint=NO_CREDENTIALS_HINT) from None
    call("the cloud's configuration", conn.config.get_session)  # the auth plugin and its options, before any call
    return conn


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs); an SDK or HTTP error, or an error response, becomes one line naming
    what was asked."""
    with errors(what):
        result = fn(*args, **kwargs)
    status = getattr(result, "status_code", None)
    if isinstance(status, int) and status >= 400:  # the SDK's adapters return error responses
        raise http_error(what, status, error_text(result))
    return result


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """An SDK, keystoneauth or HTTP error inside becomes one line naming what was asked."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions

    try:
        yield
    except (ksa.MissingRequiredOptions, ksa.auth_plugins.MissingAuthPlugin, exceptions.ConfigException) as exc:
        raise UserError(f"OpenStack credentials: {first_line(exc)}", hint=NO_CREDENTIALS_HINT) from None
    except ksa.Unauthorized as exc:
        raise UserError(f"{what}: the cloud refused the credentials ({first_line(exc)})", hint="check clouds.yaml or the OS_* variables") from None
    except ksa.HttpError as exc:
        raise http_error(what, exc.http_status, first_line(exc)) from None
    except exceptions.HttpException as exc:
        raise http_error(what, exc.status_code, first_line(exc)) from None
    except (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.EndpointNotFound, ksa.DiscoveryFailure, exceptions.SDKException) as exc:
        raise CloudError(f"{what}: {first_line(exc)}", hint="check the cloud's endpoints and the network") from None


def error_text(response: Any) -> str:
    """The message of an error response: Nova's {"kind": {"message"}}, else Glance's text."""
    try:
        body = response.json()
        if isinstance(body, dict) and body:
            inner = next(iter(body.values()))
            if isinstance(inner, dict) and inner.get("message"):
                return str(inner["message"])[:300]
    except ValueError:
        pass
    lines = [line.strip() for line in str(response.text).splitlines() if line.strip()]
    return " ".join(lines[1:2] or lines[:1])[:300] or f"HTTP {response.status_code}"


def http_error(what: str, status: int | None, text: str) -> CloudError:
    hints = {
        403: "the project's role does not allow it (public images need an admin)",
        404: "it is gone, or the project cannot see it",
        409: "it is in another state; rerun",
        413: "over the project's quota",
    }
    return CloudError(f"{what}: HTTP {status}: {text}", hint=hints.get(status or 0, "rerun; the cloud's logs say more"))


def json_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


def wait_until(what: str, check: Callable[[], T | None], timeout: float, first: float = 1.0, most: float = 10.0) -> T:
    return common.wait_until(what, check, timeout, "targets.openstack", first, most)
