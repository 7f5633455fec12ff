"""cloud-init in the wsgi image: a launch's SSH key and user data apply at first boot.

The user data is what `./build.py launch` would give in a cloud; here a NoCloud seed disk
(`test --user-data`) carries it, the datasource cloud-init finds outside a cloud. Without
one, cloud-init stays off (the wsgi appliance's own checks say so).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_py, need_tool
from tests.integration.test_smoke import variant

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]


def test_launch_user_data_applies_at_first_boot(built: Built, tmp_path: Path) -> None:
    need_tool("ssh-keygen")
    built("wsgi")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crust-test", "-f", str(tmp_path / "key")], check=True)
    public = (tmp_path / "key.pub").read_text().strip()
    user_data = tmp_path / "user-data"
    user_data.write_text(
        "#cloud-config\n"
        f"ssh_authorized_keys: [{json.dumps(public)}]\n"
        "runcmd:\n  - [sh, -c, 'echo ran from user data > /var/lib/crust-user-data-test']\n"
    )
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
"""
    folder = variant(tmp_path, "wsgi", replace=('[[test.checks]]\ntype = "no_failed_units"\n', checks.lstrip()))
    text = (folder / "wsgi.toml").read_text()
    text = text.replace(
        '[[test.checks]]\nname = "cloud-init stays off outside a cloud"', '[[test.checks]]\nname = "cloud-init is on: a seed is there"'
    )
    text = text.replace('output = "(?m)^disabled$"', 'output = "(?m)^enabled$"')
    (folder / "wsgi.toml").write_text(text)
    out = build_py("--appliances", str(folder), "test", "wsgi", "--force", "--user-data", str(user_data), "--json")
    records = json.loads(out.stdout) if out.stdout.strip() else [{"checks": []}]
    failed = [f"{c['name']}: {c['seen']}" for c in records[0]["checks"] if not c["passed"]]
    assert out.returncode == 0, f"failed: {failed}\n{out.stderr[-3000:]}"
    record = records[0]
    seen = {c["name"]: c["seen"] for c in record["checks"]}
    assert public.split()[1] in seen["the launch's key is the admin account's"]
    print(f"wsgi with user data: all checks passed {record['boot_to_pass_s']}s from domain start ({record['accel']})")


def test_user_data_file_must_exist(tmp_path: Path) -> None:
    out = build_py("test", "wsgi", "--user-data", str(tmp_path / "missing"))
    assert out.returncode == 2 and "--user-data" in out.stderr and "Traceback" not in out.stderr
