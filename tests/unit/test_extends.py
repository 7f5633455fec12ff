"""Appliance files that extend another (`extends = "PARENT"`): the merge rules, and errors that
name the file and line that set the value, whichever file of the chain it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.define.project import Project
from crust.define.roles import check_vars
from crust.define.spec import explain_settings, load_appliance
from crust.errors import UserError
from tests.conftest import ROOT, build_py

PARENT = """\
name = "parent"
version = "1.0"
description = "The parent"
kickstart = "wsgi.ks.j2"
roles = ["common", "wsgi"]

[vars]
wsgi_workers = 3
wsgi_app_title = "Parent"

[image]
formats = ["qcow2"]
root_size = "3GiB"

[test]
ports = [80]

[[test.checks]]
type = "http"
port = 80
path = "/healthz"
body = "ok"

[[test.checks]]
name = "release"
type = "command"
argv = ["cat", "/etc/crust-release"]
output = "APPLIANCE=parent"
"""

CHILD = """\
name = "child"
extends = "parent"
description = "The child"

[vars]
wsgi_app_title = "Child"

roles_note = 1
"""


def write(project: Path, name: str, text: str) -> Path:
    path = project / "appliances" / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def child(project: Path, text: str) -> Path:
    write(project, "parent", PARENT)
    return write(project, "child", text)


def test_a_child_inherits_and_overrides(project: Path) -> None:
    text = CHILD.replace("roles_note = 1\n", "").replace('description = "The child"', 'description = "The child"\nroles = ["cloud_init", "wsgi"]') + (
        '\n[image]\nroot_size = "1GiB"\n\n'
        '[[test.checks]]\nname = "release"\ntype = "command"\nargv = ["cat", "/etc/crust-release"]\noutput = "APPLIANCE=child"\n\n'
        '[[test.checks]]\ntype = "unit"\nunit = "nginx.service"\n'
    )
    spec = load_appliance(child(project, text), Project.at(project))
    assert spec.name == "child" and spec.version == "1.0" and spec.description == "The child"
    assert spec.roles == ("common", "wsgi", "cloud_init")  # the parent's, then the child's new ones
    assert dict(spec.vars) == {"wsgi_workers": 3, "wsgi_app_title": "Child"}
    assert spec.image.root_size_mib == 1024 and spec.image.formats == ("raw", "qcow2")
    names = [c.name for c in spec.test.checks]
    assert names[1:] == ["release", "unit nginx.service active"] and spec.test.checks[1].options["output"] == "APPLIANCE=child"
    assert spec.chain == (project / "appliances/parent.toml", project / "appliances/child.toml")
    explained = "\n".join(explain_settings(spec))
    assert "vars.wsgi_workers" in explained and "(parent.toml:8)" in explained
    assert "'Child'  (child.toml:7)" in explained


@pytest.mark.parametrize(
    ("parent_edit", "child_text", "file", "line", "words"),
    [
        # A bad value in the parent: the error names the parent's line, even when loading the child.
        (("wsgi_workers = 3", 'wsgi_workers = "three"'), CHILD.replace("roles_note = 1\n", ""), "parent", 8, "vars.wsgi_workers: expected int"),
        (('root_size = "3GiB"', 'root_size = "3 parsecs"'), CHILD.replace("roles_note = 1\n", ""), "parent", 13, "image.root_size"),
        # The child's own mistakes: its file and line.
        (None, CHILD, "child", 8, "vars.roles_note: no role of this appliance declares"),
        (None, CHILD.replace('extends = "parent"', 'extends = "nobody"'), "child", 2, "no appliance 'nobody'"),
        (None, CHILD.replace('extends = "parent"', 'extends = "../parent"'), "child", 2, "is not an appliance name"),
        (None, CHILD.replace('extends = "parent"', 'extends = "child"'), "child", 2, "a cycle"),
        # A check inherited from the parent that needs a port the child no longer forwards.
        (None, CHILD.replace("roles_note = 1\n", "") + "\n[test]\nports = [8080]\n", "parent", 20, "guest port 80 is not forwarded"),
    ],
)
def test_errors_name_the_file_and_line_that_set_the_value(
    project: Path, parent_edit: tuple[str, str] | None, child_text: str, file: str, line: int, words: str
) -> None:
    path = child(project, child_text)
    if parent_edit:
        write(project, "parent", PARENT.replace(*parent_edit))
    with pytest.raises(UserError) as err:
        spec = load_appliance(path, Project.at(project))
        check_vars(project / "roles", spec.roles, spec.vars, spec.origins)
    assert err.value.file == str(project / "appliances" / f"{file}.toml"), err.value
    assert err.value.line == line, err.value
    assert words in err.value.problem, err.value


def test_a_cycle_through_two_files_is_named(project: Path) -> None:
    write(project, "parent", PARENT.replace('name = "parent"', 'name = "parent"\nextends = "child"'))
    path = write(project, "child", CHILD.replace("roles_note = 1\n", ""))
    with pytest.raises(UserError, match=r"a cycle \(child -> parent -> child\)"):
        load_appliance(path, Project.at(project))


def test_wsgi_debian12_is_wsgi_on_debian_12() -> None:
    """The shipped child: wsgi's roles, variables and checks, its own distribution and release check."""
    project = Project.at(ROOT)
    wsgi = load_appliance(project.appliance_path("wsgi"), project)
    old = load_appliance(project.appliance_path("wsgi-debian12"), project)
    assert old.chain[0] == project.appliance_path("wsgi")
    assert (old.roles, dict(old.vars), old.kickstart, old.test.ports, old.test.module) == (
        wsgi.roles,
        dict(wsgi.vars),
        wsgi.kickstart,
        wsgi.test.ports,
        wsgi.test.module,
    )
    assert old.distribution == "debian-12" and old.image.root_size_mib == 1024
    assert [c.name for c in old.test.checks] == [c.name for c in wsgi.test.checks]
    release = next(c for c in old.test.checks if c.name == "command cat /etc/crust-release")
    assert release.options["output"] == "APPLIANCE=wsgi-debian12"


def test_validate_explains_where_each_value_comes_from() -> None:
    out = build_py("validate", "wsgi-debian12", "--explain")
    assert out.returncode == 0, out.stderr
    assert "extends wsgi" in out.stdout
    assert "image.root_size" in out.stdout and "'1GiB'  (wsgi-debian12.toml:" in out.stdout
    assert "kickstart" in out.stdout and "'wsgi.ks.j2'  (wsgi.toml:" in out.stdout


def test_two_checks_of_one_file_with_one_name_both_stay(project: Path) -> None:
    twice = PARENT + '\n[[test.checks]]\nname = "release"\ntype = "command"\nargv = ["true"]\n'
    write(project, "parent", twice)
    spec = load_appliance(project / "appliances/parent.toml", Project.at(project))
    assert [c.name for c in spec.test.checks].count("release") == 2
    path = write(
        project, "child", CHILD.replace("roles_note = 1\n", "") + '\n[[test.checks]]\nname = "release"\ntype = "command"\nargv = ["false"]\n'
    )
    spec = load_appliance(path, Project.at(project))
    releases = [c for c in spec.test.checks if c.name == "release"]
    assert [c.options["argv"] for c in releases] == [("false",), ("true",)]  # the child's replaces the first; the second stays
