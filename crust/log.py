"""The current step's log: where run() streams a command's output and where notes go.

A context variable, so that parallel builds (threads) each write to their own step's log.
Every line passes through the redaction registry.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import IO

from crust.redact import redact

_current: contextvars.ContextVar[IO[str] | None] = contextvars.ContextVar("crust_log", default=None)


@contextlib.contextmanager
def logging_to(log: IO[str]) -> Iterator[None]:
    """Send the output of every run() in this context (and thread) to log."""
    token = _current.set(log)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> IO[str] | None:
    return _current.get()


def log_line(text: str) -> None:
    log = _current.get()
    if log is not None:
        log.write(redact(text.rstrip("\n")) + "\n")
        log.flush()


@contextlib.contextmanager
def phase(name: str, into: list[tuple[str, float]]) -> Iterator[None]:
    """Time a phase of a step: (name, seconds) goes into `into` (the step's record, in the
    order the phases ran) and a line into the step log."""
    import time

    started = time.monotonic()
    try:
        yield
    finally:
        took = round(time.monotonic() - started, 2)
        into.append((name, took))
        log_line(f"crust: {name} took {took:.2f}s")
