"""The work behind tests/integration/test_reproducible.py: every shipped appliance published into
a directory of its own (wsgi in every format, and a copy that adds a role writing the clock), then
one `verify --rebuild` of them all. The session may run it behind the tests that boot (see
conftest.py); the test's fixture runs it itself otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import C_LOCALE_CALLER, POSIX_CALLER, ROOT

SHIPPED = sorted(p.stem for p in (ROOT / "appliances").glob("*.toml"))
ALL_FORMATS = ("vmdk", "vhd", "ova", "gce")  # besides raw and qcow2: wsgi is checked in all six
CLOCK_ROLE = """---
- name: Write the time of the build (a deliberately non-reproducible role, a test fixture)
  ansible.builtin.shell: date +%s%N > /etc/build-clock
  changed_when: true
"""

# (status of verify, its JSON report, the output directory, its stderr, the work directory to remove)
Verified = tuple[int, dict[str, Any], Path, str, Path]


def verify_shipped(build: Callable[..., subprocess.CompletedProcess[str]], work: Path) -> Verified:
    """build is tests.conftest.build_py or one like it; the originals are the session's steps."""
    apps, roles, output = work / "appliances", work / "roles", work / "build"
    shutil.copytree(ROOT / "appliances", apps)
    shutil.copytree(ROOT / "roles", roles, symlinks=True)
    (roles / "clock" / "tasks").mkdir(parents=True)
    (roles / "clock" / "tasks" / "main.yml").write_text(CLOCK_ROLE)
    text = (apps / "wsgi.toml").read_text().replace('name = "wsgi"', 'name = "wsgi-clock"')
    roles_line = next(line for line in text.splitlines() if line.startswith("roles = [") and line.endswith('"wsgi"]'))
    (apps / "wsgi-clock.toml").write_text(text.replace(roles_line, roles_line[:-1] + ', "clock"]'))
    where = ["--appliances", str(apps), "--roles", str(roles), "--output", str(output)]
    # The originals: the session's steps (published again here), wsgi in every format, and the clock appliance.
    out = build(*where, "build", *[n for n in SHIPPED if n != "wsgi"], "wsgi-clock", env=POSIX_CALLER)
    assert out.returncode == 0, out.stderr[-3000:]
    out = build(*where, "build", "wsgi", *(f"--format={f}" for f in ALL_FORMATS), env=POSIX_CALLER)
    assert out.returncode == 0, out.stderr[-3000:]
    result = build(*where, "verify", "--rebuild", "--json", *SHIPPED, "wsgi-clock", env=C_LOCALE_CALLER, umask=0o022)
    assert result.stdout.strip(), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout), output, result.stderr, work
