"""Fault injection, for real: builds of the wsgi appliance killed (SIGKILL, SIGINT) at named
points from inside mmdebstrap to the manifest's rename, and a disk that fills up during assembly.

After every kill: the process is gone with the right status, no mount is left in any mount
namespace, no process of the build survives (nor the namespaces it ran in), no libvirt domain,
no artifact in the output directory that is not complete (a manifest, when there is one,
matches every file it names), and the store holds only complete entries (a SIGKILLed step's
temporary directory may stay; the next run must remove it). The walk goes in pipeline order,
so each run is also "the next build" of the previous kill and gets further; the last builds
complete, and the image is checked (qemu-img check, digests) and booted with all its checks.

Everything happens in a separate store and output directory, both on one tmpfs (so artifacts
are published as hard links, as build/ and .crust/ are), which the disk-full case shrinks: the
shared store is never touched. Kills come from crust/faults.py points (CRUST_FAULT), or from
outside when a watched process shows the build inside a long-running tool. A short-lived tool
(cp, ukify, mkfs.ext4, qemu-img) is not left to a poll's luck: the build stops at the tool's
run:TOOL point together with the tool's process group, the test lets the tool run in 10 ms
steps, stopped between looks, until it is at work, then resumes it and signals Crust while the
tool runs.

The tests are stages of one walk (each starts from the store the previous ones left): run the
whole module; a stage selected alone fails saying so, and a stage after a failed one is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crust.boot import machine, ports
from tests.conftest import ROOT, need, need_root, need_tool, without_boot_analysis
from tests.integration.conftest import crust_domains

pytestmark = pytest.mark.integration

STORE_SIZE_MIB = 8 * 1024  # a cap, not a reservation (peak use is printed); the preflight wants ~7 GiB free
STEP_S = 0.01  # how long a stopped tool runs between two looks
NAME = "wsgi"


@dataclass
class Lab:
    root: Path
    fs: Path  # a tmpfs holding the store and the output, as build/ and .crust/ share a disk
    store: Path
    output: Path
    appliances: Path
    kills: list[dict[str, Any]] = field(default_factory=list)
    disk_full: list[str] = field(default_factory=list)
    last_killed: int | None = None
    started: float = field(default_factory=time.monotonic)
    stages: dict[str, str] = field(default_factory=dict)  # test name -> "passed" or "failed"
    peak_used: int = 0


# --- observing the machine ------------------------------------------------------------------


def proc_entries() -> Iterator[tuple[int, Path]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield int(entry.name), entry


def read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def tree_root(pid: int, entry: Path) -> str:
    """A process's root as the host sees it: for one in the build sandbox (bubblewrap pivots
    into the tree, so /proc/PID/root reads "/"), the tree its bwrap ancestor bound at /."""
    root = link(entry / "root")
    if root != "/":
        return root
    current = pid
    for _ in range(64):
        try:
            args = Path(f"/proc/{current}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return root
        if args and args[0].endswith("bwrap"):  # the tree bound at / (read-write, or read-only for the image step)
            for at, arg in enumerate(args[:-2]):
                if arg in ("--bind", "--ro-bind") and args[at + 2] == "/":
                    return args[at + 1]
        stat = read(Path(f"/proc/{current}/stat"))
        parent = int(stat.rsplit(")", 1)[1].split()[1]) if stat else 0
        if parent <= 1:
            return root
        current = parent
    return root


def our_processes(lab: Lab) -> list[str]:
    """Processes that belong to the lab's builds: root, working directory or command line in it."""
    found = []
    for pid, entry in proc_entries():
        fields = (tree_root(pid, entry), link(entry / "cwd"), read(entry / "cmdline"))
        if any(str(lab.root) in f for f in fields):
            found.append(f"{pid} {read(entry / 'comm')}: {fields[2][:160]}")
    return found


def our_mounts(lab: Lab) -> list[str]:
    """Mounts under the store or output, in every mount namespace that has a process."""
    found, seen = [], set()
    for pid, entry in proc_entries():
        ns = link(entry / "ns" / "mnt")
        if not ns or ns in seen:
            continue
        seen.add(ns)
        for line in read(entry / "mountinfo").splitlines():
            point = line.split(" ")[4] if line.count(" ") > 4 else ""
            if point.startswith(f"{lab.fs}/"):
                found.append(f"{ns} (pid {pid}): {point}")
    return found


