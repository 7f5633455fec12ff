"""What a check type is, and what every check gets: its spec, a context, a result.

A check type is one module of crust/checks/ defining ``CHECK = CheckType(...)``: its settings
(the keys of its [[test.checks]] table), its default name, the expectation a report shows,
and one attempt (passed, what was seen), retried until it passes or its time is up. No
libvirt here: the guest is reached through the context (crust/boot/guest.py implements it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from crust.define.settings import Setting


class GuestNotReady(Exception):
    """The guest agent does not answer (yet)."""


@dataclass(frozen=True)
class ExecResult:
    status: int
    stdout: str
    stderr: str


class GuestLike(Protocol):
    def exec(self, argv: list[str], timeout: float = 30.0) -> ExecResult: ...


@dataclass(frozen=True)
class CheckSpec:
    type: str
    name: str
    timeout: float
    options: Mapping[str, Any]


@dataclass
class CheckContext:
    """What a check (and an appliance's own Python check module) gets."""

    forwards: Mapping[int, int]  # guest port -> host port on 127.0.0.1
    guest: GuestLike
    started: float  # monotonic time of domain start
    module: ModuleType | None = None
    notes: list[str] = field(default_factory=list)
    deadline: float = float("inf")  # monotonic time the running check must end by
    stopped: Callable[[], str | None] = lambda: None  # why the guest no longer runs, or None
    console: Callable[[], list[str]] = lambda: []  # the serial console's lines so far (printable)
    state: dict[Any, Any] = field(default_factory=dict)  # what a check type keeps between attempts

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


Attempt = Callable[[CheckSpec, CheckContext], tuple[bool, str]]


@dataclass(frozen=True)
class CheckType:
    name: str
    settings: tuple[Setting, ...]  # besides type, name and timeout
    describe: Callable[[Mapping[str, Any]], str]  # the default name of a check of this type
    expectation: Callable[[Mapping[str, Any]], str]  # what must hold, for reports
    attempt: Attempt
    order: int = 100  # where it is listed among the types
    needs_module: bool = False  # needs the appliance's test.module
