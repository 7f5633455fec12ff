"""Fault points, publishing by rename and disk-full errors, without building anything."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from crust import faults
from crust.build import diskfull as pipeline
from crust.build.diskfull import disk_full
from crust.build.manifest import Manifest
from crust.build.publish import PREVIOUS_MANIFEST, publish
from crust.errors import CommandError, DiskFull, command_name
from tests.conftest import ROOT


def fire(spec: str | None, name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if spec is not None:
        env[faults.ENV] = spec
    code = f"from crust import faults; faults.point({name!r}); print('went on')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=False)


@pytest.mark.parametrize(
    ("spec", "name", "status", "went_on"),
    [
        (None, "commit:base", 0, True),
        ("commit:base:SIGKILL", "commit:image", 0, True),
        ("commit:base:NOSUCHSIGNAL", "commit:base", 0, True),
        ("commit:base:SIGKILL", "commit:base", -9, False),
        ("run:mkfs.ext4:SIGKILL", "run:mkfs.ext4", -9, False),
        ("publish.manifest:SIGTERM", "publish.manifest", -15, False),
    ],
)
def test_a_point_fires_only_when_named(spec: str | None, name: str, status: int, went_on: bool) -> None:
    out = fire(spec, name)
    assert out.returncode == status, out.stderr
    assert ("went on" in out.stdout) is went_on
    assert (f"crust: fault point {name}:" in out.stderr) is (not went_on)


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["unshare", "--fork", "--pid", "--", "bwrap", "--bind", "/t", "/", "--dev", "/dev", "--", "ukify", "build"], "ukify"),
        (["bwrap", "--bind", "/t", "/", "--unshare-net", "--", "/usr/bin/apt-get", "install", "-y"], "apt-get"),
        (["unshare", "--mount", "--", "/v/bin/python", "secretfs.py", "/w/s", "--", "/v/bin/ansible-playbook", "-i"], "ansible-playbook"),
        (["unshare", "--pid", "--", "chroot", "/t", "dpkg", "--configure"], "dpkg"),
        (["/usr/sbin/mkfs.ext4", "-d", "/t", "disk.raw"], "mkfs.ext4"),
    ],
)
def test_a_command_is_named_for_the_program_inside_its_wrappers(argv: list[str], name: str) -> None:
    """What run:TOOL fault points and error lines name: the tool, not the sandbox around it."""
    assert command_name(argv) == name


def test_sigint_takes_the_ctrl_c_path() -> None:
    out = fire("tree.seal:SIGINT", "tree.seal")
    assert "KeyboardInterrupt" in out.stderr and "went on" not in out.stdout


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_sigstop_at_a_run_point_stops_the_command_too() -> None:
    """The command started (in its own session, as runner.run() starts them) is stopped
    before Crust stops itself: a test can look at it without it finishing unseen."""
    code = (
        "import subprocess, sys; from crust import faults\n"
        "p = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "faults.point('run:sleep', child=p.pid)\n"
        "p.kill(); p.wait(); print('went on', flush=True)\n"
    )
    env = {**os.environ, faults.ENV: "run:sleep:SIGSTOP"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        child = int(proc.stdout.readline())
        line = proc.stderr.readline().strip()
        assert line == f"crust: fault point run:sleep: SIGSTOP (command: process group {child})"
        deadline = time.monotonic() + 10
        while (state(proc.pid), state(child)) != ("T", "T") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (state(proc.pid), state(child)) == ("T", "T")
        os.killpg(child, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGCONT)
        out, _err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "went on" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Stop(BaseException):
    pass


def published(tmp_path: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """An output directory with an old build published, and the files of a new one."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.raw", "a.qcow2"):
        (out / name).write_text(f"old {name}")
    (out / "manifest.json").write_text(json.dumps({"build": "old"}))
    new = tmp_path / "store"
    new.mkdir()
    files = []
    for name in ("a.raw", "a.qcow2"):
        (new / name).write_text(f"new {name}")
        files.append((new / name, out / name))
    return out, files


