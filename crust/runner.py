"""The one way Crust runs external commands, plus tool checks and the build sandbox.

Every command is an argv list (never a shell string). The exact command is logged to the
current step log, its output is streamed there, and a failure raises CommandError carrying the
command, its exit status and the tail of its output.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO

from crust import faults
from crust.errors import CommandError, UserError, command_name
from crust.log import current as current_log
from crust.log import log_line
from crust.redact import redact
from crust.trust.secrets import child_env

# Debian package that provides each external tool Crust calls.
TOOL_PACKAGES: Mapping[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "bwrap": "bubblewrap",
    "unshare": "util-linux",
    "mount": "mount",
    "chroot": "coreutils",
    "dd": "coreutils",
    "sfdisk": "fdisk",
    "tar": "tar",
    "gzip": "gzip",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "objcopy": "binutils",
    "qemu-img": "qemu-utils",
    "diffoscope": "diffoscope-minimal",
    "qemu-system-x86_64": "qemu-system-x86",
    "ansible-playbook": "the ansible Python package (pip install -r requirements.txt)",
}

PR_SET_PDEATHSIG = 1
# Every command runs in one locale and time zone, whatever the caller's: a build on a server
# with LC_ALL=C (Ansible refuses a non-UTF-8 locale) or another TZ is the same build.
FIXED_ENV: Mapping[str, str] = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
# What every command of the step being built sees besides (SOURCE_DATE_EPOCH): set per step by
# the executor, per thread (two appliances built at once may have two).
_step_env: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("step_env", default=MappingProxyType({}))


@contextlib.contextmanager
def step_env(values: Mapping[str, str]) -> Iterator[None]:
    """Every command run() starts in this thread sees values in its environment (sandboxed ones too)."""
    token = _step_env.set(dict(values))
    try:
        yield
    finally:
        _step_env.reset(token)


_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def find_tool(name: str) -> str | None:
    """Path of a tool: the venv's bin first (for ansible-playbook), then PATH and sbin."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def check_tools(names: Sequence[str]) -> None:
    """Fail before any work when a tool is missing, naming the package that provides it."""
    missing = [n for n in names if find_tool(n) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(n, n) for n in missing})
        raise UserError(
            f"missing tool{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            hint=f"install {', '.join(pkgs)} (or run ./setup.sh)",
        )


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when Crust dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    status: int
    stdout: str


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> Result:
    """Run argv, log it, stream its output to the step log; raise CommandError on failure.

    With capture=True stdout is returned (stderr still goes to the log). The child runs in
    its own session and dies with Crust; on Ctrl-C its whole process group is stopped.
    """
    args = [os.fspath(a) for a in argv]
    if any(a == "" for a in args[:1]):
        raise ValueError("empty command")
    exe = find_tool(args[0]) if "/" not in args[0] else args[0]
    if exe is None:
        check_tools([args[0]])
        raise AssertionError("unreachable")
    log = current_log()
    log_line(f"$ {shlex.join(args)}")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    # No credential of Crust's environment reaches a child; a command in the build sandbox
    # (it works on the tree) inherits only an allow-list (crust.buildsecrets.child_env).
    full_env = child_env(os.environ, sandboxed=args[0] in ("unshare", "bwrap"))
    full_env.update(FIXED_ENV)  # whatever the caller's locale and time zone (Ansible refuses a non-UTF-8 one)
    full_env = {k: v for k, v in full_env.items() if not k.startswith("LC_") or k == "LC_ALL"}
    full_env.pop("LANGUAGE", None)
    full_env.update(_step_env.get())
    full_env.update(env or {})
    started = time.monotonic()
    if _stopping.is_set():  # stopped (Ctrl-C, SIGTERM): start nothing more, in any thread
        raise KeyboardInterrupt
    proc = subprocess.Popen(
        [exe, *args[1:]],
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture else subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, async-signal-safe
    )
    out_chunks: list[str] = []
    with _live_lock:
        _live.add(proc)
    try:
        if _stopping.is_set():  # stop_all() ran between the start and the line above
            raise KeyboardInterrupt
        faults.point(f"run:{command_name(args)}", child=proc.pid)  # its own session: pgid = pid
        if capture:
            out, err = proc.communicate(input_text, timeout=timeout)
            out_chunks.append(out)
            for line in redact(err).splitlines():
                tail.append(line)
                if log is not None:
                    log.write(line + "\n")
        else:
            if input_text is not None and proc.stdin is not None:
                feed_stdin(proc.stdin, input_text)
            assert proc.stdout is not None
            for line in map(redact, proc.stdout):  # no given secret or credential in a log or an error
                tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
            proc.wait(timeout=timeout)
    except BaseException:
        stop_process_group(proc)
        raise
    finally:
        with _live_lock:
            _live.discard(proc)
        if log is not None:
            log.flush()
    status = proc.returncode
    if _stopping.is_set():
        raise KeyboardInterrupt
    log_line(f"# exit {status} after {time.monotonic() - started:.1f}s")
    if check and status != 0:
        log_path = Path(log.name) if log is not None and isinstance(getattr(log, "name", None), str) else None
        raise CommandError(args, status, "\n".join(tail), log_path)
    return Result(tuple(args), status, "".join(out_chunks))


def feed_stdin(stdin: IO[str], text: str) -> None:
    """Write text to a child's stdin and close it. A child that exits without reading it all
    closes the pipe: that is no error of Crust's (as in Popen.communicate), the child's exit
    status tells whether the command failed."""
    with contextlib.suppress(BrokenPipeError):
        stdin.write(text)
    with contextlib.suppress(BrokenPipeError):
        stdin.close()  # flushes what write() left in the buffer: the same broken pipe


def stop_all() -> None:
    """Stop every command run() is waiting for, in every thread (Ctrl-C with parallel builds)."""
    _stopping.set()
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


def stop_process_group(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sandboxed(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Wrap a host-side command (mmdebstrap, the Ansible controller, a host script) to run in
    private mount and PID namespaces: whatever it mounts, and every process it starts,
    disappear with it, even when Crust is killed with SIGKILL. (Commands that work inside a
    tree run in the build sandbox instead: crust/tree/sandbox.py.)"""
    # --mount-proc: a /proc of the new PID namespace (bubblewrap, run from the Ansible controller,
    # hangs reading its children's state through the host's /proc).
    return ["unshare", "--fork", "--pid", "--kill-child", "--mount", "--propagation", "private", "--mount-proc", "--", *(os.fspath(a) for a in argv)]
