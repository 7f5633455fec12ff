"""Roles declare the packages they need once (meta/crust.yml); they reach the packages step with
the kickstart's %packages, and a kickstart cannot exclude what a role of its appliance needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.define.project import Project
from crust.define.validate import validate_appliance
from crust.distros.debian.apt import package_set
from crust.errors import UserError


def test_the_roles_packages_are_installed_with_the_kickstarts(project: Path) -> None:
    _, distro, rendered, ks = validate_appliance(Project.at(project), "turbogears2")
    assert "postgresql" not in rendered.text and "nginx" not in rendered.text  # listed once: by the roles
    installed = package_set(ks, distro)
    assert {"curl", "nginx", "cloud-init", "postgresql"} <= set(installed)
    assert installed.index("curl") < installed.index("cloud-init")  # the kickstart's first, then the roles' in order


def test_a_new_role_package_reaches_the_package_set(project: Path) -> None:
    meta = project / "roles/nginx/meta/crust.yml"
    meta.write_text(meta.read_text().replace("packages: [nginx]", "packages: [nginx, nginx-extras]"))
    _, distro, _, ks = validate_appliance(Project.at(project), "wsgi")
    assert "nginx-extras" in package_set(ks, distro)


def test_a_kickstart_excluding_a_roles_package_is_refused(project: Path) -> None:
    ks = project / "kickstarts/wsgi.ks.j2"
    ks.write_text(ks.read_text().replace("{% block post %}", "{% block packages %}\n{{ super() }}\n-nginx\n{% endblock %}\n{% block post %}"))
    with pytest.raises(UserError) as err:
        validate_appliance(Project.at(project), "wsgi")
    assert err.value.file == str(ks) and err.value.line is not None
    assert ks.read_text().splitlines()[err.value.line - 1] == "-nginx"
    assert "role nginx needs" in err.value.problem
    assert err.value.exit_status == 2 and "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["nginx", "[Nginx]", "[nginx; rm -rf /]", "[-nginx]", "{a: b}"])
def test_bad_package_declarations_name_the_file(project: Path, value: str) -> None:
    meta = project / "roles/nginx/meta/crust.yml"
    meta.write_text(meta.read_text().replace("packages: [nginx]", f"packages: {value}"))
    with pytest.raises(UserError) as err:
        validate_appliance(Project.at(project), "wsgi")
    assert err.value.file == str(meta) and "packages must be a list of package names" in err.value.problem