@pytest.mark.parametrize("at", ["publish.staged", "publish.artifact", "publish.manifest"])
def test_publishing_stopped_never_leaves_a_manifest_that_does_not_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str) -> None:
    out, files = published(tmp_path)

    def stop(name: str) -> None:
        if name == at:
            raise Stop

    monkeypatch.setattr(faults, "point", stop)
    with pytest.raises(Stop):
        publish(out, files, Manifest("new"), [])
    left = sorted(p.name for p in out.iterdir())
    if at == "publish.staged":  # nothing replaced: the old manifest still describes the files
        assert left == ["a.qcow2", "a.raw", "manifest.json"]
        assert json.loads((out / "manifest.json").read_text()) == {"build": "old"} and (out / "a.raw").read_text() == "old a.raw"
    else:  # some files replaced: no manifest.json, the old one kept aside (for its cloud records)
        assert left == [PREVIOUS_MANIFEST, "a.qcow2", "a.raw"]
    monkeypatch.undo()
    publish(out, files, Manifest("new"), [])
    assert sorted(p.name for p in out.iterdir()) == ["a.qcow2", "a.raw", "manifest.json"]
    assert json.loads((out / "manifest.json").read_text())["appliance"] == "new" and (out / "a.qcow2").read_text() == "new a.qcow2"


def test_publish_removes_temporary_files_of_dead_processes_only(tmp_path: Path) -> None:
    out, files = published(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = out / f".a.raw.tmp-{dead.stdout.strip()}"
    stale.write_text("half")
    live = out / f".a.raw.tmp-{os.getppid()}"
    live.write_text("someone else's")
    publish(out, files, Manifest("new"), [out / "a.vhd"])
    assert not stale.exists() and live.exists()


def test_disk_full_is_recognized_and_worded(tmp_path: Path) -> None:
    failed = CommandError(["mkfs.ext4", "-d", "tree", "disk.raw"], 1, "mkfs.ext4: No space left on device while populating", None)
    full = disk_full(failed, tmp_path, "image step of wsgi")
    assert isinstance(full, DiskFull) and full.exit_status == 1
    text = str(full)
    assert text.startswith(f"image step of wsgi: no space left on device in {tmp_path} (") and " MiB free; fix: " in text
    assert "--store" in text and "\n" not in text
    assert isinstance(disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path, "x"), DiskFull)
    assert disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path, "x") is None
    assert disk_full(CommandError(["false"], 1, "some other failure", None), tmp_path, "x") is None


class Usage(NamedTuple):
    total: int
    used: int
    free: int


@pytest.mark.parametrize(
    ("tail", "full"),
    [
        ("qemu-img: error while writing sector 4194304: Input/output error", True),
        ("mcopy: short write", True),
        ("cp: error writing 'tree/usr/lib/x.so': ENOSPC", True),
        ("E: You don't have enough free space in /var/cache/apt/archives/.", True),
        ("ukify: error: invalid kernel command line", False),
        ("fatal: [tree]: FAILED! => {'msg': 'the module failed to execute'}", False),
        ("Segmentation fault", False),
    ],
)
def test_little_free_space_explains_only_failures_about_space_or_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: str, full: bool
) -> None:
    """With under 32 MiB free, a failure that speaks of writing or space is reported as a full
    disk; any other keeps its own message (the free space would hide the real cause)."""
    failed = CommandError(["tool"], 1, tail, None)
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda _p: Usage(1 << 30, (1 << 30) - (8 << 20), 8 << 20))
    assert isinstance(disk_full(failed, tmp_path, "image step of wsgi"), DiskFull) is full
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda _p: Usage(1 << 30, 0, 1 << 30))
    assert disk_full(failed, tmp_path, "image step of wsgi") is None  # plenty of space: never "disk full"
