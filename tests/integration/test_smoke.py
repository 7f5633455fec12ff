"""Boot smoke tests under libvirt, for real: qemu (TCG here) booting the built images."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, UTF8_CALLER, build_py, need
from tests.integration.conftest import crust_domains

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


@pytest.fixture(autouse=True)
def libvirt_up() -> None:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, check=False)
    need(out.returncode == 0, "libvirtd is not running (./setup.sh starts it)")


def leftovers(name: str) -> list[str]:
    """Domains, per-run directories and port locks a test run must not leave behind."""
    found = crust_domains()
    found += [str(p) for p in Path("/var/lib/crust/runs").glob(f"crust-{name}-*")]
    found += [str(p) for p in Path("/run/crust/ports").glob("*.lock")]
    return found


def variant(tmp_path: Path, name: str, extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    """A copy of an appliance's file with changed checks (same image: same name, same build)."""
    folder = tmp_path / "appliances"
    folder.mkdir(exist_ok=True)
    text = (ROOT / "appliances" / f"{name}.toml").read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    (folder / f"{name}.toml").write_text(text + extra)
    shutil.copy(ROOT / "appliances" / "wsgi_checks.py", folder)
    return folder


def test_wsgi_passes_all_checks(built: Built, tmp_path: Path) -> None:
    manifest = built("wsgi")
    junit = tmp_path / "junit.xml"
    out = build_py("test", "wsgi", "--force", "--json", "--junit", str(junit), env=UTF8_CALLER, umask=0o077)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)[0]
    assert record["passed"] and not record["reused"]
    assert record["accel"] in ("kvm", "tcg") and f"under {record['accel']}" in out.stderr
    declared = (ROOT / "appliances" / "wsgi.toml").read_text().count("[[test.checks]]")
    assert [c["passed"] for c in record["checks"]] == [True] * declared
    # The guest agent read a real value from inside the guest: this build's identity file.
    release = next(c for c in record["checks"] if c["type"] == "command")
    assert "APPLIANCE=wsgi" in release["seen"]
    assert record["image"]["sha256"] == next(a["sha256"] for a in manifest["artifacts"] if a["format"] == "qcow2")
    cases = ET.parse(junit).getroot().findall("testsuite/testcase")
    assert len(cases) == declared and all(c.find("failure") is None for c in cases)
    python_check = next(c for c in record["checks"] if c["type"] == "python")
    assert python_check["seen"] == f"page shows build {manifest['build_id']}, as /etc/crust-release says"
    smoke = ROOT / "build" / "wsgi" / "smoke"
    assert (smoke / "serial.log").stat().st_size > 0
    assert json.loads((smoke / "results.json").read_text())["passed"]
    assert "Startup finished" in record["boot_analysis"]
    print(f"domain start to all checks passed: {record['boot_to_pass_s']}s under {record['accel']}")
    assert leftovers("wsgi") == []

    # Unchanged image and checks: the recorded result, without booting.
    again = build_py("test", "wsgi", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["reused"] is True
    assert "booting" not in again.stderr


def test_unbootable_image_fails_within_the_timeout(tmp_path: Path) -> None:
    """A disk with no operating system: the run fails at the overall timeout with the console tail."""
    out_dir = tmp_path / "out" / "wsgi"
    out_dir.mkdir(parents=True)
    blank = out_dir / "wsgi.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "64M"], check=True)
    manifest = {"build_id": "000000000000", "artifacts": [{"format": "qcow2", "path": str(blank), "sha256": "0" * 64}]}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    folder = variant(tmp_path, "wsgi", replace=("boot_timeout = 240", "boot_timeout = 25"))
    started = time.monotonic()
    out = build_py("--appliances", str(folder), "--output", str(tmp_path / "out"), "test", "wsgi", "--force", "--accel", "tcg")
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert "FAILED check 'front page names the appliance'" in out.stderr
    assert "| " in out.stderr  # console lines (the firmware's boot attempts)
    assert crust_domains() == []
    assert leftovers("wsgi") == []


def test_ctrl_c_cleans_up(built: Built) -> None:
    built("wsgi")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "build.py"), "test", "wsgi", "--force", "--accel", "tcg"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not crust_domains() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert crust_domains(), "the domain never started"
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert leftovers("wsgi") == []


def test_two_appliances_at_once(built: Built) -> None:
    """Different appliances tested concurrently: no clash of names, ports or files."""
    built("wsgi")
    built("wsgi-debian12")
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def test(name: str) -> None:
        results[name] = build_py("test", name, "--force", "--json")

    threads = [threading.Thread(target=test, args=(n,)) for n in ("wsgi", "wsgi-debian12")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = {n: json.loads(r.stdout)[0] for n, r in results.items() if r.returncode == 0}
    assert set(records) == {"wsgi", "wsgi-debian12"}, {n: r.stderr[-3000:] for n, r in results.items()}
    assert records["wsgi"]["domain"] != records["wsgi-debian12"]["domain"]
    assert all(r["passed"] for r in records.values())
    assert leftovers("wsgi") == [] and leftovers("wsgi-debian12") == []


def test_no_daemon_gives_a_one_line_hint(tmp_path: Path) -> None:
    out = build_py("test", "wsgi", "--force", "--connect", "qemu+unix:///system?socket=/nonexistent/sock")
    if (ROOT / "build" / "wsgi" / "manifest.json").exists():
        assert out.returncode == 2, out.stderr
        assert "no libvirt daemon answers" in out.stderr and "fix:" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    else:
        assert out.returncode == 2


def test_not_built_is_bad_input(tmp_path: Path) -> None:
    out = build_py("--output", str(tmp_path), "test", "wsgi")
    assert out.returncode == 2
    assert "is not built" in out.stderr
