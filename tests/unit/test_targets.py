"""Cloud targets: [targets.aws] in an appliance file and [aws] in targets.toml. Every bad input is
one UserError naming the file, the line, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from crust.build.manifest import Manifest
from crust.cloud.aws.settings import DEFAULT_NAME, check_for_upload, image_name
from crust.cloud.targets import load_aws_target
from crust.define.project import Project
from crust.errors import UserError
from tests.conftest import build_py

APPLIANCE = """\
name = "demo"
version = "1.0"
description = "A demo"
kickstart = "wsgi.ks.j2"
roles = ["common", "wsgi"]
"""

TARGET = """
[targets.aws]
region = "eu-west-1"
copy_to = ["us-east-1", "eu-central-1"]
share_with = ["111122223333"]
name = "{appliance}-{version}-{digest12}"
tags = { team = "web" }
instance_type = "t3.micro"
subnet = "subnet-0123456789abcdef0"
security_groups = ["sg-0123456789abcdef0"]
workers = 4
"""


def write(project: Path, text: str, shared: str | None = None) -> None:
    (project / "appliances" / "demo.toml").write_text(APPLIANCE + text, encoding="utf-8")
    if shared is not None:
        (project / "targets.toml").write_text(shared, encoding="utf-8")


def test_appliance_target(project: Path) -> None:
    write(project, TARGET)
    target = load_aws_target(Project.at(project), "demo")
    assert target.region == "eu-west-1"
    assert target.regions() == ("eu-west-1", "us-east-1", "eu-central-1")
    assert target.share_with == ("111122223333",)
    assert dict(target.tags) == {"team": "web"}
    assert (target.instance_type, target.subnet, target.security_groups) == ("t3.micro", "subnet-0123456789abcdef0", ("sg-0123456789abcdef0",))
    assert (target.method, target.workers, target.max_attempts) == ("ebs", 4, 5)
    assert target.source == project / "appliances" / "demo.toml"


def test_defaults_without_any_target(project: Path) -> None:
    write(project, "")
    target = load_aws_target(Project.at(project), "demo")
    assert (target.region, target.copy_to, target.share_with, target.name) == ("", (), (), DEFAULT_NAME)
    assert target.source is None


def test_appliance_keys_override_the_shared_file_key_by_key(project: Path) -> None:
    shared = '[aws]\nregion = "us-west-2"\ncopy_to = ["us-east-1"]\nssh_key = "keys/ops.pub"\n'
    write(project, '[targets.aws]\nregion = "eu-west-1"\n', shared)
    target = load_aws_target(Project.at(project), "demo")
    assert target.region == "eu-west-1"
    assert target.copy_to == ("us-east-1",)
    assert target.ssh_key == (project / "keys" / "ops.pub").resolve()  # relative to the file that set it


def test_command_line_overrides_ignore_unset_options(project: Path) -> None:
    write(project, TARGET)
    target = load_aws_target(Project.at(project), "demo").replace(region=None, method="s3-import", workers=None)
    assert (target.region, target.method, target.workers) == ("eu-west-1", "s3-import", 4)


BAD_APPLIANCE = [
    # (target text, words in the error, line)
    ('[targets.aws]\nregoin = "eu-west-1"\n', "unknown key 'targets.aws.regoin' (fix: did you mean 'region'?)", 8),
    ('[targets.aws]\nworkers = "8"\n', "targets.aws.workers: expected an integer, got str", 8),
    ("[targets.aws]\nworkers = 100\n", "100 workers: use 1 to 64", 8),
    ('[targets.aws]\nregion = "Ireland"\n', "'Ireland' is not an AWS region name", 8),
    ('[targets.aws]\ncopy_to = "us-east-1"\n', "expected a list of region names", 8),
    ("[targets.aws]\nshare_with = [111122223333]\n", "expected a list of strings", 8),
    ('[targets.aws]\nshare_with = ["1234"]\n', "'1234' is not an AWS account id", 8),
    ('[targets.aws]\nname = "{appliance}-{date}"\n', "unknown field {date}", 8),
    ('[targets.aws]\ntags = { "crust:image-digest" = "x" }\n', "are reserved", 8),
    ("[targets.aws]\ntags = { team = 1 }\n", "expected a string value", 8),
    ('[targets.aws]\nmethod = "vmimport"\n', "use ebs or s3-import", 8),
    ('[targets.aws]\nsubnet = "default"\n', "is not a subnet id", 8),
    ('[targets.aws]\ninstance_type = "large"\n', "is not an instance type", 8),
    ("[targets.aws]\nread_timeout = 0\n", "expected a positive number of seconds", 8),
    ('[targets.hetzner]\nregion = "x"\n', "unknown target 'targets.hetzner' (fix: known targets: aws, libvirt, openstack, azure, gcp)", 7),
    ('targets = "aws"\n', "targets must be a table", 7),
]


@pytest.mark.parametrize(("text", "words", "line"), BAD_APPLIANCE)
def test_bad_appliance_target(project: Path, text: str, words: str, line: int) -> None:
    write(project, "\n" + text)
    with pytest.raises(UserError) as err:
        load_aws_target(Project.at(project), "demo")
    message = err.value.one_line()
    assert words in message
    assert err.value.file == str(project / "appliances" / "demo.toml")
    assert err.value.line == line, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        ('[aws]\nregoin = "eu-west-1"\n', "unknown key 'aws.regoin'", 2),
        ('[hetzner]\nregion = "x"\n', "unknown target 'hetzner'", 1),
        ("[aws]\nmax_attempts = 50\n", "50 attempts: use 1 to 20", 2),
        ("[aws\n", "invalid TOML", 1),
    ],
)
def test_bad_shared_targets_file(project: Path, text: str, words: str, line: int) -> None:
    write(project, "", shared=text)
    with pytest.raises(UserError) as err:
        load_aws_target(Project.at(project), "demo")
    assert words in err.value.one_line()
    assert err.value.file == str(project / "targets.toml")
    assert err.value.line == line


MANIFEST = Manifest("demo", version="1.0", build_id="fe6262b53ca7")
DIGEST = "74218bbd4567788bfa0fbe82be9440455535301f7f262e6b10206095371d9389"


def test_image_name_pattern(project: Path) -> None:
    write(project, '[targets.aws]\nname = "crust/{appliance} {version} ({build_id}) {digest}"\n')
    assert image_name(load_aws_target(Project.at(project), "demo"), MANIFEST, DIGEST) == f"crust/demo 1.0 (fe6262b53ca7) {DIGEST}"
    write(project, "")
    assert image_name(load_aws_target(Project.at(project), "demo"), MANIFEST, DIGEST) == "demo-1.0-74218bbd4567"


def test_image_name_that_aws_refuses(project: Path) -> None:
    write(project, '[targets.aws]\nname = "{appliance}+{version}"\n')
    with pytest.raises(UserError, match=r"AMI name 'demo\+1.0' .* is not valid.*change the name pattern"):
        image_name(load_aws_target(Project.at(project), "demo"), MANIFEST, DIGEST)


def test_s3_import_needs_a_bucket(project: Path) -> None:
    write(project, '[targets.aws]\nmethod = "s3-import"\n')
    with pytest.raises(UserError, match="needs a bucket"):
        check_for_upload(load_aws_target(Project.at(project), "demo"))
    write(project, '[targets.aws]\nmethod = "s3-import"\nbucket = "images"\n')
    check_for_upload(load_aws_target(Project.at(project), "demo"))


def test_validate_checks_targets(tmp_path: Path) -> None:
    appliances = tmp_path / "appliances"
    appliances.mkdir()
    root = Path(__file__).resolve().parents[2]
    for name in ("wsgi.toml", "wsgi_checks.py"):
        (appliances / name).write_bytes((root / "appliances" / name).read_bytes())
    with open(appliances / "wsgi.toml", "a", encoding="utf-8") as fh:
        fh.write('\n[targets.aws]\nregion = "eu-west-1"\nworkers = "many"\n')
    out = build_py("--appliances", str(appliances), "validate", "wsgi")
    assert out.returncode == 2, out.stderr
    assert "wsgi.toml:" in out.stderr and "targets.aws.workers: expected an integer" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "targets.toml").write_text('[aws]\nregion = "eu-west-1"\n', encoding="utf-8")
    text = (appliances / "wsgi.toml").read_text(encoding="utf-8").replace('workers = "many"', "workers = 4")
    (appliances / "wsgi.toml").write_text(text, encoding="utf-8")
    out = build_py("--appliances", str(appliances), "validate", "wsgi")
    assert out.returncode == 0, out.stderr
