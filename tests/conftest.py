"""Shared test helpers. In CI (CI=true) a missing tool fails a test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A suite started in the background by a non-interactive shell (`.ci/run &`, nohup-style
# wrappers) inherits SIGINT ignored, and so would every build.py it starts: Python then never
# raises KeyboardInterrupt and the Ctrl-C tests would see builds go on. Restore the default.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduling (pyproject's addopts: two workers): the integration tests are one
    unit of work, run in order by one worker (they share the session's builds and the work behind
    them); the unit tests go to the other worker a module at a time, and to both once the
    integration tests are done."""
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationInOrder(LoadScopeScheduling):  # type: ignore[misc]
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            # In collection order, not largest scope first (xdist's default): the integration
            # tests, first collected, go first to a worker, before any unit test renices it.
            config.option.loadscopereorder = False

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/integration/"):
                return "tests/integration"
            return str(super()._split_scope(nodeid))

    return IntegrationInOrder(config, log)


_SESSION: list[tuple[float, Any]] = []  # (start, terminal reporter)


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION.append((time.monotonic(), session.config.pluginmanager.get_plugin("terminalreporter")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One line per integration test as it ends, with the time since the session started: a CI
    log cut off by its time limit still says how far the run got and what took long (the unit
    tests' dots say neither)."""
    if not report.nodeid.startswith("tests/integration/") or not _SESSION:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        start, terminal = _SESSION[0]
        elapsed = int(time.monotonic() - start)
        line = f"[+{elapsed // 60:3d}m{elapsed % 60:02d}s] {report.outcome.upper():7} {report.nodeid} ({report.duration:.0f}s)"
        if terminal is not None:
            terminal.write("\n" + line + "\n")  # after the progress dots


def without_boot_analysis(toml_text: str) -> str:
    """An appliance file's text whose smoke boot skips systemd-analyze (some 12 s of the guest's
    time under TCG): for tests about other things than the boot analysis."""
    return toml_text.replace("[test]\n", "[test]\nboot_analysis = false\n", 1)


def need(condition: bool, why: str) -> None:
    """Skip locally when a precondition is missing; fail in CI, where it must be present."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide this: {why}")
    pytest.skip(why)


def need_tool(name: str) -> None:
    need(shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None, f"tool {name} is not installed")


def need_root() -> None:
    need(os.geteuid() == 0, "needs root")


def environment(env: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment with env's variables added (None removes one)."""
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    return full_env


def build_py(
    *args: str, check: bool = False, env: dict[str, str | None] | None = None, timeout: float = 3600, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """./build.py ARGS; env adds variables (None removes one), umask is the caller's umask."""
    full_env = environment(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "build.py"), *args],
        capture_output=True,
        text=True,
        check=check,
        env=full_env,
        timeout=timeout,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


class Started:
    """./build.py ARGS running in the background (start_build_py), its output going to files."""

    def __init__(self, args: tuple[str, ...], logs: Path, env: dict[str, str | None] | None) -> None:
        self.args = args
        self.stdout = logs / "stdout"
        self.stderr = logs / "stderr"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "build.py"), *args], stdout=out, stderr=err, text=True, env=environment(env))

    def wait(self, timeout: float) -> subprocess.CompletedProcess[str]:
        """Its outcome, waited for up to timeout seconds (then stopped, and the test fails)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"./build.py {' '.join(self.args)} still ran after {timeout:.0f}s:\n{self.stderr.read_text()[-4000:]}")
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, self.stdout.read_text(), self.stderr.read_text())

    def stop(self) -> None:
        """SIGTERM (build.py removes what it started), then SIGKILL after 120 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_build_py(*args: str, logs: Path, env: dict[str, str | None] | None = None) -> Started:
    """./build.py ARGS started in the background; its stdout and stderr go to files in logs."""
    return Started(args, logs, env)


# Callers whose locale, time zone and umask Crust must not depend on (issue 13): the shared
# builds run as a CI runner with the C locale would, a user's build and the smoke tests as
# other callers do. Each is used by tests that build or boot for real.
C_LOCALE_CALLER: dict[str, str | None] = {"LC_ALL": "C", "LANG": None, "LANGUAGE": None, "TZ": "Pacific/Chatham"}
POSIX_CALLER: dict[str, str | None] = {"LC_ALL": "POSIX", "LANG": "POSIX", "TZ": "America/St_Johns"}
UTF8_CALLER: dict[str, str | None] = {"LC_ALL": None, "LANG": "de_DE.UTF-8", "LC_TIME": "fr_FR.UTF-8", "TZ": "Asia/Kathmandu"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's definitions (appliances, kickstarts, roles, distributions)."""
    for name in ("appliances", "kickstarts", "roles", "distributions"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path