def processes_in(namespaces: set[str]) -> list[str]:
    return [f"{pid}" for pid, entry in proc_entries() if {link(entry / "ns" / "mnt"), link(entry / "ns" / "pid")} & namespaces]


def find_process(predicate: Callable[[str, str, str], bool]) -> int | None:
    """The first process whose (comm, root, cmdline) matches."""
    for pid, entry in proc_entries():
        comm = read(entry / "comm")
        if predicate(comm, tree_root(pid, entry), read(entry / "cmdline")):
            return pid
    return None


def state(pid: int) -> str:
    stat = read(Path(f"/proc/{pid}/stat"))
    return stat.rsplit(")", 1)[1].split()[0] if stat else "X"


def alive(pid: int) -> bool:
    return state(pid) not in ("Z", "X")


def group_states(pgid: int) -> dict[int, str]:
    """The processes of a process group (wherever their PID namespace), with their states."""
    found = {}
    for pid, entry in proc_entries():
        fields = read(entry / "stat").rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            found[pid] = fields[0]
    return found


def wait_group_stopped(pgid: int, seconds: float = 10) -> dict[int, str]:
    """Until no process of the group runs (stopped, or exited: a zombie, as Crust is stopped)."""
    deadline = time.monotonic() + seconds
    while True:
        states = group_states(pgid)
        if all(st in ("T", "t", "Z", "X") for st in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.001)


_digests: dict[tuple[int, int, int], str] = {}


def sha256(path: Path) -> str:
    st = path.stat()
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def recorded_digests(lab: Lab) -> set[str]:
    """Every file digest the store's complete entries record."""
    digests = set()
    for step in (lab.store / "steps").glob("*/step.json"):
        for value in json.loads(step.read_text())["outputs"].values():
            if isinstance(value, dict) and "sha256" in value:
                digests.add(value["sha256"])
    return digests


# --- running builds -------------------------------------------------------------------------


