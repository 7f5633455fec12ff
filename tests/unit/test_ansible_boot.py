"""crust/tree/ansible_boot.py: modules start as under plain python3, their compiled imports kept.

Run with this host's Python as the tree's would run it: a program on stdin (as Ansible's
pipelining sends one) or a file, importing from a zip named as AnsiballZ names its payload.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crust.tree.ansible import BOOT, module_cache_report

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
    assert module_cache_report(boot / "cache") == "crust: ansible module imports: 2 served compiled, 2 compiled"


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
