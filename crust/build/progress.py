"""Build progress: a plain line per step event (logs, pipes), or live lines on a terminal."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from crust.build.plan import Step


class Progress:
    """Plain progress: one line per step event (for logs and pipes); thread-safe."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def say(self, step: Step, text: str) -> None:
        with self.lock:
            print(f"[{step.name}] {step.kind:8} {text}", file=self.stream, flush=True)

    def running(self, step: Step, log: Path) -> None:
        self.say(step, f"running (log: {log})")

    def finished(self, step: Step, text: str) -> None:
        self.say(step, text)

    def close(self) -> None:
        pass


class LiveProgress(Progress):
    """On a terminal: a live line per running step with its elapsed time (rich), and a
    permanent line for each finished one."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console, transient=True)
        self.tasks: dict[str, Any] = {}
        self.rich.start()

    def say(self, step: Step, text: str) -> None:
        with self.lock:
            self.console.print(f"[{step.name}] {step.kind:8} {text}", markup=False, highlight=False)

    def running(self, step: Step, log: Path) -> None:
        with self.lock:
            self.tasks[step.key] = self.rich.add_task(f"[{step.name}] {step.kind:8} running (log: {log.name})", total=None)

    def finished(self, step: Step, text: str) -> None:
        with self.lock:
            task = self.tasks.pop(step.key, None)
            if task is not None:
                self.rich.remove_task(task)
        self.say(step, text)

    def close(self) -> None:
        self.rich.stop()


def make_progress(stream: TextIO = sys.stderr) -> Progress:
    return LiveProgress(stream) if stream.isatty() else Progress(stream)