class Run:
    """./build.py in its own process group (as a shell job), its output collected by threads."""

    def __init__(self, lab: Lab, fault: str | None, *verb: str) -> None:
        env = {**os.environ, "CRUST_STORE": str(lab.store), "CRUST_OUTPUT": str(lab.output)}
        env.pop("CRUST_FAULT", None)
        if fault:
            env["CRUST_FAULT"] = fault
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "build.py"), "--appliances", str(lab.appliances), *(verb or ("build", NAME))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            process_group=0,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(s, b), daemon=True) for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float = 900) -> float:
        """Poll condition while the build runs; the seconds since the start when it held."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the build ended (status {self.proc.returncode}) before: {what}\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for: {what}\n{self.stderr[-3000:]}")
            time.sleep(0.02)
        return time.monotonic() - self.started

    def stopped(self) -> bool:
        return state(self.pid) == "T"

    def stopped_command(self, point: str) -> int:
        """The process group of the command the build stopped with at a run:TOOL point."""
        pattern = re.compile(rf"crust: fault point {re.escape(point)}: SIGSTOP \(command: process group (\d+)\)")
        deadline = time.monotonic() + 10
        while not (match := pattern.search(self.stderr)):
            if time.monotonic() > deadline:
                pytest.fail(f"the build did not stop a command at {point}\n{self.stderr[-3000:]}")
            time.sleep(0.01)
        return int(match.group(1))

    def send(self, sig: signal.Signals) -> None:
        if sig == signal.SIGINT:
            os.killpg(self.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole job
            os.kill(self.pid, signal.SIGCONT)  # handled once running (when stopped at a point)
        else:
            os.kill(self.pid, sig)

    def finish(self, timeout: float = 1800) -> int:
        status = self.proc.wait(timeout=timeout)
        for t in self.readers:
            t.join(timeout=30)
        return status


# --- the checks after a kill ----------------------------------------------------------------


def wait_for_nothing_left(lab: Lab, namespaces: set[str], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (our_processes(lab) or our_mounts(lab) or processes_in(namespaces)):
        time.sleep(0.2)
    assert our_processes(lab) == [], "stray processes"
    assert our_mounts(lab) == [], "leaked mounts"
    assert processes_in(namespaces) == [], f"the build's namespaces {namespaces} still have processes"


def check_store(lab: Lab, killed: int, sig: signal.Signals) -> list[str]:
    """Only complete entries; a SIGINT leaves no temporary files, a SIGKILL at most its own
    (the runs before it removed those of earlier kills)."""
    left = sorted(p.name for p in (lab.store / "tmp").iterdir())
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert left == [], f"{sig.name} left {left} in the store's tmp/"
    else:
        assert all(name.endswith(f".{killed}") for name in left), f"leftovers of earlier runs: {left}"
    for entry in (lab.store / "steps").iterdir():
        assert (entry / "step.json").is_file(), f"incomplete store entry {entry.name}"
    for path in (p for d in ("builds", "state", "logs") for p in (lab.store / d).rglob(".*.tmp-*")):
        assert path.name.endswith(f".tmp-{killed}") and sig == signal.SIGKILL, f"stale temporary file {path}"
    return left


def check_output(lab: Lab, killed: int | None, sig: signal.Signals | None) -> str:
    """Every visible file in build/NAME is complete: named by the manifest with its digest,
    or (no manifest) a file whose digest a store entry records."""
    folder = lab.output / NAME
    if not folder.exists():
        return "no output yet"
    names = {p.name for p in folder.iterdir()}
    hidden = {n for n in names if n.startswith(".")}
    for name in hidden:
        match = re.match(r"^\..+\.tmp-(\d+)$", name)
        own_tmp = match is not None and int(match.group(1)) == killed and sig == signal.SIGKILL
        previous = name == ".manifest.json.previous" and "manifest.json" not in names
        assert own_tmp or previous, f"unexpected file {name} in {folder}"
    visible = names - hidden - {"smoke"}
    if "manifest.json" in names:
        manifest = json.loads((folder / "manifest.json").read_text())
        listed = {Path(a["path"]).name: a["sha256"] for a in manifest["artifacts"]}
        listed[Path(manifest["sbom"]["path"]).name] = manifest["sbom"]["sha256"]
        assert visible == {*listed, "manifest.json"}, f"files not named by the manifest: {visible - {*listed, 'manifest.json'}}"
        for name, digest in listed.items():
            assert sha256(folder / name) == digest, f"{name} does not match the manifest"
        return f"manifest + {len(listed)} matching files"
    known = recorded_digests(lab)
    for name in visible:
        assert sha256(folder / name) in known, f"{name} is not a complete artifact"
    return f"no manifest; {len(visible)} complete files"


def kill(
    lab: Lab,
    where: str,
    sig: signal.Signals,
    *,
    point: str | None = None,
    stop_at: str | None = None,
    watch: Callable[[Lab], int | None] | None = None,
    then: Callable[[Lab], int | None] | None = None,
    verb: tuple[str, ...] = (),
) -> Run:
    """One kill: at a fault point (the build signals itself), or stopped at a point and then
    signalled once `then` finds the tool at work, or signalled when `watch` finds the build
    inside a tool. The namespaces of the tool found must be gone after the kill."""
    if point:
        run = Run(lab, f"{point}:{sig.name}", *verb)
    elif stop_at:
        run = Run(lab, f"{stop_at}:SIGSTOP", *verb)
    else:
        run = Run(lab, None, *verb)
    namespaces: set[str] = set()
    seen = ""
    group: int | None = None
    if stop_at:
        run.wait_until(f"the build stops at {stop_at}", run.stopped)
        if stop_at.startswith("run:"):
            group = run.stopped_command(stop_at)
    pid: int | None = None
    if group is not None and then is not None:
        pid, steps = step_until_at_work(run, lab, group, where, then)
    elif stop_at and then is not None:
        pid = then(lab)
        assert pid is not None, f"not at work at {stop_at}: {where}"
        steps = 0
    elif watch is not None:
        found: list[int] = []

        def inside() -> bool:
            pid = watch(lab)
            if pid is not None:
                found.append(pid)
            return pid is not None

        run.wait_until(where, inside, timeout=900)
        pid = found[-1]
    if pid is not None:
        own = {link(Path("/proc/self/ns/mnt")), link(Path("/proc/self/ns/pid")), ""}
        namespaces = {link(Path(f"/proc/{pid}/ns/mnt")), link(Path(f"/proc/{pid}/ns/pid"))} - own
        seen = f"{read(Path(f'/proc/{pid}/comm'))} (pid {pid}) running" + (f" in namespaces {sorted(namespaces)}" if namespaces else "")
    if group is not None:
        os.killpg(group, signal.SIGCONT)  # the tool works on while Crust is signalled
        assert pid is not None and alive(pid) and state(pid) not in ("T", "t"), f"{where}: the tool is not running ({state(pid or 0)})"
        seen += f", resumed after {steps} steps of {STEP_S * 1000:.0f} ms"
    if stop_at or watch:
        run.send(sig)
    at = time.monotonic() - run.started
    status = run.finish(timeout=120)
    if point:
        at = time.monotonic() - run.started  # when the build killed itself (about when it ended)
    if sig == signal.SIGKILL:
        assert status == -signal.SIGKILL, f"status {status}\n{run.stderr[-3000:]}"
    else:
        assert status == 130, f"status {status}\n{run.stderr[-3000:]}"
        assert "interrupted" in run.stderr.strip().splitlines()[-1], run.stderr[-2000:]
        assert "Traceback" not in run.stderr, run.stderr[-3000:]
    if point:
        assert f"crust: fault point {point}: {sig.name}" in run.stderr, f"never reached {point}\n{run.stderr[-3000:]}"
    wait_for_nothing_left(lab, namespaces)
    assert [d for d in crust_domains() if f"-{run.pid}-" in d] == [], "the killed run's domain is still there"
    left = check_store(lab, run.pid, sig)
    output = check_output(lab, run.pid, sig)
    if lab.last_killed is not None and lab.last_killed != run.pid:
        assert not [p for p in (lab.store / "tmp").iterdir() if p.name.endswith(f".{lab.last_killed}")]
    lab.last_killed = run.pid
    row = {
        "n": len(lab.kills) + 1,
        "where": where,
        "how": point or (f"{stop_at} (stopped), then signalled" if stop_at else "watched from outside"),
        "signal": sig.name,
        "at_s": round(at, 1),
        "seen": seen,
        "store_tmp_left": len(left),
        "output": output,
    }
    lab.kills.append(row)
    print(f"\nkill {row['n']:2}: {sig.name:7} {where} [{row['how']}] at {at:.1f}s; {seen or '-'}; tmp left: {left or 'none'}; output: {output}")
    return run


def step_until_at_work(run: Run, lab: Lab, group: int, where: str, then: Callable[[Lab], int | None], timeout: float = 120) -> tuple[int, int]:
    """Let the stopped command's process group run STEP_S at a time, and look while it is
    stopped, until `then` finds the tool at work: (its pid, the steps it took). The tool is
    stopped when this returns."""
    deadline = time.monotonic() + timeout
    steps = 0
    while True:
        states = wait_group_stopped(group)
        pid = then(lab)
        if pid is not None:
            return pid, steps
        if not any(st not in ("Z", "X") for st in states.values()):
            pytest.fail(f"the command (process group {group}) ended before: {where}\n{run.stderr[-3000:]}")
        if run.proc.poll() is not None:
            pytest.fail(f"the build ended (status {run.proc.returncode}) before: {where}\n{run.stderr[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            run.proc.kill()
            pytest.fail(f"timed out ({steps} steps) waiting for: {where}\n{run.stderr[-3000:]}")
        os.killpg(group, signal.SIGCONT)
        time.sleep(STEP_S)
        os.killpg(group, signal.SIGSTOP)
        steps += 1


def complete_build(lab: Lab) -> dict[str, Any]:
    run = Run(lab, None)
    status = run.finish()
    assert status == 0, run.stderr[-4000:]
    assert list((lab.store / "tmp").iterdir()) == [], "a finished build leaves nothing in tmp/"
    assert [p for d in ("builds", "state", "logs") for p in (lab.store / d).rglob(".*.tmp-*")] == []
    assert list((lab.output / NAME).glob(".*")) == []
    check_output(lab, None, None)
    print(f"\nbuild completed in {time.monotonic() - run.started:.1f}s")
    manifest: dict[str, Any] = json.loads((lab.output / NAME / "manifest.json").read_text())
    return manifest


def check_image(lab: Lab, manifest: dict[str, Any]) -> None:
    folder = lab.output / NAME
    for artifact in manifest["artifacts"]:
        assert sha256(Path(artifact["path"])) == artifact["sha256"]
        assert Path(artifact["path"]).stat().st_size == artifact["size"]
    subprocess.run(["qemu-img", "check", "-q", "-f", "qcow2", str(folder / f"{NAME}.qcow2")], check=True)
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(folder / f"{NAME}.raw")], capture_output=True, text=True, check=True).stdout
    )
    assert info["format"] == "raw"
    table = json.loads(subprocess.run(["sfdisk", "--json", str(folder / f"{NAME}.raw")], capture_output=True, text=True, check=True).stdout)
    assert [p["name"] for p in table["partitiontable"]["partitions"]] == ["esp", "root"]


# --- watchers: the build is inside a tool ----------------------------------------------------


def in_tmp(lab: Lab, kind: str) -> Callable[[str], bool]:
    prefix = f"{lab.store}/tmp/{kind}-"
    return lambda root: root.startswith(prefix)


def dpkg_in_mmdebstrap(lab: Lab) -> int | None:
    under = in_tmp(lab, "base")
    return find_process(lambda comm, root, _cmd: comm == "dpkg" and under(root))


def apt_in_packages(lab: Lab) -> int | None:
    under = in_tmp(lab, "packages")
    return find_process(lambda comm, root, _cmd: comm in ("apt-get", "dpkg") and under(root))


def ansible_module_in_tree(lab: Lab) -> int | None:
    """A module's Python in a role step's view of the tree, once the play gathered (and cached) its facts."""
    under = in_tmp(lab, "role")
    if not any(p.is_file() for p in (lab.store / "state" / "facts").glob("*/*")):
        return None
    if find_process(lambda comm, _root, cmd: "ansible-playbook" in cmd and str(lab.store) in cmd) is None:
        return None
    return find_process(lambda comm, root, _cmd: comm.startswith("python3") and under(root))


def ukify_running(lab: Lab) -> int | None:
    """ukify itself (not its sandbox wrapper) alive, in the tree's sandbox."""
    pid = find_process(lambda _comm, root, cmd: "ukify build" in cmd and not cmd.startswith("bwrap") and root.startswith(str(lab.store)))
    return pid if pid is not None and alive(pid) else None


