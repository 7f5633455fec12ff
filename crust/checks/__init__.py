"""Smoke checks: each declared check is retried until it passes or its own timeout expires.

Every attempt returns (passed, what was seen); a failed check reports what was expected and
the last thing seen. Host-side checks (tcp, http) go through the forwarded loopback ports;
guest-side checks (unit, command, no_failed_units) through the qemu guest agent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from crust.boot.guest import ExecResult, Guest, GuestNotReady
from crust.define.spec import CheckSpec

RETRY_INTERVAL = 0.5


@dataclass
class CheckContext:
    """What a check (and an appliance's own Python check module) gets."""

    forwards: Mapping[int, int]  # guest port -> host port on 127.0.0.1
    guest: Guest
    started: float  # monotonic time of domain start
    module: ModuleType | None = None
    notes: list[str] = field(default_factory=list)
    deadline: float = float("inf")  # monotonic time the running check must end by
    stopped: Callable[[], str | None] = lambda: None  # why the guest no longer runs, or None

    def address(self, guest_port: int) -> tuple[str, int]:
        return "127.0.0.1", self.forwards[guest_port]

    def url(self, guest_port: int, path: str = "/") -> str:
        host, port = self.address(guest_port)
        return f"http://{host}:{port}{path}"

    def guest_exec(self, argv: list[str], timeout: float | None = None) -> ExecResult:
        """Run argv in the guest; by default it may take what is left of the check's time (a
        slow command under TCG is waited for, not abandoned and started again)."""
        if timeout is None:
            timeout = max(5.0, self.deadline - time.monotonic())
        return self.guest.exec(argv, timeout)

    def log(self, message: str) -> None:
        self.notes.append(message)


@dataclass(frozen=True)
class CheckResult:
    name: str
    type: str
    passed: bool
    expected: str
    seen: str
    duration_s: float  # time spent on this check
    at_s: float  # seconds from domain start to the check's end
    attempts: int


def expectation(check: CheckSpec) -> str:
    o = check.options
    if check.type == "tcp":
        return f"guest port {o['port']} accepts connections"
    if check.type == "http":
        parts = [f"HTTP {o['status']} from GET {o['path']} on guest port {o['port']}"]
        if o["body"]:
            parts.append(f"body containing {o['body']!r}")
        if o["body_regex"]:
            parts.append(f"body matching /{o['body_regex']}/")
        parts += [f"header {k} matching /{v}/" for k, v in o["headers"].items()]
        return ", ".join(parts)
    if check.type == "unit":
        return f"systemd unit {o['unit']} active"
    if check.type == "command":
        out = f" and output matching /{o['output']}/" if o["output"] else ""
        return f"`{' '.join(o['argv'])}` exits {o['status']}{out}"
    if check.type == "python":
        return f"{o['function']}() returns without raising"
    return "no failed systemd units once boot has finished"


LISTEN = "0A"  # the TCP state "listen" in /proc/net/tcp and tcp6


def listening_ports(proc_net_tcp: str) -> set[int]:
    """Local ports in the LISTEN state, from the text of /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and ":" in fields[1]:
            with contextlib.suppress(ValueError):
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def attempt_tcp(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    """A listener in the guest accepted a connection through the forward.

    The host side of qemu's user-mode forward accepts whatever the guest does, and a guest
    still in its firmware (no network stack) never resets the connection: an open host socket
    proves nothing. So the guest itself must show the port listening (its kernel's socket table,
    read through the agent), and then a connection through the forward must be accepted, not
    dropped (a listener bound to the guest's loopback only is dropped).
    """
    port = check.options["port"]
    table = ctx.guest_exec(["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=min(10.0, max(2.0, ctx.deadline - time.monotonic())))
    if port not in listening_ports(table.stdout):
        return False, f"nothing listens on guest port {port} (the guest's socket table)"
    with socket.create_connection(ctx.address(port), timeout=3) as sock:
        sock.settimeout(1.0)
        try:
            data = sock.recv(1)
        except TimeoutError:
            return True, f"guest port {port} listening; connection through the forward accepted and held open"
        except ConnectionResetError:
            return False, f"guest port {port} listening, but the connection through the forward was reset"
        if data:
            return True, f"guest port {port} listening; connection accepted (the server spoke first)"
        return False, f"guest port {port} listening, but the connection through the forward was closed at once (bound to the guest's loopback only?)"


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def attempt_http(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
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


def attempt_unit(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    result = ctx.guest_exec(["systemctl", "is-active", check.options["unit"]])
    state = result.stdout.strip() or result.stderr.strip()
    return state == "active", f"{check.options['unit']} is {state}"


def attempt_command(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    o = check.options
    result = ctx.guest_exec(list(o["argv"]))
    output = result.stdout + result.stderr
    seen = f"exit {result.status}, output {output.strip()[:200]!r}"
    if result.status != o["status"]:
        return False, seen
    if o["output"] and not re.search(o["output"], output):
        return False, seen
    return True, seen


def attempt_no_failed_units(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    state = ctx.guest_exec(["systemctl", "is-system-running"]).stdout.strip()
    if state in ("initializing", "starting", ""):
        return False, f"boot not finished (system is {state or 'unknown'})"
    failed = ctx.guest_exec(["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--no-pager"]).stdout.strip()
    if failed:
        return False, "failed units: " + "; ".join(line.split()[0] for line in failed.splitlines())
    return True, f"system is {state}, no failed units"


def attempt_python(check: CheckSpec, ctx: CheckContext) -> tuple[bool, str]:
    assert ctx.module is not None
    func = getattr(ctx.module, check.options["function"])
    seen = func(ctx)
    return True, str(seen) if seen is not None else "returned"


ATTEMPTS: Mapping[str, Callable[[CheckSpec, CheckContext], tuple[bool, str]]] = {
    "tcp": attempt_tcp,
    "http": attempt_http,
    "unit": attempt_unit,
    "command": attempt_command,
    "no_failed_units": attempt_no_failed_units,
    "python": attempt_python,
}


def run_check(check: CheckSpec, ctx: CheckContext, overall_deadline: float) -> CheckResult:
    begun = time.monotonic()
    deadline = min(begun + check.timeout, overall_deadline)
    ctx.deadline = deadline
    attempts = 0
    while True:
        attempts += 1
        try:
            passed, seen = ATTEMPTS[check.type](check, ctx)
        except GuestNotReady as exc:
            passed, seen = False, f"guest agent not answering: {exc}"
        except (OSError, urllib.error.URLError) as exc:
            passed, seen = False, f"{type(exc).__name__}: {exc}"
        except AssertionError as exc:
            passed, seen = False, f"assertion failed: {exc}"
        now = time.monotonic()
        if not passed:
            trouble = ctx.stopped()
            if trouble is not None:  # no point retrying: the guest is gone or frozen
                seen = f"{trouble} (last attempt: {seen})"
                deadline = now
        if passed or now >= deadline:
            return CheckResult(check.name, check.type, passed, expectation(check), seen, round(now - begun, 2), round(now - ctx.started, 2), attempts)
        time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - now)))


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"crust_checks_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_digest_input(checks: tuple[CheckSpec, ...]) -> list[dict[str, Any]]:
    return [{"type": c.type, "name": c.name, "timeout": c.timeout, "options": dict(c.options)} for c in checks]
