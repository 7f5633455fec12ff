"""crust/tree/ansible_boot.py: modules start as under plain python3, their compiled imports kept.

Run with this host's Python as the tree's would run it: a program on stdin (as Ansible's
pipelining sends one) or a file, importing from a zip named as AnsiballZ names its payload.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crust.tree.ansible import BOOT, module_cache_report
from crust.tree.ansible_boot import SERVE

PROGRAM = """
import sys
sys.path.insert(0, {zip!r})
import pkg.mod
import __main__
print(pkg.mod.VALUE, getattr(__main__, "__file__", None), sys.argv, any(p.endswith("boot") for p in sys.path))
"""


def make_payload(where: Path, value: str) -> Path:
    payload = where / "ansible_probe_payload.zip"
    with zipfile.ZipFile(payload, "w") as z:
        z.writestr("pkg/__init__.py", "INIT = 1\n")
        z.writestr("pkg/mod.py", f"VALUE = {value!r}\n")
    return payload


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """The boot script as the sandbox sees it: a directory holding it and its cache."""
    home = tmp_path / "boot"
    (home / "cache").mkdir(parents=True)
    shutil.copy(BOOT, home / BOOT.name)
    return home


def run_boot(boot: Path, program: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(boot / BOOT.name), *args], input=program, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_module_from_stdin_runs_as_under_plain_python_and_its_imports_are_kept(boot: Path, tmp_path: Path) -> None:
    payload = make_payload(tmp_path, "one")
    assert run_boot(boot, PROGRAM.format(zip=str(payload))) == "one None [''] False"
    kept = sorted(p.name for p in (boot / "cache").iterdir() if p.name != "stats")
    assert len(kept) == 2  # pkg and pkg.mod, compiled once
    assert run_boot(boot, PROGRAM.format(zip=str(payload))) == "one None [''] False"
    assert sorted(p.name for p in (boot / "cache").iterdir() if p.name != "stats") == kept  # served, not compiled again
    assert module_cache_report(boot / "cache") == (
        "crust: ansible module imports: 2 served compiled, 2 compiled; module runs: 0 forked with the server's imports, 0 forked with their own, 2 alone"
    )


def test_other_source_under_the_same_name_is_never_served_from_the_cache(boot: Path, tmp_path: Path) -> None:
    payload = make_payload(tmp_path, "one")
    run_boot(boot, PROGRAM.format(zip=str(payload)))
    payload.unlink()
    payload = make_payload(tmp_path, "two")
    assert run_boot(boot, PROGRAM.format(zip=str(payload))).startswith("two ")


def test_a_corrupt_cache_entry_is_compiled_again(boot: Path, tmp_path: Path) -> None:
    payload = make_payload(tmp_path, "one")
    run_boot(boot, PROGRAM.format(zip=str(payload)))
    for entry in (boot / "cache").iterdir():
        if entry.name != "stats":
            entry.write_bytes(b"\x00garbage")
    assert run_boot(boot, PROGRAM.format(zip=str(payload))).startswith("one ")


def test_without_a_cache_directory_modules_still_run(boot: Path, tmp_path: Path) -> None:
    (boot / "cache").rmdir()
    payload = make_payload(tmp_path, "one")
    assert run_boot(boot, PROGRAM.format(zip=str(payload))).startswith("one ")


def test_a_module_file_runs_with_its_arguments(boot: Path, tmp_path: Path) -> None:
    payload = make_payload(tmp_path, "one")
    script = tmp_path / "AnsiballZ_probe.py"
    script.write_text(PROGRAM.format(zip=str(payload)))
    assert run_boot(boot, "", str(script), "execute") == f"one {script} ['{script}', 'execute'] False"


def test_a_failing_module_fails_as_under_plain_python(boot: Path) -> None:
    out = subprocess.run([sys.executable, str(boot / BOOT.name)], input="import sys\nsys.exit(3)\n", capture_output=True, text=True, check=False)
    assert out.returncode == 3
    out = subprocess.run([sys.executable, str(boot / BOOT.name)], input="raise ValueError('x')\n", capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "ValueError: x" in out.stderr


# The module server: a program shaped as AnsiballZ's wrapper (its zip as zip_data, written to a
# file named *_payload.zip, imported through _loader.run_module), with a fake module_utils.

WRAPPER = """
import os, sys, base64, tempfile
def _ansiballz_main(zip_data, module_fqn):
    temp = tempfile.mkdtemp()
    path = os.path.join(temp, "ansible_probe_payload.zip")
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(zip_data))
    sys.path.insert(0, path)
    from ansible.module_utils._internal._ansiballz import _loader
    _loader.run_module(modlib_path=path, module_fqn=module_fqn)