def mkfs_writing(lab: Lab) -> int | None:
    """mkfs.ext4 alive and at least 16 MiB of the root file system written into disk.raw."""
    pid = find_process(lambda comm, _root, cmd: comm == "mkfs.ext4" and str(lab.store) in cmd)
    disks = list((lab.store / "tmp").glob("image-*/disk.raw"))
    writing = bool(disks) and disks[0].stat().st_blocks * 512 > 16 << 20
    return pid if pid is not None and alive(pid) and writing else None


def qemu_img_writing(lab: Lab) -> int | None:
    pid = find_process(lambda comm, _root, cmd: comm == "qemu-img" and str(lab.store) in cmd)
    writing = any((lab.store / "tmp").glob("convert-*/disk.qcow2"))
    return pid if pid is not None and alive(pid) and writing else None


def two_trees_building(lab: Lab) -> int | None:
    """Two role steps at once (build -j 2): two Ansible controllers working in the lab's store,
    each with a module of its play running in its view's sandbox."""
    controllers = [
        pid for pid, entry in proc_entries() if "ansible-playbook" in read(entry / "cmdline") and str(lab.store) in read(entry / "cmdline")
    ]
    under = in_tmp(lab, "role")
    modules = {tree_root(pid, entry) for pid, entry in proc_entries() if read(entry / "comm").startswith("python3") and under(tree_root(pid, entry))}
    return controllers[-1] if len(controllers) >= 2 and len(modules) >= 2 else None


