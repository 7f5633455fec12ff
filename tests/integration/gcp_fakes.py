"""A recording stand-in for compute.googleapis.com (the REST API google-cloud-compute speaks):
images and instances of one project, operations, filters by label. Used by tests/integration/test_gcp.py
and bench/upload_gcp.py."""

from __future__ import annotations

import json
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROJECT = "crust-test-project"
ZONE = "europe-west1-b"


class FakeCompute(ThreadingHTTPServer):
    """Images and instances of one project; operations DONE on their first look, instances
    RUNNING on their second; every request recorded (method, path, query, JSON body)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ComputeHandler)
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.images: dict[str, dict[str, Any]] = {}
        self.instances: dict[str, dict[str, Any]] = {}
        self.looks: dict[str, int] = {}
        self.refuse: str = ""  # "images" or "instances": their insert answers 403

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posts(self, kind: str) -> list[Any]:
        return [body for method, path, _, body in self.requests if method == "POST" and path.endswith(f"/{kind}")]

    def deletes(self) -> list[str]:
        return [path for method, path, _, _ in self.requests if method == "DELETE"]


def matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The one filter shape Crust sends: labels.KEY="VALUE"."""
    for text in query.get("filter", []):
        found = re.fullmatch(r'labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"', text.strip())
        assert found, f"unexpected filter {text!r}"
        if resource.get("labels", {}).get(found[1]) != found[2]:
            return False
    return True


class ComputeHandler(BaseHTTPRequestHandler):
    server: FakeCompute

    def log_message(self, *_args: Any) -> None:
        pass

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, method: str) -> tuple[str, dict[str, list[str]], Any]:
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = parts.path.removeprefix(f"/compute/v1/projects/{PROJECT}")
        query = urllib.parse.parse_qs(parts.query)
        self.server.requests.append((method, path, query, body))
        return path, query, body

    def operation(self, name: str, scope: str) -> dict[str, Any]:
        return {"name": name, "status": "RUNNING", "kind": "compute#operation", **({"zone": scope} if scope else {})}

    def not_found(self, what: str) -> None:
        self.reply(404, {"error": {"code": 404, "message": f"The resource '{what}' was not found", "errors": []}})

    def do_GET(self) -> None:
        path, query, _ = self.record("GET")
        if path == "/global/images":
            self.reply(200, {"items": [i for i in self.server.images.values() if matches(i, query)]})
        elif path.startswith("/global/images/"):
            image = self.server.images.get(path.rsplit("/", 1)[1])
            self.reply(200, image) if image else self.not_found(path)
        elif "/operations/" in path:
            name = path.rsplit("/", 1)[1]
            self.reply(200, {"name": name, "status": "DONE", "kind": "compute#operation"})
        elif path == "/aggregated/instances":
            listed = [i for i in self.server.instances.values() if matches(i, query)]
            self.reply(200, {"items": {f"zones/{ZONE}": {"instances": listed}}})
        elif path.startswith(f"/zones/{ZONE}/instances/"):
            name = path.rsplit("/", 1)[1]
            instance = self.server.instances.get(name)
            if instance is None:
                self.not_found(path)
                return
            self.server.looks[name] = self.server.looks.get(name, 0) + 1
            if self.server.looks[name] >= 2:
                instance["status"] = "RUNNING"
                instance["networkInterfaces"] = [{"networkIP": "10.0.0.2", "accessConfigs": [{"natIP": "192.0.2.20"}]}]
            self.reply(200, instance)
        else:
            self.not_found(path)

    def do_POST(self) -> None:
        path, _, body = self.record("POST")
        kind = path.rsplit("/", 1)[1]
        if kind == self.server.refuse:
            self.reply(403, {"error": {"code": 403, "message": f"Quota '{kind.upper()}' exceeded.  Limit: 0.0 globally.", "errors": []}})
        elif path == "/global/images":
            self.server.images[body["name"]] = {**body, "status": "READY", "selfLink": f"{self.server.url}/x/{body['name']}"}
            self.reply(200, self.operation(f"op-image-{body['name']}", ""))
        elif path == f"/zones/{ZONE}/instances":
            self.server.instances[body["name"]] = {**body, "status": "PROVISIONING", "zone": ZONE}
            self.reply(200, self.operation(f"op-instance-{body['name']}", f"zones/{ZONE}"))
        else:
            self.not_found(path)

    def do_DELETE(self) -> None:
        path, _, _ = self.record("DELETE")
        name = path.rsplit("/", 1)[1]
        table = self.server.images if path.startswith("/global/images/") else self.server.instances
        if table.pop(name, None) is None:
            self.not_found(path)
        else:
            self.reply(200, self.operation(f"op-delete-{name}", f"zones/{ZONE}" if table is self.server.instances else ""))
