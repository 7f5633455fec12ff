"""http: a GET through the forwarded port answers with the status, body and headers declared."""

from __future__ import annotations

import http.client
import queue
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from crust.checks.kind import CheckContext, CheckSpec, CheckType
from crust.define.settings import Setting, parse_headers, parse_http_path, parse_int, parse_port, parse_regex, parse_str

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


REQUEST_TIMEOUT = 5.0  # a slow first answer (an application warming up under TCG) is waited for
IN_FLIGHT = 10
ANSWER_WAIT = 0.5


class Requests:
    """The requests of one http check: each attempt sends one more and takes the first answer.

    Through qemu's user-mode forward, a request sent before the guest's network is up is
    accepted on the host and then hangs until its timeout: one request at a time, the page
    was seen up to 5.5 s after it answered (every wsgi smoke boot passed its first check at
    22.4 s or at 27.9 s). Overlapping requests see it within an attempt's interval, and each
    may still wait REQUEST_TIMEOUT for a slow answer.
    """

    def __init__(self) -> None:
        self.answers: queue.SimpleQueue[tuple[bool, str]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.waiting = 0

    def send(self, request: Callable[[], tuple[bool, str]]) -> None:
        with self.lock:
            if self.waiting >= IN_FLIGHT:
                return
            self.waiting += 1

        def answer() -> None:
            try:
                self.answers.put(request())
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                self.answers.put((False, f"{type(exc).__name__}: {exc}"))
            finally:
                with self.lock:
                    self.waiting -= 1

        threading.Thread(target=answer, name="crust-http-check", daemon=True).start()

    def first_answer(self, wait: float) -> tuple[bool, str]:
        """A passing answer if one came, else the latest failing one (waiting up to wait)."""
        try:
            answers = [self.answers.get(timeout=wait)]
        except queue.Empty:
            return False, f"no answer yet ({self.waiting} requests waiting, {REQUEST_TIMEOUT:g} s each)"
        while not self.answers.empty():
            answers.append(self.answers.get_nowait())
        return next((a for a in answers if a[0]), answers[-1])


def attempt(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    requests: Requests = ctx.state.setdefault(("http", id(check)), Requests())
    requests.send(lambda: request(check, ctx))
    return requests.first_answer(ANSWER_WAIT)


def request(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    o = check.options
    try:
        with _NO_PROXY.open(ctx.url(o["port"], o["path"]), timeout=REQUEST_TIMEOUT) as resp:
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