def debugfs_copying(lab: Lab) -> int | None:
    """`audit`: debugfs copying the image's root file system into the store's tmp/."""
    pid = find_process(lambda comm, _root, cmd: comm == "debugfs" and "rdump" in cmd and str(lab.store) in cmd)
    copying = any((lab.store / "tmp").glob("audit-*/etc"))
    return pid if pid is not None and alive(pid) and copying else None


def cp_copying(lab: Lab) -> int | None:
    pid = find_process(lambda comm, _root, cmd: comm == "cp" and str(lab.store) in cmd)
    copying = any((lab.store / "tmp").glob("packages-*/tree/*"))
    return pid if pid is not None and alive(pid) and copying else None


# --- the lab --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    need_root()
    for tool in ("mmdebstrap", "qemu-img", "sfdisk", "mkfs.vfat", "mcopy", "virsh"):
        need_tool(tool)
    out = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, check=False)
    need(out.returncode == 0, "libvirtd is not running (./setup.sh starts it)")
    root = tmp_path_factory.mktemp("faults")
    fs = root / "fs"
    fs.mkdir()
    appliances = root / "appliances"
    appliances.mkdir()
    # The smoke boot after kills runs every check of the appliance, without the boot analysis (12 s).
    text = (ROOT / "appliances" / f"{NAME}.toml").read_text()
    (appliances / f"{NAME}.toml").write_text(without_boot_analysis(text))
    shutil.copy(ROOT / "appliances" / f"{NAME}_checks.py", appliances)
    the_lab = Lab(root, fs, fs / "store", fs / "out", appliances)
    done = threading.Event()

    def sample() -> None:  # the tmpfs's peak use (it is memory)
        while not done.wait(0.25):
            with contextlib.suppress(OSError):
                the_lab.peak_used = max(the_lab.peak_used, shutil.disk_usage(fs).used)

    sampler = threading.Thread(target=sample, daemon=True)
    try:  # from the mount on, every way out (a failed setup, a failed test, Ctrl-C) unmounts
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_SIZE_MIB}m,mode=0755", "crust-faults", str(fs)], check=True)
        sampler.start()
        yield the_lab
    finally:
        done.set()
        for pid, entry in proc_entries():  # a build a failed test left running (or stopped)
            if str(root) in read(entry / "cmdline") and "build.py" in read(entry / "cmdline"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        if os.path.ismount(fs) and subprocess.run(["umount", str(fs)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(fs)], check=False)
        still_mounted = os.path.ismount(fs)
        if not still_mounted:
            shutil.rmtree(root, ignore_errors=True)
        signals = [k["signal"] for k in the_lab.kills]
        print(
            f"\n\nfault suite: {len(the_lab.kills)} kills at {len({k['where'] for k in the_lab.kills})} distinct points "
            f"({signals.count('SIGKILL')} SIGKILL, {signals.count('SIGINT')} SIGINT); disk-full cases: {len(the_lab.disk_full)}; "
            f"{time.monotonic() - the_lab.started:.0f}s; tmpfs peak use {the_lab.peak_used / (1 << 20):.0f} of {STORE_SIZE_MIB} MiB"
        )
        for k in the_lab.kills:
            print(f"  {k['n']:2} {k['signal']:7} {k['where']}  ({k['how']}, at {k['at_s']}s)")
        for case in the_lab.disk_full:
            print(f"  disk full: {case}")
        assert not still_mounted, f"{fs} is still mounted"


# --- the walk, in pipeline order ------------------------------------------------------------

STAGES: list[str] = []


def stage(test: Callable[..., None]) -> Callable[..., None]:
    """A stage of the walk: it runs only after every earlier stage passed in this session."""
    STAGES.append(test.__name__)

    @functools.wraps(test)
    def walk(**fixtures: Any) -> None:
        lab: Lab = fixtures["lab"]
        name = test.__name__
        earlier = STAGES[: STAGES.index(name)]
        missing = [s for s in earlier if s not in lab.stages]
        if missing:
            pytest.fail(
                f"run the whole module: stages depend on each other ({name} starts from what {', '.join(missing)} "
                f"left in the lab's store, and {'they' if len(missing) > 1 else 'it'} did not run in this session)",
                pytrace=False,
            )
        failed = [s for s in earlier if lab.stages[s] != "passed"]
        need(not failed, f"an earlier stage failed ({', '.join(failed)}); {name} starts from what it left")
        lab.stages[name] = "failed"  # until it returns
        test(**fixtures)
        lab.stages[name] = "passed"

    return walk


@stage
def test_kills_in_the_base_step(lab: Lab) -> None:
    where = "base: dpkg unpacking inside mmdebstrap's chroot"
    kill(lab, where, signal.SIGKILL, watch=dpkg_in_mmdebstrap)
    kill(lab, where, signal.SIGINT, watch=dpkg_in_mmdebstrap)
    kill(lab, "base: tree written, before its rename into the store", signal.SIGKILL, point="commit:base")


@stage
def test_kills_in_the_packages_and_tree_steps(lab: Lab) -> None:
    kill(lab, "packages: apt installing inside the chroot", signal.SIGINT, watch=apt_in_packages)
    kill(lab, "packages: cp copying the base tree", signal.SIGKILL, stop_at="run:cp", then=cp_copying)
    kill(lab, "role: an Ansible module running in the chroot", signal.SIGKILL, watch=ansible_module_in_tree)
    # Ansible's fact cache is written in place: stand in for a kill in the middle of that
    # write by cutting the file in half; the next run must not fail on it.
    facts = [p for p in (lab.store / "state" / "facts").glob("*/*") if p.is_file()]
    assert facts, "the play cached the tree's facts before the kill"
    for path in facts:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    kill(lab, "tree: roles applied, before sealing", signal.SIGINT, point="tree.seal")


@stage
def test_disk_full_during_assembly(lab: Lab) -> None:
    """The store's file system fills up as the image is assembled: one clear line, exit 1,
    nothing left in the store's tmp/ or the output; with space again, the build goes on."""
    run = Run(lab, "image.start:SIGSTOP")
    run.wait_until("the build stops at image.start (the tree step done)", run.stopped)
    used = shutil.disk_usage(lab.fs).used
    size_mib = used // (1 << 20) + 64  # 64 MiB left: the UKI fits, the root file system does not
    subprocess.run(["mount", "-o", f"remount,size={size_mib}m", str(lab.fs)], check=True)
    try:
        os.kill(run.pid, signal.SIGCONT)
        status = run.finish(timeout=300)
    finally:
        subprocess.run(["mount", "-o", f"remount,size={STORE_SIZE_MIB}m", str(lab.fs)], check=True)
    last = run.stderr.strip().splitlines()[-1]
    print(f"\ndisk full: status {status}: {last}")
    assert status == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert re.fullmatch(
        rf"error: image step of {NAME}: no space left on device in {re.escape(str(lab.store))}/tmp/image-\S+ "
        r"\(\d+ MiB free; fix: free space there .*--store.*\)",
        last,
    ), last
    assert list((lab.store / "tmp").iterdir()) == []
    assert not (lab.output / NAME).exists()
    wait_for_nothing_left(lab, set())
    # The real cause, in the step's log (the short error line does not guess it).
    logs = sorted((lab.store / "logs").glob("image-*.log"), key=lambda p: p.stat().st_mtime)
    cause = [line for line in logs[-1].read_text(errors="replace").splitlines() if "No space left on device" in line]
    print(f"disk full: the step log says: {cause[-1] if cause else '(nothing)'}")
    assert cause, logs[-1].read_text(errors="replace")[-3000:]
    lab.disk_full.append(f"image step, store shrunk to {size_mib} MiB ({64} MiB free): exit {status}, {last}")


@stage
def test_kills_in_the_image_and_convert_steps(lab: Lab) -> None:
    kill(lab, "image: mkfs.ext4 writing the root file system", signal.SIGKILL, stop_at="run:mkfs.ext4", then=mkfs_writing)
    kill(lab, "image: ukify building the UKI in the sandboxed tree", signal.SIGINT, stop_at="run:ukify", then=ukify_running)
    kill(lab, "image: disk written, before its rename into the store", signal.SIGKILL, point="commit:image")
    kill(lab, "convert: qemu-img writing the qcow2", signal.SIGINT, stop_at="run:qemu-img", then=qemu_img_writing)
    kill(lab, "convert: qcow2 written, before its rename into the store", signal.SIGKILL, point="commit:convert")
    manifest = complete_build(lab)
    check_image(lab, manifest)


@stage
def test_kills_while_publishing_a_new_image(lab: Lab) -> None:
    """A rebuild with a different qcow2 (compressed now): killed while replacing the published
    files, build/NAME never has a manifest that does not match its files."""
    toml = lab.appliances / f"{NAME}.toml"
    text = toml.read_text()
    assert "grow = true" in text
    toml.write_text(text.replace("grow = true", "grow = true\ncompress = true", 1))
    old = json.loads((lab.output / NAME / "manifest.json").read_text())
    kill(lab, "publish: every artifact staged, none renamed yet", signal.SIGINT, point="publish.staged")
    kill(lab, "publish: between two artifact renames", signal.SIGKILL, point="publish.artifact")
    assert not (lab.output / NAME / "manifest.json").exists() and (lab.output / NAME / ".manifest.json.previous").exists()
    kill(lab, "publish: new manifest written, before its rename", signal.SIGKILL, point="publish.manifest")
    kill(lab, "publish: new manifest written, before its rename", signal.SIGINT, point="publish.manifest")
    manifest = complete_build(lab)
    check_image(lab, manifest)
    qcow2 = {a["sha256"] for m in (old, manifest) for a in m["artifacts"] if a["format"] == "qcow2"}
    assert len(qcow2) == 2, "the rebuild published a different qcow2"


@stage
def test_sigterm_and_kills_of_a_parallel_build_an_audit_and_a_clean(lab: Lab) -> None:
    """SIGTERM (a service manager, a CI runner stopping a job) and SIGKILL during `build -j 2`
    with two tree steps at work, during `audit` while debugfs copies the image, and during
    `clean` between moving an entry out of steps/ and removing it: nothing half-done stays
    visible, and the next run of each completes."""
    # Two appliances whose tree steps are not built yet (wsgi's is): they differ from it and
    # from each other in one role variable.
    extra = {"wsgi-two": 3, "wsgi-three": 4}
    for name, workers in extra.items():
        (lab.appliances / f"{name}.toml").write_text(
            (lab.appliances / f"{NAME}.toml")
            .read_text()
            .replace(f'name = "{NAME}"', f'name = "{name}"')
            .replace("wsgi_workers = 2", f"wsgi_workers = {workers}")
        )
    both = ("build", *extra, "-j", "2")
    kill(lab, "build -j 2: two role steps at work", signal.SIGTERM, watch=two_trees_building, verb=both)
    kill(lab, "build -j 2: two role steps at work", signal.SIGKILL, watch=two_trees_building, verb=both)
    kill(lab, "role: an Ansible module running in the sandbox", signal.SIGTERM, watch=ansible_module_in_tree, verb=("build", "wsgi-two"))
    run = Run(lab, None, "build", "wsgi-two")
    assert run.finish() == 0, run.stderr[-3000:]  # the next build after the SIGTERMs completes
    kill(lab, "audit: debugfs copying the image's root", signal.SIGTERM, watch=debugfs_copying, verb=("audit", NAME))
    kill(lab, "audit: debugfs copying the image's root", signal.SIGKILL, watch=debugfs_copying, verb=("audit", NAME))
    run = Run(lab, None, "audit", NAME)
    assert run.finish() == 0, run.stderr[-3000:]
    assert list((lab.store / "tmp").iterdir()) == [], "the audit after the kills removed the killed one's copy"
    for name in extra:  # wsgi-two's entries are now unused: clean has work to do
        (lab.appliances / f"{name}.toml").unlink()
    kill(lab, "clean: an unused entry moved out of steps/, not yet removed", signal.SIGKILL, point="clean.entry", verb=("clean",))
    run = Run(lab, None, "clean")
    assert run.finish() == 0, run.stderr[-3000:]
    assert list((lab.store / "tmp").iterdir()) == []
    assert all((entry / "step.json").is_file() for entry in (lab.store / "steps").iterdir())
    manifest = complete_build(lab)  # nothing it needs was cleaned away
    check_image(lab, manifest)


@stage
def test_kills_during_the_smoke_boot_then_the_image_boots(lab: Lab) -> None:
    killed = []
    for sig in (signal.SIGKILL, signal.SIGINT):
        run = kill(lab, "test: smoke-test domain just started", sig, point="test.domain", verb=("test", NAME, "--force", "--accel", "tcg"))
        assert [d for d in crust_domains() if f"-{run.pid}-" in d] == [], "the domain died with its connection"
        killed.append(run.pid)
    run = Run(lab, None, "test", NAME, "--force", "--accel", "tcg", "--json")
    status = run.finish()
    assert status == 0, run.stderr[-4000:]
    record = json.loads("".join(run.out))[0]
    assert record["passed"] and all(c["passed"] for c in record["checks"]), record
    assert [d for d in crust_domains() if f"-{run.pid}-" in d] == []
    assert machine.RUNS_DIR.is_dir() and ports.LOCK_DIR.is_dir(), "the runs used these directories"
    for pid in killed:  # the smoke test after the kills removed what the killed runs left
        assert not list(machine.RUNS_DIR.glob(f"crust-{NAME}-{pid}-*")), f"run directory of a killed run in {machine.RUNS_DIR}"
        assert [p for p in ports.LOCK_DIR.glob("*.lock") if read(p) == str(pid)] == [], f"port lock of a killed run in {ports.LOCK_DIR}"
    print(f"\nsmoke test after the kills: {len(record['checks'])} checks passed under {record['accel']} in {time.monotonic() - run.started:.0f}s")
