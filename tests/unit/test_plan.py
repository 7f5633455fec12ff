"""Step ids: content hashes of inputs. Touching a file changes nothing; editing one changes its step."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import yaml

from crust.build.explain import explain_change
from crust.build.plan import Step, plan_appliance
from crust.define.project import Project
from crust.distros import debian


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network in unit tests: a fixed mirror state."""
    fixed = dataclasses.replace(debian.BACKEND, mirror_state=lambda distro, state_dir, refresh: {"trixie": "aa", "trixie-security": "bb"})
    monkeypatch.setattr(debian, "BACKEND", fixed)


def ids(project: Path, tmp_path: Path) -> dict[str, str]:
    plan = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    return {s.kind + ":" + s.name: s.id for s in plan.steps}


def test_ids_are_stable_and_touch_changes_nothing(project: Path, tmp_path: Path, offline: None) -> None:
    first = ids(project, tmp_path)
    template = project / "roles/wsgi/templates/nginx-site.conf.j2"
    later = time.time() + 100
    os.utime(template, (later, later))
    (project / "roles/wsgi/README.unused").write_text("not a role input? it is: every role file counts")
    (project / "README.md").write_text("a file no step uses")
    second = ids(project, tmp_path)
    assert first["base:debian-13"] == second["base:debian-13"]
    # A file added inside a role is a role file (Ansible may use it): the tree changes.
    assert first["tree:wsgi"] != second["tree:wsgi"]


def test_unused_file_changes_nothing(project: Path, tmp_path: Path, offline: None) -> None:
    first = ids(project, tmp_path)
    (project / "notes.txt").write_text("unused")
    (project / "kickstarts/unused.ks.j2").write_text("{% extends 'base.ks.j2' %}")
    assert ids(project, tmp_path) == first


def test_role_edit_reruns_from_the_tree(project: Path, tmp_path: Path, offline: None) -> None:
    first = ids(project, tmp_path)
    template = project / "roles/wsgi/templates/nginx-site.conf.j2"
    template.write_text(template.read_text() + "# edited\n")
    second = ids(project, tmp_path)
    assert first["base:debian-13"] == second["base:debian-13"]
    assert first["packages:wsgi"] == second["packages:wsgi"]
    for key in ("tree:wsgi", "image:wsgi", "convert:wsgi.qcow2"):
        assert first[key] != second[key], key


def role_step(project: Path, state: Path, name: str) -> Step:
    return next(s for s in plan_appliance(Project.at(project), "wsgi", state).steps if s.name == name)


def test_a_role_included_by_name_is_part_of_the_role_step(project: Path, tmp_path: Path, offline: None) -> None:
    """wsgi's tasks include python_app (include_role, not a meta dependency): an edit of
    python_app must rebuild wsgi's role step, and plan names the file."""
    before = role_step(project, tmp_path / "state", "wsgi+wsgi")
    tasks = project / "roles/python_app/tasks/main.yml"
    tasks.write_text(tasks.read_text() + "# edited\n")
    after = role_step(project, tmp_path / "state", "wsgi+wsgi")
    assert before.id != after.id
    why = explain_change(after, {"inputs": dict(before.inputs), "explain": dict(before.explain)})
    assert why == "role file python_app/tasks/main.yml changed"


def test_an_include_is_found_under_ansible_tags_and_a_templated_name_is_not_followed(tmp_path: Path) -> None:
    from crust.define.role_includes import roles_shaping

    for name, tasks in {
        "top": "- ansible.builtin.include_role: {name: middle}\n  vars: {x: !unsafe '{{ y }}'}\n- block:\n    - import_role: {name: '{{ pick }}'}\n",
        "middle": "- ansible.builtin.debug: {msg: hi}\n- ansible.legacy.import_role:\n    name: last\n",
        "last": "- ansible.builtin.debug: {msg: hi}\n",
        "unused": "- ansible.builtin.debug: {msg: hi}\n",
    }.items():
        (tmp_path / name / "tasks").mkdir(parents=True)
        (tmp_path / name / "tasks/main.yml").write_text(tasks)
    assert roles_shaping(tmp_path, ("top",)) == ("top", "middle", "last")


def test_an_include_naming_a_path_is_not_followed_out_of_the_roles_dir(tmp_path: Path) -> None:
    """The name is data from a pull request: `name: ../outside` must not make the plan read
    (and hash) a directory outside roles/, even one shaped like a role."""
    from crust.define.role_includes import roles_shaping

    roles = tmp_path / "roles"
    (roles / "top/tasks").mkdir(parents=True)
    (roles / "top/tasks/main.yml").write_text("- ansible.builtin.include_role: {name: ../outside}\n- include_role: {name: /etc}\n")
    (tmp_path / "outside/tasks").mkdir(parents=True)
    (tmp_path / "outside/tasks/main.yml").write_text("- ansible.builtin.debug: {msg: hi}\n")
    assert roles_shaping(roles, ("top",)) == ("top",)


