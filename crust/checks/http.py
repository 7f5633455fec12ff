"""http: a GET through the forwarded port answers with the status, body and headers declared."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import Setting, parse_headers, parse_http_path, parse_int, parse_port, parse_regex, parse_str

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    o = check.options
    try:
        with _NO_PROXY.open(ctx.url(o["port"], o["path"]), timeout=5) as resp:
            status, headers, body = resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read().decode(errors="replace")
    seen = f"HTTP {status}, {len(body)} bytes: {body[:120]!r}"
    if status != o["status"]:
        return False, seen
    if o["body"] and o["body"] not in body:
        return False, seen
    if o["body_regex"] and not re.search(o["body_regex"], body):
        return False, seen
    for name, pattern in o["headers"].items():
        value = headers.get(name)
        if value is None or not re.search(pattern, value):
            return False, f"{seen}; header {name}: {value!r}"
    return True, seen


def describe(o: Mapping[str, Any]) -> str:
    return f"http {o['port']}{o['path']} -> {o['status']}"


def expectation(o: Mapping[str, Any]) -> str:
    parts = [f"HTTP {o['status']} from GET {o['path']} on guest port {o['port']}"]
    if o["body"]:
        parts.append(f"body containing {o['body']!r}")
    if o["body_regex"]:
        parts.append(f"body matching /{o['body_regex']}/")
    parts += [f"header {k} matching /{v}/" for k, v in o["headers"].items()]
    return ", ".join(parts)


CHECK = CheckType(
    name="http",
    settings=(
        Setting("port", parse_port, 80, "Guest port."),
        Setting("path", parse_http_path, "/", "Request path."),
        Setting("status", parse_int, 200, "Expected status."),
        Setting("body", parse_str, "", "Substring the body must contain."),
        Setting("body_regex", parse_regex, "", "Regex the body must match."),
        Setting("headers", parse_headers, MappingProxyType({}), "Header name -> regex its value must match."),
    ),
    describe=describe,
    expectation=expectation,
    attempt=attempt,
    order=20,
)
