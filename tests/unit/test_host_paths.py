"""Host-path variables read only what the project allows (issue 15): a directory of the
project may not smuggle a link to the host's keys into a build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crust.define.roles import check_host_path
from crust.errors import UserError


def test_a_link_out_of_an_allowed_directory_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    app = project / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    source = project / "appliances" / "demo.toml"
    source.parent.mkdir()
    source.write_text('[vars]\nwsgi_app_path = "x"\n')
    check_host_path("wsgi_app_path", str(app), source, source.read_text(), (project,))  # all inside: fine
    os.symlink("/root", app / "pkg" / "keys")
    with pytest.raises(UserError) as err:
        check_host_path("wsgi_app_path", str(app), source, source.read_text(), (project,))
    assert f"{app / 'pkg' / 'keys'} is outside the directories a build may read" in err.value.problem
    assert err.value.line == 2 and "--allow-path" in (err.value.hint or "")
    check_host_path("wsgi_app_path", str(app), source, source.read_text(), (project, Path("/root")))  # allowed: fine
