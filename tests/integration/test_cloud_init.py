"""cloud-init in the wsgi image: a launch's SSH key and user data apply at first boot.

The user data is what `./build.py launch` would give in a cloud; here a NoCloud seed disk
(`test --user-data`) carries it, the datasource cloud-init finds outside a cloud. Without
one, cloud-init stays off (the wsgi appliance's own checks say so).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_py, need_tool
from tests.integration.test_smoke import leftovers, variant

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


TCP_CHECKS = """
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


def test_launch_user_data_applies_at_first_boot_and_tcp_checks_see_guest_listeners(built: Built, tmp_path: Path) -> None:
    """One boot with a launch's user data (a NoCloud seed):

    - cloud-init applies the launch's SSH key and runs its commands; the admin account has no
      password and sshd takes none;
    - issue 13: a tcp check passed during the firmware (qemu's forward accepts on the host side).
      A listener the user data starts late is seen only once it listens; a port nothing listens
      on fails (the last check), with the expected and seen lines, the console tail and JUnit;
    - the run takes the host's KVM verdict from the file an earlier run of this host boot would
      have left (here planted), without probing again.
    """
    need_tool("ssh-keygen")
    built("wsgi")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crust-test", "-f", str(tmp_path / "key")], check=True)
    public = (tmp_path / "key.pub").read_text().strip()
    user_data = tmp_path / "user-data"
    user_data.write_text(
        "#cloud-config\n"
        f"ssh_authorized_keys: [{json.dumps(public)}]\n"
        "runcmd:\n  - [sh, -c, 'echo ran from user data > /var/lib/crust-user-data-test']\n"
        "  - [systemd-run, --unit=crust-late-listener, /bin/sh, -c, "
        "\"sleep 15; cut -d' ' -f1 /proc/uptime > /run/late-listener-uptime; exec python3 -m http.server --bind 0.0.0.0 7000\"]\n"
    )
    # A service on the host's loopback (what a build host runs: a database, a metadata proxy):
    # qemu's user network maps 10.0.2.2 to it unless restrict=on.
    host_service = socket.create_server(("127.0.0.1", 0))
    host_port = host_service.getsockname()[1]
    checks = f"""
[[test.checks]]
name = "cloud-init finished"
type = "command"
argv = ["cloud-init", "status", "--wait"]
output = "status: done"
timeout = 240

[[test.checks]]
name = "the launch's key is the admin account's"
type = "command"
argv = ["cat", "/home/admin/.ssh/authorized_keys"]
output = {json.dumps(re.escape(public.split()[1]))}

[[test.checks]]
name = "the user data ran"
type = "command"
argv = ["cat", "/var/lib/crust-user-data-test"]
output = "ran from user data"

[[test.checks]]
name = "admin has no password"
type = "command"
argv = ["passwd", "--status", "admin"]
output = "^admin L "

[[test.checks]]
name = "sshd takes no passwords"
type = "command"
argv = ["sshd", "-T"]
output = "(?m)^passwordauthentication no$"

[[test.checks]]
type = "no_failed_units"
""" + TCP_CHECKS.replace("HOST_PORT", str(host_port))
    folder = variant(tmp_path, "wsgi", replace=('[[test.checks]]\ntype = "no_failed_units"\n', checks.lstrip()))
    text = (folder / "wsgi.toml").read_text()
    text = text.replace(
        '[[test.checks]]\nname = "cloud-init stays off outside a cloud"', '[[test.checks]]\nname = "cloud-init is on: a seed is there"'
    )
    text = text.replace('output = "(?m)^disabled$"', 'output = "(?m)^enabled$"')
    text = text.replace("ports = [80]\nboot_timeout = 240\n", "ports = [80, 7000, 7001]\nboot_timeout = 360\n")
    (folder / "wsgi.toml").write_text(text)
    state = tmp_path / "accel"
    planted = {"works": False, "why": "planted by the test", "uri": "qemu:///system", "decided": "2026-01-01T00:00:00+00:00"}
    state.mkdir()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (state / f"{boot}-{hashlib.sha256(b'qemu:///system').hexdigest()[:16]}.json").write_text(json.dumps({**planted, "boot_id": boot}))
    junit = tmp_path / "junit.xml"
    out = build_py(
        "--appliances", str(folder), "test", "wsgi", "--force", "--user-data", str(user_data), "--json", "--junit", str(junit),
        env={"CRUST_ACCEL_STATE": str(state)},
    )  # fmt: skip
    host_service.close()
    records = json.loads(out.stdout) if out.stdout.strip() else [{"checks": []}]
    record = records[0]
    failed = [f"{c['name']}: {c['seen']}" for c in record["checks"] if not c["passed"]]
    assert out.returncode == 1 and failed[-1:] == [f"nothing listens on 7001: {record['checks'][-1]['seen']}"], (failed, out.stderr[-3000:])
    assert len(failed) == 1 and record["not_run"] == [], (failed, out.stderr[-3000:])
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert public.split()[1] in seen["the launch's key is the admin account's"]
    late, uptime, isolated, nothing = record["checks"][-4:]
    # ("reached" is printed only on success: a traceback quotes the source, which spells it apart)
    assert isolated["passed"] and "reached" not in isolated["seen"], isolated
    listening_since = float(uptime["seen"].split("'")[1])  # the guest's uptime when the listener started
    # Domain start precedes the guest kernel's clock: a check that passed before the listener
    # existed would show at_s < listening_since.
    assert late["at_s"] >= listening_since > 15, (late, uptime)
    assert "listening" in late["seen"]
    assert nothing["seen"] == "nothing listens on guest port 7001 (the guest's socket table)"
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
    print(f"wsgi with user data: the late listener seen at {late['at_s']}s from domain start ({record['accel']})")


def test_user_data_file_must_exist(tmp_path: Path) -> None:
    out = build_py("test", "wsgi", "--user-data", str(tmp_path / "missing"))
    assert out.returncode == 2 and "--user-data" in out.stderr and "Traceback" not in out.stderr