if __name__ == "__main__":
    _ansiballz_main(
module_fqn='ansible.modules.probe',
zip_data='{zip}',
)
"""

LOADER_SOURCE = """
import runpy
from ansible.module_utils import basic
def run_module(*, modlib_path, module_fqn):
    runpy.run_module(module_fqn, run_name="__main__", alter_sys=True)
    raise RuntimeError("no exit")
"""

MODULE_SOURCE = """
import os, sys
from ansible.module_utils import basic
from ansible.module_utils import extra
print(basic.FLAVOUR, extra.VALUE, os.getcwd(), os.environ.get("PROBE"), "%o" % os.umask(0o22), os.getpid() != basic.PID)
sys.stdout.flush()
if os.environ.get("PROBE_SLEEP"):
    open(os.environ["PROBE_SLEEP"], "w").write(str(os.getpid()))
    import time
    time.sleep(60)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


def wrapper_program(flavour: str, extra: str = "extra") -> str:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("ansible/__init__.py", "")
        z.writestr("ansible/module_utils/__init__.py", "")
        z.writestr("ansible/module_utils/basic.py", f"import os\nFLAVOUR = {flavour!r}\nPID = os.getpid()\n")
        z.writestr("ansible/module_utils/extra.py", f"VALUE = {extra!r}\n")
        z.writestr("ansible/module_utils/_internal/__init__.py", "")
        z.writestr("ansible/module_utils/_internal/_ansiballz/__init__.py", "")
        z.writestr("ansible/module_utils/_internal/_ansiballz/_loader.py", LOADER_SOURCE)
        z.writestr("ansible/modules/__init__.py", "")
        z.writestr("ansible/modules/probe.py", MODULE_SOURCE)
    return WRAPPER.replace("{zip}", base64.b64encode(data.getvalue()).decode())


@pytest.fixture
def server(boot: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, str(boot / BOOT.name), SERVE])
    deadline = time.monotonic() + 10
    while not (boot / "server" / "socket").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the module server did not start"
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def run_module(boot: Path, program: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(boot / BOOT.name)],
        input=program,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PROBE": "here", **env},
    )


def runs(boot: Path) -> list[str]:
    return [line.split()[2] for line in (boot / "cache" / "stats").read_text().splitlines()]


def test_without_a_server_the_wrapped_module_runs_alone(boot: Path, tmp_path: Path) -> None:
    out = run_module(boot, wrapper_program("core"), tmp_path)
    assert (out.returncode, out.stdout) == (0, f"core extra {tmp_path} here 22 False\n"), out.stderr
    assert runs(boot) == ["alone"]


def test_the_server_runs_modules_with_its_imports_as_they_would_run_alone(boot: Path, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    program = wrapper_program("core")
    first = run_module(boot, program, tmp_path)
    second = run_module(boot, program, tmp_path, PROBE="again", PROBE_EXIT="3")
    assert (first.returncode, first.stdout) == (0, f"core extra {tmp_path} here 22 True\n"), first.stderr
    assert (second.returncode, second.stdout) == (3, f"core extra {tmp_path} again 22 True\n"), second.stderr
    assert runs(boot) == ["server", "forked", "forked"]  # basic imported once, by the server
    assert server.poll() is None


def test_a_payload_with_other_module_utils_sources_imports_its_own(boot: Path, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    run_module(boot, wrapper_program("core"), tmp_path)
    out = run_module(boot, wrapper_program("a role's own basic", extra="another"), tmp_path)
    assert (out.returncode, out.stdout) == (0, f"a role's own basic another {tmp_path} here 22 False\n"), out.stderr
    out = run_module(boot, wrapper_program("core", extra="another"), tmp_path)  # what basic did not import comes from the payload
    assert (out.returncode, out.stdout) == (0, f"core another {tmp_path} here 22 True\n"), out.stderr
    assert runs(boot) == ["server", "forked", "fresh", "forked"]


def test_a_failing_program_fails_through_the_server_as_alone(boot: Path, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    out = run_module(boot, "raise ValueError('x')\n", tmp_path)
    assert out.returncode == 1 and "ValueError: x" in out.stderr
    assert run_module(boot, "import sys\nsys.exit(4)\n", tmp_path).returncode == 4
    assert runs(boot) == ["fresh", "fresh"]


def test_a_stopped_run_stops_its_module(boot: Path, server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    client = subprocess.Popen(
        [sys.executable, str(boot / BOOT.name)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PROBE_SLEEP": str(marker)},
        cwd=tmp_path,
    )
    assert client.stdin is not None
    client.stdin.write(wrapper_program("core").encode())
    client.stdin.close()
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the module did not start"
        time.sleep(0.01)
    child = int(marker.read_text())
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, "the module outlived its run"
        time.sleep(0.01)
    assert server.poll() is None
