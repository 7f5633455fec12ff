"""A recording stand-in for Azure Resource Manager (management.azure.com) for request-shape
tests: PUT makes a resource (a VM is "Creating" until its second look), GET reads or lists,
DELETE removes. Every request is kept (method, path, JSON body). Plus a fake `az` for the SDK's
AzureCliCredential, so that Crust signs in as it would with `az login`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "fake-arm-token-0123456789"


class FakeArm(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ArmHandler)
        self.requests: list[tuple[str, str, Any]] = []
        self.resources: dict[str, dict[str, Any]] = {}
        self.looks: dict[str, int] = {}
        self.refuse: str = ""  # a resource type whose PUT is refused (403), e.g. "virtualMachines"
        self.tokens: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, path: str, resource: dict[str, Any]) -> None:
        """A resource that is there before the test (e.g. a gallery's image definition)."""
        self.resources[path.lower()] = {**resource, "id": path, "name": path.rsplit("/", 1)[1]}

    def writes(self, method: str = "PUT") -> list[tuple[str, Any]]:
        return [(path, body) for m, path, body in self.requests if m == method]


def kind_of(path: str) -> str:
    """The resource type of /subscriptions/S/resourceGroups/G/providers/P/TYPE[/NAME]."""
    parts = path.split("/")
    return parts[7] if len(parts) > 7 else ""


class ArmHandler(BaseHTTPRequestHandler):
    server: FakeArm

    def log_message(self, *_args: Any) -> None:
        pass

    def reply(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def path_only(self) -> str:
        self.server.tokens.add(self.headers.get("Authorization", ""))
        return self.path.split("?")[0].rstrip("/")

    def not_found(self) -> None:
        self.reply(404, {"error": {"code": "ResourceNotFound", "message": "The resource was not found."}})

    def do_PUT(self) -> None:
        path = self.path_only()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("PUT", path, body))
        kind = kind_of(path)
        if kind == self.server.refuse:
            self.reply(
                403, {"error": {"code": "QuotaExceeded", "message": f"Operation could not be completed as it results in exceeding quota for {kind}."}}
            )
            return
        name = path.rsplit("/", 1)[1]
        resource = {**body, "id": path, "name": name, "type": kind}
        properties = dict(body.get("properties", {}))
        properties["provisioningState"] = "Creating" if kind == "virtualMachines" else "Succeeded"
        if kind == "networkInterfaces":
            for config in properties.get("ipConfigurations", []):
                config["id"] = f"{path}/ipConfigurations/{config['name']}"
                config.setdefault("properties", {})["privateIPAddress"] = "10.0.0.4"
        if kind == "publicIPAddresses":
            properties["ipAddress"] = "203.0.113.7"
        resource["properties"] = properties
        self.server.resources[path.lower()] = resource
        self.reply(201, resource)

    def do_GET(self) -> None:
        path = self.path_only()
        self.server.requests.append(("GET", path, None))
        resource = self.server.resources.get(path.lower())
        if resource is not None:
            looks = self.server.looks[path] = self.server.looks.get(path, 0) + 1
            if looks >= 1 and resource["properties"]["provisioningState"] == "Creating":
                resource["properties"]["provisioningState"] = "Succeeded"
            self.reply(200, resource)
            return
        prefix = path.lower() + "/"
        if len(path.split("/providers/", 1)[-1].split("/")) % 2 == 0:  # NS/TYPE[/NAME/TYPE]: a collection
            listed = [r for p, r in self.server.resources.items() if p.startswith(prefix) and "/" not in p[len(prefix) :]]
            self.reply(200, {"value": listed})
            return
        self.not_found()

    def do_DELETE(self) -> None:
        path = self.path_only()
        self.server.requests.append(("DELETE", path, None))
        gone = self.server.resources.pop(path.lower(), None)
        self.reply(200 if gone is not None else 204)


@contextmanager
def fake_arm() -> Iterator[FakeArm]:
    server = FakeArm()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def write_fake_az(bin_dir: Path) -> Path:
    """An `az` that answers `az account get-access-token` as a signed-in Azure CLI does."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    az = bin_dir / "az"
    token = json.dumps({"accessToken": TOKEN, "expires_on": int(time.time()) + 3600, "tokenType": "Bearer"})
    az.write_text(f"#!/bin/sh\ncat <<'EOF'\n{token}\nEOF\n", encoding="utf-8")
    az.chmod(0o755)
    return az
