"""Credentials, clients and errors of the Google Cloud target (errors as one line, never a
credential or a token).

Credentials come from google-auth's usual chain (google.auth.default: GOOGLE_APPLICATION_CREDENTIALS,
gcloud's application-default login, the metadata server). A service given an endpoint (an
emulator, a test stand-in) gets anonymous credentials instead, and then the project must be set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from crust import __version__
from crust import redact as redaction
from crust.cloud import common
from crust.cloud.gcp.settings import GcpTarget
from crust.errors import CloudError, UserError
from crust.redact import redact

T = TypeVar("T")
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
COMPUTE_API = "https://compute.googleapis.com"
REQUEST_TIMEOUT = 120.0
NO_CREDENTIALS_HINT = "run gcloud auth application-default login, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
LABEL_APPLIANCE = "crust-appliance"
LABEL_DIGEST = "crust-digest"  # the image digest's first 63 hex digits (a label value's limit)
LABEL_BUILD = "crust-build"
META_APPLIANCE = "crust-appliance"  # object metadata: the appliance (parts carry it too)
META_PART_OF = "crust-part-of"  # a part's metadata: the object it is composed into
META_DIGEST = "crust-image-digest"  # object metadata: the raw image's sha256
META_SHA256 = "crust-gce-sha256"  # the tar.gz's sha256: the object is complete and this very file
META_CRC32C = "crust-crc32c"  # the crc32c Crust computed while sending, checked against the server's


@dataclass(frozen=True)
class Session:
    """What every call needs: the project, and credentials for each service."""

    project: str
    storage_credentials: Any
    compute_credentials: Any
    storage_endpoint: str
    compute_endpoint: str


def storage_endpoint(target: GcpTarget) -> str:
    host = target.storage_endpoint or os.environ.get("STORAGE_EMULATOR_HOST", "")
    if host and "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/")


def connect(target: GcpTarget, need_storage: bool = True, need_compute: bool = True) -> Session:
    """The project and credentials; anonymous for a service given an endpoint."""
    from google.auth.credentials import AnonymousCredentials

    storage_at, compute_at = storage_endpoint(target), target.compute_endpoint
    anonymous = (not need_storage or bool(storage_at)) and (not need_compute or bool(compute_at))
    credentials: Any = None
    project = target.project
    if not anonymous:
        import google.auth
        from google.auth import exceptions as auth_errors

        try:
            credentials, found = google.auth.default(scopes=SCOPES)
        except auth_errors.DefaultCredentialsError as exc:
            raise UserError(f"no Google credentials: {first_line(exc)}", hint=NO_CREDENTIALS_HINT) from None
        project = project or (found or "")
        learn_tokens(credentials)
    if not project:
        raise UserError("no Google Cloud project", file=target.source, hint='set project = "ID" in [targets.gcp] (or GOOGLE_CLOUD_PROJECT)')
    return Session(
        project=project,
        storage_credentials=AnonymousCredentials() if storage_at else credentials,
        compute_credentials=AnonymousCredentials() if compute_at else credentials,
        storage_endpoint=storage_at,
        compute_endpoint=compute_at,
    )


def learn_tokens(credentials: Any) -> None:
    """Every access token the credentials get from now on is redacted from what Crust prints
    (google-auth refreshes them as calls need; none is ever printed on purpose)."""
    refresh = credentials.refresh

    def refreshed(request: Any) -> None:
        refresh(request)
        token = getattr(credentials, "token", None)
        if token:
            redaction.add({str(token)})

    credentials.refresh = refreshed


def storage_client(session: Session) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.cloud import storage

    options = ClientOptions(api_endpoint=session.storage_endpoint) if session.storage_endpoint else None
    return storage.Client(project=session.project, credentials=session.storage_credentials, client_options=options, client_info=client_info())


class Compute:
    """Compute Engine's REST API (v1) for the session's project, through google-auth's
    AuthorizedSession: the JSON resources as the API documents them, at the endpoint set (a
    stand-in) or Google's. (google-cloud-compute would cost ~2.5 s of imports per command.)"""

    def __init__(self, session: Session) -> None:
        from google.auth.transport.requests import AuthorizedSession

        self.http = AuthorizedSession(session.compute_credentials)
        self.http.headers["User-Agent"] = f"crust/{__version__}"
        self.base = f"{session.compute_endpoint or COMPUTE_API}/compute/v1/projects/{session.project}"

    def call(
        self,
        what: str,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON answer; an error answer is one line naming what was asked (404: None when missing_ok)."""
        with errors(what):
            response = self.http.request(method, self.base + path, json=body, params=params or None, timeout=REQUEST_TIMEOUT)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise http_error(what, response.status_code, error_text(response))
        return response.json() if response.content else {}

    def items(self, what: str, path: str, **params: str) -> Iterator[Any]:
        """Every item of a list, page by page (an aggregated list's as well)."""
        token = ""
        while True:
            page = self.call(what, "GET", path, params={**params, **({"pageToken": token} if token else {})})
            listed = page.get("items", [])
            if isinstance(listed, dict):  # aggregated: {"zones/Z": {"instances": [...]}}
                for scoped in listed.values():
                    yield from next((v for k, v in scoped.items() if k != "warning"), [])
            else:
                yield from listed
            token = page.get("nextPageToken", "")
            if not token:
                return

    def wait(self, what: str, operation: Mapping[str, Any], timeout: float) -> None:
        """Until the operation is DONE; its error as one line."""
        zone = str(operation.get("zone", "")).rsplit("/", 1)[-1]
        path = f"/zones/{zone}/operations/{operation['name']}" if zone else f"/global/operations/{operation['name']}"

        def done() -> Any | None:
            state = self.call(what, "GET", path)
            return state if state.get("status") == "DONE" else None

        state = operation if operation.get("status") == "DONE" else wait_until(what, done, timeout)
        failures = state.get("error", {}).get("errors", [])
        if failures or state.get("httpErrorStatusCode", 200) >= 400:
            text = "; ".join(str(f.get("message", f.get("code", ""))) for f in failures) or str(state.get("httpErrorMessage", ""))
            raise http_error(what, state.get("httpErrorStatusCode"), text[:300])


def error_text(response: Any) -> str:
    """The message of an error answer: {"error": {"message"}}, else its first line."""
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        if message:
            return " ".join(redact(str(message)).split())[:300]
    except ValueError:
        pass
    lines = [line.strip() for line in redact(str(response.text)).splitlines() if line.strip()]
    return (lines[0] if lines else f"HTTP {response.status_code}")[:300]


def client_info() -> Any:
    from google.api_core.client_info import ClientInfo

    return ClientInfo(user_agent=f"crust/{__version__}")


def first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def errors(what: str) -> Iterator[None]:
    """A google-auth, API or transport error inside becomes one line naming what was asked."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_errors
    from google.resumable_media import common as media

    try:
        yield
    except auth_errors.DefaultCredentialsError as exc:
        raise UserError(f"no Google credentials: {first_line(exc)}", hint=NO_CREDENTIALS_HINT) from None
    except auth_errors.RefreshError as exc:
        raise UserError(f"{what}: Google refused the credentials ({first_line(exc)})", hint=NO_CREDENTIALS_HINT) from None
    except (api.Unauthenticated, api.PermissionDenied) as exc:
        raise UserError(f"{what}: HTTP {exc.code}: {message_of(exc)}", hint="the credentials' account needs a role that allows it") from None
    except api.GoogleAPICallError as exc:
        raise http_error(what, exc.code, message_of(exc)) from None
    except media.DataCorruption as exc:
        raise CloudError(f"{what}: the bytes stored differ from the bytes sent ({first_line(exc)})", hint="rerun the upload") from None
    except media.InvalidResponse as exc:
        status = getattr(exc.response, "status_code", None)
        raise http_error(what, status, first_line(exc)) from None
    except requests.RequestException as exc:
        raise CloudError(f"{what}: {type(exc).__name__}", hint="check the network and the endpoints") from None
    except (auth_errors.TransportError, api.GoogleAPIError) as exc:  # no token (offline), retries ran out
        raise CloudError(f"{what}: {message_of(exc)}", hint="check the network and the endpoints") from None


def message_of(exc: Any) -> str:
    text = redact(str(getattr(exc, "message", "") or exc))
    return " ".join(text.split())[:300]


def http_error(what: str, status: int | None, text: str) -> CloudError:
    hints = {
        400: "the request was refused as it is; the message says which field",
        403: "the project's quota, or the account's role, does not allow it",
        404: "it is gone, or the project cannot see it",
        409: "it exists already, or is in another state; rerun",
        412: "another upload changed it meanwhile; rerun",
        429: "over a quota or rate; rerun later",
    }
    return CloudError(f"{what}: HTTP {status}: {text}", hint=hints.get(status or 0, "rerun; the operation's error says more"))


def wait_until(what: str, check: Callable[[], T | None], timeout: float, first: float = 0.5, most: float = 10.0) -> T:
    return common.wait_until(what, check, timeout, "targets.gcp", first, most)
