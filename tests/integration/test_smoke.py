"""Boot smoke tests under libvirt, for real: qemu (TCG here) booting the built images."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import socket
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


LATE_LISTENER = """\
#cloud-config
runcmd:
  - [systemd-run, --unit=crust-late-listener, /bin/sh, -c, "sleep 15; cut -d' ' -f1 /proc/uptime > /run/late-listener-uptime; exec python3 -m http.server --bind 0.0.0.0 7000"]
"""
TCP_CHECKS = """
[test]
ports = [7000, 7001]
boot_timeout = 300

[[test.checks]]
name = "the late listener accepts"
type = "tcp"
port = 7000
timeout = 280

[[test.checks]]
name = "when it began to listen"
type = "command"
argv = ["cat", "/run/late-listener-uptime"]

[[test.checks]]
name = "the guest cannot reach the host's loopback"
type = "command"
argv = ["python3", "-c", "import socket; socket.create_connection(('10.0.2.2', HOST_PORT), timeout=5); print('reach' + 'ed')"]
status = 1
output = "(?s)Error.*"

[[test.checks]]
name = "nothing listens on 7001"
type = "tcp"
port = 7001
timeout = 5
"""


def test_tcp_checks_pass_only_once_a_guest_listener_accepts(built: Built, tmp_path: Path) -> None:
    """Issue 13: a tcp check passed during the firmware (qemu's forward accepts on the host side).
    A service that starts listening late is seen only once it listens; a port nothing listens on
    fails, with the expected and seen lines, the console tail and JUnit. The run also takes the
    host's KVM verdict from the file an earlier run of this host boot would have left (here
    planted), without probing again."""
    built("wsgi")
    text = (ROOT / "appliances" / "wsgi.toml").read_text()
    folder = tmp_path / "appliances"
    folder.mkdir()
    # A service on the host's loopback (what a build host runs: a database, a metadata proxy):
    # qemu's user network maps 10.0.2.2 to it unless restrict=on.
    host_service = socket.create_server(("127.0.0.1", 0))
    host_port = host_service.getsockname()[1]
    (folder / "wsgi.toml").write_text(text[: text.index("[test]")] + TCP_CHECKS.replace("HOST_PORT", str(host_port)))
    user_data = tmp_path / "user-data"
    user_data.write_text(LATE_LISTENER)
    state = tmp_path / "accel"
    planted = {"works": False, "why": "planted by the test", "uri": "qemu:///system", "decided": "2026-01-01T00:00:00+00:00"}
    state.mkdir()
    env = {"CRUST_ACCEL_STATE": str(state)}
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (state / f"{boot}-{hashlib.sha256(b'qemu:///system').hexdigest()[:16]}.json").write_text(json.dumps({**planted, "boot_id": boot}))
    junit = tmp_path / "junit.xml"
    out = build_py("--appliances", str(folder), "test", "wsgi", "--force", "--user-data", str(user_data), "--json", "--junit", str(junit), env=env)
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout)[0]
    host_service.close()
    late, uptime, isolated, nothing = record["checks"]
    assert late["passed"] and uptime["passed"], out.stderr
    # ("reached" is printed only on success: a traceback quotes the source, which spells it apart)
    assert isolated["passed"] and "reached" not in isolated["seen"], isolated
    listening_since = float(uptime["seen"].split("'")[1])  # the guest's uptime when the listener started
    # Domain start precedes the guest kernel's clock: a check that passed before the listener
    # existed would show at_s < listening_since.
    assert late["at_s"] >= listening_since > 15, (late, uptime)
    assert late["attempts"] > 1 and "listening" in late["seen"]
    assert not nothing["passed"] and nothing["seen"] == "nothing listens on guest port 7001 (the guest's socket table)"
    assert "FAILED check 'nothing listens on 7001'" in out.stderr
    assert "expected: guest port 7001 accepts connections" in out.stderr
    assert "seen:     nothing listens on guest port 7001" in out.stderr
    assert "last lines of the serial console" in out.stderr
    failures = [c for c in ET.parse(junit).getroot().iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["nothing listens on 7001"]
    # The planted verdict was used: no KVM attempt, and the record says where it came from.
    assert record["accel"] == "tcg" and "planted by the test; probed 2026-01-01T00:00:00+00:00" in record["accel_reason"]
    assert record["accel_decision"]["probe"]["remembered"] is True
    assert "did not start" not in out.stderr and "probed now" not in out.stderr
    assert leftovers("wsgi") == []


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
