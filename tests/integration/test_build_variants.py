"""Variants of the WSGI appliance built for real: a user's app, a failing build, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSIX_CALLER, ROOT, build_py

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


def variant(tmp_path: Path, name: str, replacements: list[tuple[str, str]]) -> Path:
    folder = tmp_path / "appliances"
    folder.mkdir(exist_ok=True)
    text = (ROOT / "appliances" / "wsgi.toml").read_text().replace('name = "wsgi"', f'name = "{name}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    (folder / f"{name}.toml").write_text(text)
    (folder / "wsgi_checks.py").write_text((ROOT / "appliances" / "wsgi_checks.py").read_text())
    return folder


def store_tmp() -> list[Path]:
    return list((ROOT / ".crust" / "tmp").iterdir())


def store_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if str(ROOT / ".crust") in line]


def test_a_users_app_is_served(built: Built, tmp_path: Path) -> None:
    """wsgi_app_path names a package directory on the host; the role serves it."""
    built("wsgi")
    app = ROOT / "tests" / "fixtures" / "hello_app" / "hello_app"
    folder = variant(
        tmp_path,
        "wsgi-custom",
        [
            ("wsgi_workers = 2", f'wsgi_workers = 2\nwsgi_app_path = "{app}"\nwsgi_app_callable = "hello_app:application"'),
            ('body = "Crust WSGI appliance"', 'body = "Hello from a custom app"'),
        ],
    )
    text = (folder / "wsgi-custom.toml").read_text()
    # The custom app does not show the build id: drop the sample app's own checks.
    text = text.replace(
        '[[test.checks]]\nname = "page shows the build inside the guest"\ntype = "python"\nfunction = "page_shows_this_build"\n\n', ""
    )
    (folder / "wsgi-custom.toml").write_text(text)
    out_dir = tmp_path / "out"
    # A caller in the POSIX locale, another time zone, umask 077: the same build and boot.
    out = build_py("--appliances", str(folder), "--output", str(out_dir), "build", "wsgi-custom", "--test", "--json", env=POSIX_CALLER, umask=0o077)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "packages up to date" in " ".join(out.stderr.split()), "the packages step is shared with wsgi"
    record = json.loads(out.stdout)[0]
    front = record["checks"][0]
    assert front["passed"] and "Hello from a custom app" in front["seen"]


def test_failed_step_leaves_nothing(built: Built, tmp_path: Path) -> None:
    built("wsgi")
    folder = variant(tmp_path, "wsgi-broken", [("wsgi_workers = 2", 'wsgi_workers = 2\nwsgi_server_requirements = ["gunicorn"]')])
    out_dir = tmp_path / "out"
    out = build_py("--appliances", str(folder), "--output", str(out_dir), "build", "wsgi-broken")
    assert out.returncode == 1, out.stderr
    assert "role step of wsgi-broken+wsgi failed" in out.stderr and "full log:" in out.stderr
    assert "gunicorn is not pinned" in out.stderr
    assert len(out.stderr.strip().splitlines()[-1]) < 1000
    assert not (out_dir / "wsgi-broken").exists()
    assert store_tmp() == [] and store_mounts() == []


def test_ctrl_c_during_a_build(built: Built, tmp_path: Path) -> None:
    built("wsgi")
    folder = variant(tmp_path, "wsgi-stopped", [("wsgi_workers = 2", "wsgi_workers = 3")])
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "build.py"), "--appliances", str(folder), "--output", str(out_dir), "build", "wsgi-stopped"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "[wsgi-stopped+wsgi] role     running" in line:  # the longest role step
            break
    time.sleep(3)  # well inside its Ansible run, with the view's overlay mounted
    assert store_mounts() == [], "mounts live in a private namespace, invisible here"
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert store_tmp() == [] and store_mounts() == []
    assert not (out_dir / "wsgi-stopped").exists()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "ansible-playbook" not in ps and "bwrap" not in ps
