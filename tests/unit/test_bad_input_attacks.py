"""Attacks through every string an appliance file sets (issue 15): template markers, quotes,
command substitutions, separators, path components, line breaks and section markers.

Each is either refused (exit 2, one line naming the file and the line, nothing written) or
inert: `validate` accepts it and the rendered kickstart carries it as one shell-quoted word (no
template evaluated it, no shell would split it). What reaches Ansible is tagged !unsafe
(tests/unit/test_ansible_vars.py, and the probe build of tests/integration/test_trust.py).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.unit.badinput import APPLIANCE, GOOD, Expect, Workdir, check_bad, copy_project, line_of, project_root, run_cli, write_into

TOKENS = {
    "jinja-expression": "{{ 7*7 }}",
    "jinja-statement": "{% if 1 %}x{% endif %}",
    "single-quote": "it's",
    "double-quote": 'say "hi"',
    "command-substitution": "$(id)",
    "backticks": "`id`",
    "semicolon": "a;reboot",
    "dotdot": "../../etc/shadow",
    "slash": "/etc/passwd",
    "percent-section": "%post --nochroot",
}
# key in the appliance file -> whether a value is data (may be accepted, then must be inert) or a name
FIELDS = {
    "name": ("name", False),
    "kickstart": ("kickstart", False),
    "distribution": ("distribution", False),
    "role": ("roles", False),
    "module": ("module", False),
    "version": ("version", True),
    "description": ("description", True),
    "var": ("wsgi_workers", True),  # replaced by a string variable of the wsgi role below
    "check-name": ("name", True),
}


def appliance_with(field: str, value: str) -> tuple[str, str]:
    """The suite's demo appliance with one string set to value; (text, the marker of its line)."""
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = GOOD
    if field == "name":
        return text.replace('name = "demo"', f"name = {quoted}"), "name ="
    if field == "kickstart":
        return text.replace('kickstart = "demo.ks.j2"', f"kickstart = {quoted}"), "kickstart ="
    if field == "distribution":
        return text.replace('kickstart = "demo.ks.j2"', f'kickstart = "demo.ks.j2"\ndistribution = {quoted}'), "distribution ="
    if field == "role":
        return text.replace('roles = ["common", "wsgi"]', f'roles = ["common", {quoted}]'), "roles ="
    if field == "module":
        return text.replace("[test]\n", f"[test]\nmodule = {quoted}\n"), "module ="
    if field == "version":
        return text.replace('version = "1.0"', f"version = {quoted}"), "version ="
    if field == "description":
        return text.replace('description = "A demo"', f"description = {quoted}"), "description ="
    if field == "var":
        return text.replace("wsgi_workers = 3", f"wsgi_workers = 3\nwsgi_app_title = {quoted}"), "wsgi_app_title ="
    return text.replace('type = "http"', f'type = "http"\nname = {quoted}'), "name = " + quoted[:8]


CASES = [(f, t) for f in FIELDS for t in TOKENS] + [("description", "line-break"), ("version", "line-break"), ("var", "line-break")]


@pytest.mark.parametrize(("field", "token"), CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_every_string_refused_or_inert(tmp_path: Path, field: str, token: str) -> None:
    value = "first line\nsecond line" if token == "line-break" else TOKENS[token]
    project = copy_project(tmp_path / "project")
    text, marker = appliance_with(field, value)
    write_into(project, APPLIANCE, text)
    work = Workdir(tmp_path / "work")
    with project_root(project):
        outcome = run_cli(["--store", str(work.store), "--output", str(work.output), "validate", "demo"])
        if outcome.status == 0:
            assert FIELDS[field][1], f"{field} = {value!r} is a name and was accepted: {outcome.stdout}"
            rendered = run_cli(["render", "demo"])
            assert rendered.status == 0, rendered.stderr
            # Where the value reaches the kickstart, it is one shell-quoted word.
            assert value not in rendered.stdout.replace(shlex.quote(value), ""), rendered.stdout
            assert "49" not in rendered.stdout.replace("1049", ""), "a template expression was evaluated"
        else:
            check_bad(["validate", "demo"], Workdir(tmp_path / "again"), Expect(file=APPLIANCE, any_line=True))
            assert outcome.stderr.startswith(f"error: {APPLIANCE}:{line_of(text, marker)}: "), outcome.stderr