def test_explain_names_the_changed_role_file(project: Path, tmp_path: Path, offline: None) -> None:
    before = role_step(project, tmp_path / "state", "wsgi+wsgi")
    template = project / "roles/wsgi/templates/nginx-site.conf.j2"
    template.write_text(template.read_text() + "# edited\n")
    after = role_step(project, tmp_path / "state", "wsgi+wsgi")
    why = explain_change(after, {"inputs": dict(before.inputs), "explain": dict(before.explain)})
    assert why == "role file wsgi/templates/nginx-site.conf.j2 changed"


def test_editing_the_last_role_keeps_the_role_steps_before_it(project: Path, tmp_path: Path, offline: None) -> None:
    """Issue 21: a step per role, each id covering the one before it."""
    before = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    assert [s.name for s in before.steps_of("role")] == ["wsgi+common", "wsgi+cloud_init", "wsgi+wsgi"]
    template = project / "roles/wsgi/templates/nginx-site.conf.j2"
    template.write_text(template.read_text() + "# edited\n")
    after = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    changed = [a.name for a, b in zip(after.steps, before.steps, strict=True) if a.id != b.id]
    assert changed == ["wsgi+wsgi", "wsgi", "wsgi", "wsgi.qcow2"]  # that role, the tree, the image, the qcow2
    template = project / "roles/common/templates/crust-release.j2"
    template.write_text(template.read_text() + "# edited\n")
    first = plan_appliance(Project.at(project), "wsgi", tmp_path / "state")
    assert [a.kind for a, b in zip(first.steps, after.steps, strict=True) if a.id != b.id] == ["role"] * 3 + ["tree", "image", "convert"]


def test_explain_names_template_and_variable(project: Path, tmp_path: Path, offline: None) -> None:
    before = plan_appliance(Project.at(project), "wsgi", tmp_path / "state").step("tree")
    first_role = role_step(project, tmp_path / "state", "wsgi+common")
    ks = project / "kickstarts/wsgi.ks.j2"
    ks.write_text(ks.read_text().replace("{% block post %}", "{% block packages %}\n{{ super() }}\njq\n{% endblock %}\n{% block post %}"))
    app = project / "appliances/wsgi.toml"
    app.write_text(app.read_text().replace("wsgi_workers = 2", "wsgi_workers = 4"))
    after = plan_appliance(Project.at(project), "wsgi", tmp_path / "state").step("tree")
    why = explain_change(after, {"inputs": dict(before.inputs), "explain": dict(before.explain)})
    assert "rendered kickstart (kickstarts/wsgi.ks.j2)" in why
    role = role_step(project, tmp_path / "state", "wsgi+common")
    assert "variables (wsgi_workers)" in explain_change(role, {"inputs": dict(first_role.inputs), "explain": dict(first_role.explain)})


def test_explain_first_build() -> None:
    step = Step("base", "debian-13", "x", {"a": "1"})
    assert explain_change(step, None) == "never built"
    assert explain_change(step, {"inputs": {"a": "1", "mirror:trixie": "0"}}) == "mirror state (trixie)"


def test_package_edit_names_the_package(project: Path, tmp_path: Path, offline: None) -> None:
    before = plan_appliance(Project.at(project), "wsgi", tmp_path / "state").step("packages")
    ks = project / "kickstarts/wsgi.ks.j2"
    ks.write_text(ks.read_text().replace("{% block post %}", "{% block packages %}\n{{ super() }}\njq\n{% endblock %}\n{% block post %}"))
    after = plan_appliance(Project.at(project), "wsgi", tmp_path / "state").step("packages")
    assert explain_change(after, {"inputs": dict(before.inputs), "explain": dict(before.explain)}) == "package set (+jq)"


def test_a_dependency_an_earlier_role_step_ran_plainly_is_a_stub(tmp_path: Path) -> None:
    """As Ansible in one play: a role already run without parameters is not run again; one
    run only with variables of its own (or named here with variables) runs again."""
    from crust.steps.role import already_applied

    metas = {
        "common": [],
        "nginx": [],
        "wsgi": ["common", "nginx"],
        "django": [{"role": "wsgi", "vars": {"title": "x"}}],
        "cloud_init": ["common"],
    }
    for name, deps in metas.items():
        (tmp_path / name / "tasks").mkdir(parents=True)
        (tmp_path / name / "tasks/main.yml").write_text("[]\n")
        (tmp_path / name / "meta").mkdir()
        (tmp_path / name / "meta/main.yml").write_text(yaml.safe_dump({"dependencies": deps}))
    assert already_applied(tmp_path, "common", ()) == ()
    assert already_applied(tmp_path, "cloud_init", ("common",)) == ("common",)
    assert already_applied(tmp_path, "django", ("common", "cloud_init")) == ("common",)  # wsgi: with variables
    assert already_applied(tmp_path, "wsgi", ("django",)) == ("common", "nginx")  # wsgi ran with variables only
    assert already_applied(tmp_path, "common", ("wsgi",)) == ("common",)  # listed after a role that ran it
