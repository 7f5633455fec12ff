"""Values from appliance files reach Ansible as data (issue 15): never templated, so Jinja in a
description or a variable is not evaluated by the controller (on the host, as root)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from crust.tree.ansible import unsafe_yaml
from tests.conftest import ROOT

HOSTILE = {
    "crust_description": "Braces {{ 7 * 7 }} and {% raw %}",
    "probe_text": "{{ lookup('pipe', 'touch PWNED') }}",
    "probe_list": ["{{ 6 * 7 }}", 3, True],
    "probe_map": {"k": "{{ lookup('env', 'HOME') }}"},
    # Strings a plain YAML scalar would read as something else (Ansible resolves an !unsafe
    # scalar's type as if it were plain): they stay the strings they are.
    "probe_lookalikes": ["*", "123", "true", "null", "~", "1.5", "2026-01-01", "=", "<<", "!", "&", "yes"],
}


def test_values_come_out_literally_and_run_nothing(tmp_path: Path) -> None:
    (tmp_path / "vars.yml").write_text(unsafe_yaml(HOSTILE))
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "ansible.builtin.debug": {
                        "msg": "{{ {'d': crust_description, 't': probe_text, 'l': probe_list, 'm': probe_map, 's': probe_lookalikes} | to_json }}"
                    }
                }
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'vars.yml'}", str(tmp_path / "play.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_LOCALHOST_WARNING": "0", "HOME": str(tmp_path)},
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    msg = json.loads(json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"])
    assert msg == {
        "d": HOSTILE["crust_description"],
        "t": HOSTILE["probe_text"],
        "l": HOSTILE["probe_list"],
        "m": HOSTILE["probe_map"],
        "s": HOSTILE["probe_lookalikes"],
    }
    assert not (tmp_path / "PWNED").exists()


def test_json_extra_vars_would_have_been_templated(tmp_path: Path) -> None:
    """The test above can fail: the same values given as JSON (as Crust did before) are evaluated."""
    (tmp_path / "vars.json").write_text(json.dumps(HOSTILE))
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"ansible.builtin.debug": {"msg": "{{ probe_text }}"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_LOCALHOST_WARNING": "0", "HOME": str(tmp_path)},
        check=False,
    )
    assert (tmp_path / "PWNED").exists()
