"""Appliance files: every bad input is a UserError naming the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.define.project import Project
from crust.define.spec import Invalid, load_appliance, parse_size_mib
from crust.errors import UserError

GOOD = """\
name = "demo"
version = "1.0"
description = "A demo"
kickstart = "wsgi.ks.j2"
roles = ["common", "wsgi"]

[vars]
wsgi_workers = 3

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
"""


def write(project: Path, text: str, name: str = "demo") -> Path:
    path = project / "appliances" / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_appliance(project: Path) -> None:
    spec = load_appliance(write(project, GOOD), Project.at(project))
    assert spec.name == "demo"
    assert spec.distribution == "debian-13"
    assert spec.image.formats == ("raw", "qcow2")
    assert spec.image.root_size_mib == 3072
    assert spec.roles == ("common", "wsgi")
    assert spec.test.checks[0].options["path"] == "/healthz"
    assert spec.test.checks[0].options["status"] == 200
    assert spec.test.checks[0].timeout == 60.0


BAD = [
    # (replace this, with that, expected words in the error, expected line)
    ('name = "demo"', 'name = "other"', "does not match the file name", 1),
    ('version = "1.0"\n', "", "missing key 'version'", None),
    ('root_size = "3GiB"', 'root_sise = "3GiB"', "did you mean 'image.root_size'", 12),
    ('root_size = "3GiB"', 'root_size = "lots"', "is not a size", 12),
    ('root_size = "3GiB"', "root_size = 1", "out of range", 12),
    ('formats = ["qcow2"]', 'formats = ["qcow3"]', "not a known format", 11),
    ('formats = ["qcow2"]', 'formats = "qcow2"', "expected a list of strings", 11),
    ('kickstart = "wsgi.ks.j2"', 'kickstart = "nope.ks.j2"', "not found in kickstarts/", 4),
    ('roles = ["common", "wsgi"]', 'roles = ["common", "nope"]', "role 'nope' not found", 5),
    ('description = "A demo"', "description = 3", "expected a string", 3),
    ('description = "A demo"', 'description = "A demo"\ndistribution = "debian-99"', "distribution 'debian-99' is not defined", 4),
    ("ports = [80]", "ports = [80000]", "not a port number", 15),
    ("ports = [80]", "ports = []", "guest port 80 is not forwarded", 19),
    ('type = "http"', 'type = "htp"', "is not a check type", 18),
    ('body = "ok"', 'bdy = "ok"', "did you mean 'body'", 21),
    ('path = "/healthz"', 'path = "healthz"', "must start with '/'", 20),
    ('body = "ok"', 'body_regex = "("', "not a valid regular expression", 21),
    ("[image]", "[imag]", "unknown key 'imag'", None),
    ('version = "1.0"', 'version = "1.0', "invalid TOML", 2),
]


@pytest.mark.parametrize(("old", "new", "words", "line"), BAD)
def test_bad_appliance(project: Path, old: str, new: str, words: str, line: int | None) -> None:
    assert old in GOOD
    path = write(project, GOOD.replace(old, new, 1))
    with pytest.raises(UserError) as err:
        load_appliance(path, Project.at(project))
    message = err.value.one_line()
    assert words in message
    assert "demo.toml" in message
    assert err.value.hint or "invalid TOML" in message
    if line is not None:
        assert err.value.line == line, message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "mib"), [("2GiB", 2048), ("512MiB", 512), ("2G", 2048), ("100M", 100), (4096, 4096)])
def test_sizes(text: str | int, mib: int) -> None:
    assert parse_size_mib(text) == mib


@pytest.mark.parametrize("text", ["", "2TB", "-1G", "1.5G", True, None])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(Invalid):
        parse_size_mib(text)


def test_every_shipped_appliance_loads() -> None:
    from tests.conftest import ROOT

    names = Project.at(ROOT).appliance_names()
    assert "wsgi" in names
    for name in names:
        assert load_appliance(Project.at(ROOT).appliance_path(name), Project.at(ROOT)).name == name
