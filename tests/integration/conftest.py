"""Integration fixtures: appliances are built once per test session and shared by the tests."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import C_LOCALE_CALLER, ROOT, build_py, environment, need_root, need_tool

_built: dict[str, dict[str, Any]] = {}

# Tests during which the work the session needs next may run behind them: they boot (qemu's TCG
# takes about 1.5 of the 2 cores; Puppet Server's JVM, pinned to one CPU, leaves one idle for
# minutes) and read only their own files. Every other test starts once nothing runs behind it:
# some look at the store's temporary files and mounts.
RUN_BEHIND = frozenset({"test_accel", "test_appliances"})
NAMED_BUILD = re.compile(r"""\bbuilt\(\s*["']([A-Za-z0-9_-]+)["']\s*\)""")


def build_argv(name: str) -> list[str]:
    return [sys.executable, str(ROOT / "build.py"), "build", name]


class Behind:
    """The work the collected tests will ask for (builds of the appliances they name, in the
    order they ask, then the reproducibility rebuild), one job at a time, at the lowest CPU
    priority, while the first tests boot. A test that asks for a job's result waits for it, or
    does the work itself if the job has not started."""

    def __init__(self, jobs: list[tuple[str, Callable[[Behind], Any]]]) -> None:
        self.pending = list(jobs)
        self.current: str | None = None
        self.done: dict[str, tuple[bool, Any]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.stopped = False
        self.scratch = Path(tempfile.mkdtemp(prefix="crust-behind-"))
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="behind", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.cond:
                if self.stopped or not self.pending:
                    self.current = None
                    self.cond.notify_all()
                    return
                key, job = self.pending.pop(0)
                self.current = key
            try:
                outcome: tuple[bool, Any] = (True, job(self))
            except BaseException as exc:  # raised again in the test that claims it
                outcome = (False, exc)
            with self.cond:
                self.done[key] = outcome
                self.current = None
                self.cond.notify_all()

    def build_py(self, *args: str, env: dict[str, str | None] | None = None, umask: int | None = None) -> subprocess.CompletedProcess[str]:
        """As tests.conftest.build_py, at nice 19, stopped with the session.

        Nice 19 orders it only within the suite's session: the kernel shares the CPU between
        sessions first (autogroups, on in these machines), and each qemu guest is a session of
        its own, so a job here takes about as much CPU as a guest beside it. An autogroup of its
        own at nice 19 was considered and left out: a TCG guest with two vCPUs uses
        about two cores (186 CPU-seconds for a 95 s wsgi boot, measured), so the builds would
        wait behind the boots and test_appliances would then build them in front of its own."""
        argv = ["nice", "-n", "19", sys.executable, str(ROOT / "build.py"), *args]
        with self.cond:
            if self.stopped:
                raise RuntimeError("the session ended")
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(env), umask=-1 if umask is None else umask
            )
        out, err = self.proc.communicate()
        with self.cond:
            returncode = self.proc.returncode
            self.proc = None
        return subprocess.CompletedProcess(argv, returncode, out, err)

    def claim(self, key: str) -> Any | None:
        """KEY's result, waited for (its exception raised here); None when it has not started."""
        with self.cond:
            for i, (pending_key, _) in enumerate(self.pending):
                if pending_key == key:
                    del self.pending[i]
                    return None
            while self.current == key:
                self.cond.wait()
            if key not in self.done:
                return None
            ok, value = self.done.pop(key)
        if not ok:
            raise value
        return value

    def drain(self) -> None:
        with self.cond:
            while self.pending or self.current:
                self.cond.wait()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.pending.clear()
            if self.proc is not None:
                self.proc.terminate()  # build.py removes what it started
        self.thread.join(timeout=300)
        shutil.rmtree(self.scratch, ignore_errors=True)


_named: list[str] = []  # the appliances the collected tests ask for by name, in order
_reproducible: list[bool] = []  # test_reproducible's tests are collected
_first_module: list[str] = []  # the module of the first collected test that asks for a build
_behind: list[Behind] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        fixtures = getattr(item, "fixturenames", ())
        if function is None or "built" not in fixtures:
            continue
        if not _first_module:
            _first_module.append(item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else "")
        # The builds the test names, in the order it asks: its fixtures' (autouse ones first), then its own.
        definitions = item._fixtureinfo.name2fixturedefs if isinstance(item, pytest.Function) else {}
        sources = [definitions[name][-1].func for name in fixtures if name in definitions] + [function]
        for source in sources:
            for name in NAMED_BUILD.findall(inspect.getsource(inspect.unwrap(source))):
                if name not in _named:
                    _named.append(name)
        if "verified" in fixtures and not _reproducible:
            _reproducible.append(True)


def build_job(name: str) -> Callable[[Behind], Any]:
    return lambda behind: behind.build_py("build", name, env=C_LOCALE_CALLER, umask=0o077)


def reproducible_job(behind: Behind) -> Any:
    from tests.integration.reproducible_job import verify_shipped

    work = behind.scratch / "reproducible"
    work.mkdir()
    return verify_shipped(behind.build_py, work)


def claim_behind(key: str) -> Any | None:
    """The result of the job KEY done behind the tests, or None: do it here."""
    return _behind[0].claim(key) if _behind else None


def build_once(name: str) -> dict[str, Any]:
    """./build.py build NAME (a no-op when the store already has every step); the manifest."""
    if name not in _built:
        need_root()
        for tool in ("mmdebstrap", "qemu-img", "sfdisk", "mkfs.vfat", "mcopy"):
            need_tool(tool)
        out = claim_behind(f"build {name}")
        if out is None:
            # As a CI runner with the C locale, another time zone and umask 077 would run it.
            out = build_py("build", name, env=C_LOCALE_CALLER, umask=0o077)
        assert out.returncode == 0, f"build {name} failed:\n{out.stderr[-4000:]}"
        _built[name] = json.loads((ROOT / "build" / name / "manifest.json").read_text())
        _built[name]["_stderr"] = out.stderr
    return _built[name]


@pytest.fixture(scope="session")
def built() -> Iterator[Callable[[str], dict[str, Any]]]:
    # Only when the first test that builds may have work behind it (the whole suite starts with
    # test_accel): a run of other modules builds in the foreground, as each test asks.
    if os.geteuid() == 0 and _named and not _behind and _first_module and _first_module[0] in RUN_BEHIND:
        jobs = [(f"build {name}", build_job(name)) for name in _named]
        if _reproducible and shutil.which("diffoscope"):
            jobs.append(("reproducible", reproducible_job))
        _behind.append(Behind(jobs))
    yield build_once
    for behind in _behind:
        behind.stop()


@pytest.fixture(autouse=True)
def no_work_behind(request: pytest.FixtureRequest) -> None:
    if _behind and request.module.__name__.rsplit(".", 1)[-1] not in RUN_BEHIND:
        _behind[0].drain()


def store_entry(kind: str, step_id: str) -> Path:
    return ROOT / ".crust" / "steps" / f"{kind}-{step_id}"


def crust_domains() -> list[str]:
    """Names of the libvirt domains Crust started (smoke.DOMAIN_PREFIX) that still exist."""
    import libvirt

    from crust.boot.machine import DOMAIN_PREFIX

    conn = libvirt.open("qemu:///system")
    try:
        return [d.name() for d in conn.listAllDomains() if d.name().startswith(DOMAIN_PREFIX)]
    finally:
        conn.close()
