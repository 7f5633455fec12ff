"""Kickstart templates: golden output for every appliance, StrictUndefined, injection guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crust.define.distribution import load_distribution
from crust.define.project import Project
from crust.define.render import render
from crust.define.spec import load_appliance
from crust.errors import UserError
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
MIRRORS = {"debian": "http://deb.debian.org/debian", "debian-security": "http://deb.debian.org/debian-security"}


def rendered(root: Path, name: str) -> str:
    spec = load_appliance(Project.at(root).appliance_path(name), Project.at(root))
    distro = load_distribution(Project.at(root), spec.distribution, MIRRORS)
    return render(spec, distro, Project.at(root)).text


@pytest.mark.parametrize("name", Project.at(ROOT).appliance_names())
def test_golden(name: str) -> None:
    """Every rendered kickstart matches its golden file (UPDATE_GOLDEN=1 rewrites them)."""
    text = rendered(ROOT, name)
    golden = GOLDEN / f"{name}.ks"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"missing golden file {golden}: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"line one\\nrootpw --plaintext x"', "contains a newline"),
        ('"%post"', "starts with '%'"),
        ('"  %pre"', "starts with '%'"),
        ('"a\\rb"', "contains a newline"),
    ],
)
def test_injection_is_rejected(project: Path, value: str, words: str) -> None:
    path = project / "appliances" / "wsgi.toml"
    path.write_text(path.read_text().replace('wsgi_app_title = "Crust WSGI appliance"', f"wsgi_app_title = {value}"))
    with pytest.raises(UserError) as err:
        rendered(project, "wsgi")
    assert words in str(err.value)
    assert "wsgi.toml" in str(err.value)
    assert err.value.line is not None


def test_values_are_quoted(project: Path) -> None:
    """A value with spaces cannot add options to a command."""
    path = project / "appliances" / "wsgi.toml"
    path.write_text(
        path.read_text().replace('description = "A WSGI application served by gunicorn behind nginx"', 'description = "x --plaintext; rm -rf /"')
    )
    base = project / "kickstarts" / "base.ks.j2"
    base.write_text(base.read_text().replace("# Appliance {{ appliance.name }}", "# Appliance {{ appliance.description }} {{ appliance.name }}"))
    assert "# Appliance 'x --plaintext; rm -rf /' wsgi" in rendered(project, "wsgi")


def test_undefined_names_the_template_line(project: Path) -> None:
    ks = project / "kickstarts" / "wsgi.ks.j2"
    ks.write_text(ks.read_text().replace("%post\n", "%post\n# {{ vars.no_such_var }}\n"))
    with pytest.raises(UserError) as err:
        rendered(project, "wsgi")
    assert "undefined" in str(err.value)
    assert err.value.file is not None and err.value.file.endswith("wsgi.ks.j2")
    assert err.value.line is not None


def test_syntax_error_names_the_template_line(project: Path) -> None:
    ks = project / "kickstarts" / "base.ks.j2"
    ks.write_text(ks.read_text().replace("{% endblock %}", "{% endblok %}", 1))
    with pytest.raises(UserError) as err:
        rendered(project, "wsgi")
    assert "template syntax error" in str(err.value)
    assert err.value.file is not None and err.value.file.endswith("base.ks.j2")
