"""Bad input, command lines: unknown verbs and options, missing or unknown names, --all with
names, bad -j / --format / --keep values, bad --store / --output / --appliances / --roles paths,
bad build secrets (--secret syntax, files, variables, secrets missing or unused, roles declaring
them wrongly), bad arguments of test, audit, upload, launch and terminate (including their unmet preconditions:
an appliance that is not built, a manifest without its image), and bad shared cache options and keys.

Each case runs ./build.py's main() in-process on a project copy; tests/unit/badinput.py says
what each run must show. Paths in an argv are written {inputs}/...: a directory of the case
holding a plain file, a directory, images that are not disk images and keys that are not
public keys, which must be unchanged afterwards too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.badinput import APPLIANCE, GOOD, Expect, Workdir, check_bad, copy_project, project_root, write_into

Setup = Callable[[Path, Path], None]  # (project, inputs)


@dataclass(frozen=True)
class CliCase:
    id: str
    argv: tuple[str, ...]
    words: str
    setup: Setup | None = None
    file: str | None = None  # the error names this file of the project (a bad appliance), else none


def case(case_id: str, argv: str | tuple[str, ...], words: str, setup: Setup | None = None, file: str | None = None) -> CliCase:
    return CliCase(case_id, tuple(argv.split()) if isinstance(argv, str) else argv, words, setup, file)


PACKAGES = {"cloud-init": "25.1.4-1", "openssh-server": "1:10.0p1-7"}  # a build lists the image's packages


def manifest(name: str, artifacts: list[dict[str, object]]) -> Setup:
    """inputs/out/NAME/manifest.json, as a build writes it (use with --output {inputs}/out)."""

    def setup(project: Path, inputs: Path) -> None:
        folder = inputs / "out" / name
        folder.mkdir(parents=True)
        record = {"appliance": name, "version": "1.0", "artifacts": artifacts, "packages": PACKAGES}
        (folder / "manifest.json").write_text(json.dumps(record), encoding="utf-8")

    return setup


def built(name: str) -> Setup:
    """A manifest whose raw image exists and matches (a small file: nothing reads further)."""

    def setup(project: Path, inputs: Path) -> None:
        folder = inputs / "out" / name
        folder.mkdir(parents=True)
        data = b"\0" * 4096
        (folder / f"{name}.raw").write_bytes(data)
        raw = {"format": "raw", "path": str(folder / f"{name}.raw"), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        record = {"appliance": name, "version": "1.0", "artifacts": [raw], "packages": PACKAGES}
        (folder / "manifest.json").write_text(json.dumps(record), encoding="utf-8")

    return setup


def appliance(text: str, then: Setup | None = None) -> Setup:
    """demo.toml replaced by text (and another setup run after)."""

    def setup(project: Path, inputs: Path) -> None:
        write_into(project, APPLIANCE, text)
        if then is not None:
            then(project, inputs)

    return setup


BROKEN_DEMO = appliance(GOOD.replace('root_size = "3GiB"', 'root_size = "lots"'))


def site_broken(project: Path, inputs: Path) -> None:
    """A site's own appliances directory (--appliances) with a broken appliance in it."""
    (inputs / "site").mkdir()
    (inputs / "site" / "site-app.toml").write_text(GOOD.replace('name = "demo"', "name = 3"), encoding="utf-8")


NO_CHECKS = GOOD.split("[test]")[0]
OUT = ("--output", "{inputs}/out")

GLOBAL = [
    case("no-arguments", (), "the following arguments are required: VERB"),
    case("unknown-verb", "frobnicate", "invalid choice: 'frobnicate'"),
    case("misspelt-verb", "biuld wsgi", "invalid choice: 'biuld'"),
    case("unknown-global-option", "--verbose list", "unrecognized arguments: --verbose"),
    case("store-without-value", "--store", "argument --store: expected one argument"),
    case("output-without-value", "--output", "argument --output: expected one argument"),
    case("appliances-without-value", "--appliances", "argument --appliances: expected one argument"),
    case("appliances-missing-directory", "--appliances {inputs}/nowhere validate --all", "--appliances {inputs}/nowhere: no such directory"),
    case("appliances-missing-directory-list", "--appliances {inputs}/nowhere list", "no such directory"),
    case("appliances-a-file", "--appliances {inputs}/file validate wsgi", "no such directory"),
    case("store-a-file-plan", "--store {inputs}/file plan wsgi", "store {inputs}/file: cannot make steps/: Not a directory"),
    case("store-a-file-build", "--store {inputs}/file build wsgi", "cannot make steps/: Not a directory"),
    case("store-under-a-file", "--store {inputs}/file/store build wsgi", "cannot make steps/: Not a directory"),
    case("store-a-file-status", "--store {inputs}/file status", "cannot make steps/"),
    case("store-a-file-clean", "--store {inputs}/file clean", "cannot make steps/"),
    case("store-a-file-test", "--store {inputs}/file test wsgi", "cannot make steps/"),
    case("store-a-file-audit", "--store {inputs}/file audit --image {inputs}/junk.raw", "cannot make steps/"),
    case("store-in-proc", "--store /proc/crust-no-such-store plan wsgi", "cannot make steps/"),
    case("output-a-file", "--output {inputs}/file build wsgi", "--output {inputs}/file: {inputs}/file is not a directory"),
    case("output-under-a-file", "--output {inputs}/file/out build wsgi", "is not a directory"),
]

NAMES = [
    *(case(f"{verb}-without-names", verb, "no appliance given") for verb in ("validate", "plan", "build", "test", "audit")),
    *(case(f"{verb}-without-name", verb, "the following arguments are required: NAME") for verb in ("render", "upload", "launch", "terminate")),
    *(
        case(f"{verb}-all-and-names", f"{verb} --all wsgi", "give appliance names or --all, not both")
        for verb in ("validate", "plan", "build", "test")
    ),
    *(
        case(f"{verb}-unknown-name", f"{verb} nope", "no appliance named 'nope'")
        for verb in ("validate", "plan", "build", "render", "test", "audit", "upload", "launch", "terminate")
    ),
    case("build-second-name-unknown", "build wsgi nope", "no appliance named 'nope'"),
    case("plan-second-name-unknown", "plan wsgi nope", "no appliance named 'nope'"),
    case("build-second-appliance-broken", "build wsgi demo", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
    case("plan-second-appliance-broken", "plan wsgi demo", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
    case("build-all-one-broken", "build --all", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
    case("validate-all-one-broken", "validate --all", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
    case("list-one-broken", "list", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
    case(
        "site-appliance-broken", "--appliances {inputs}/site validate site-app", "{inputs}/site/site-app.toml:1: name: expected a string", site_broken
    ),
    case("name-a-relative-path", "validate ../appliances/wsgi", "no appliance named '../appliances/wsgi'"),
    case("name-an-absolute-path", "render /etc/passwd", "no appliance named '/etc/passwd'"),
    case("name-a-path-in-appliances", "build appliances/wsgi", "no appliance named 'appliances/wsgi'"),
    case("name-with-extension", "validate wsgi.toml", "no appliance named 'wsgi.toml'"),
    case("name-empty", ("validate", ""), "no appliance named ''"),
    case("name-capitals", "plan WSGI", "no appliance named 'WSGI'"),
    case("name-hidden", "validate .wsgi", "no appliance named '.wsgi'"),
    case("name-line-separator", ("validate", "wsgi\u2028x"), "no appliance named"),
    case("name-nul", ("render", "ws\x00gi"), "no appliance named"),
]

OPTIONS = [
    case("build-unknown-option", "build --fast wsgi", "unrecognized arguments: --fast"),
    case("validate-unknown-option", "validate --strict wsgi", "unrecognized arguments: --strict"),
    case("plan-unknown-option", "plan --verbose wsgi", "unrecognized arguments: --verbose"),
    case("render-extra-argument", "render wsgi extra", "unrecognized arguments: extra"),
    case("render-unknown-option", "render wsgi --pretty", "unrecognized arguments: --pretty"),
    case("list-extra-argument", "list extra", "unrecognized arguments: extra"),
    case("list-unknown-option", "list --long", "unrecognized arguments: --long"),
    case("status-extra-argument", "status wsgi", "unrecognized arguments: wsgi"),
    case("clean-unknown-option", "clean --force", "unrecognized arguments: --force"),
    case("test-unknown-option", "test wsgi --timeout 5", "unrecognized arguments: --timeout 5"),
    case("audit-unknown-option", "audit wsgi --strict", "unrecognized arguments: --strict"),
    case("audit-two-names", "audit wsgi moksha", "unrecognized arguments: moksha"),
    case("upload-unknown-option", "upload wsgi --bucket b", "unrecognized arguments: --bucket b"),
    case("launch-unknown-option", "launch wsgi --count 2", "unrecognized arguments: --count 2"),
    case("terminate-unknown-option", "terminate wsgi --all", "unrecognized arguments: --all"),
    case("jobs-zero", "build -j 0 wsgi", "-j 0: need at least one job"),
    case("jobs-negative", "build -j -2 wsgi", "-j -2: need at least one job"),
    case("jobs-word", "build -j two wsgi", "argument -j/--jobs: invalid int value: 'two'"),
    case("jobs-fraction", "build --jobs=1.5 wsgi", "invalid int value: '1.5'"),
    case("jobs-without-value", "build wsgi -j", "argument -j/--jobs: expected one argument"),
    case("format-unknown", "build --format qcow3 wsgi", "argument --format: invalid choice: 'qcow3'"),
    case("format-capitals", "build --format QCOW2 wsgi", "invalid choice: 'QCOW2'"),
    case("format-empty", ("build", "--format", "", "wsgi"), "invalid choice: ''"),
    case("format-iso", "build --format=iso wsgi", "invalid choice: 'iso'"),
    case("format-without-value", "build wsgi --format", "argument --format: expected one argument"),
    case("keep-negative", "clean --keep -1", "--keep -1: must be 0 or more"),
    case("keep-word", "clean --keep all", "argument --keep: invalid int value: 'all'"),
    case("keep-without-value", "clean --keep", "argument --keep: expected one argument"),
]

TEST = [
    case("test-accel-unknown", "test wsgi --accel qemu", "argument --accel: invalid choice: 'qemu'"),
    case("test-junit-without-value", "test wsgi --junit", "argument --junit: expected one argument"),
    case("test-connect-without-value", "test wsgi --connect", "argument --connect: expected one argument"),
    case("test-user-data-missing", "test wsgi --user-data {inputs}/nowhere.yaml", "--user-data {inputs}/nowhere.yaml: no such file"),
    case("test-user-data-a-directory", "test wsgi --user-data {inputs}/dir", "no such file"),
    case("test-not-built", "test wsgi", "wsgi is not built"),
    case("test-all-not-built", "test --all", "is not built"),
    case("test-build-test-not-built", "test demo --force", "demo is not built"),
    case("test-no-checks", (*OUT, "test", "demo"), "demo declares no smoke checks", appliance(NO_CHECKS, built("demo")), APPLIANCE),
    case("test-broken-appliance", "test demo", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
]

AUDIT = [
    case("audit-image-missing", "audit --image {inputs}/nowhere.raw", "{inputs}/nowhere.raw: no such image file"),
    case("audit-image-a-directory", "audit --image {inputs}/dir", "no such image file"),
    case("audit-image-text", "audit --image {inputs}/junk.raw", "not a raw disk image with a partition table"),
    case("audit-image-empty", "audit --image {inputs}/empty.raw", "not a raw disk image with a partition table"),
    case("audit-image-zeros", "audit --image {inputs}/zero.raw", "does not contain a recognized partition table"),
    case("audit-image-without-value", "audit wsgi --image", "argument --image: expected one argument"),
    case("audit-not-built", "audit wsgi", "wsgi is not built"),
    case("audit-no-raw-recorded", (*OUT, "audit", "wsgi"), "no such image file", manifest("wsgi", [])),
    case("audit-broken-appliance", "audit demo --image {inputs}/junk.raw", "image.root_size: 'lots' is not a size", BROKEN_DEMO, APPLIANCE),
]

CLOUD = [
    case("upload-target-unknown", "upload wsgi --target hetzner", "argument --target: invalid choice: 'hetzner'"),
    case("upload-workers-zero", "upload wsgi --workers 0", "--workers 0: use 1 to 64"),
    case("upload-workers-too-many", "upload wsgi --workers 65", "--workers 65: use 1 to 64"),
    case("upload-workers-word", "upload wsgi --workers x", "argument --workers: invalid int value: 'x'"),
    case("upload-method-unknown", "upload wsgi --method ftp", "argument --method: invalid choice: 'ftp'"),
    case("upload-region-made-up", "upload wsgi --region Mars", "--region: 'Mars' is not an AWS region name"),
    case("upload-region-empty", ("upload", "wsgi", "--region", ""), "--region: '' is not an AWS region name"),
    case("upload-region-without-value", "upload wsgi --region", "argument --region: expected one argument"),
    case("upload-not-built", "upload wsgi", "wsgi is not built"),
    case("upload-no-raw-recorded", (*OUT, "upload", "wsgi"), "no raw artifact recorded", manifest("wsgi", [])),
    case(
        "upload-raw-missing",
        (*OUT, "upload", "wsgi"),
        "the raw image",
        manifest("wsgi", [{"format": "raw", "path": "/nonexistent/wsgi.raw", "size": 1, "sha256": "0" * 64}]),
    ),
    case("upload-s3-import-without-bucket", (*OUT, "upload", "demo", "--method", "s3-import"), "--method s3-import needs a bucket", built("demo")),
    case(
        "upload-ami-name-too-short",
        (*OUT, "upload", "demo"),
        "AMI name 'x' (from name = 'x') is not valid",
        appliance(GOOD + '\n[targets.aws]\nname = "x"\n', built("demo")),
        APPLIANCE,
    ),
    case(
        "upload-broken-targets", "upload demo", "'Mars' is not an AWS region name", appliance(GOOD + '\n[targets.aws]\nregion = "Mars"\n'), APPLIANCE
    ),
    case("launch-target-unknown", "launch wsgi --target hetzner", "argument --target: invalid choice: 'hetzner'"),
    case("upload-azure-no-resource-group", "upload wsgi --target azure", "no resource_group for the Azure target (fix: set resource_group"),
    case("launch-azure-bad-vm-size", "launch wsgi --target azure --vm-size B2;s", "--vm-size: 'B2;s' is not valid"),
    case("launch-region-made-up", "launch wsgi --region eu-west", "--region: 'eu-west' is not an AWS region name"),
    case("launch-ssh-key-without-value", "launch wsgi --ssh-key", "argument --ssh-key: expected one argument"),
    case("launch-not-built", "launch wsgi", "wsgi is not built"),
    case("launch-ssh-key-missing", (*OUT, "launch", "demo", "--ssh-key", "{inputs}/nowhere.pub"), "no SSH public key", built("demo")),
    case("launch-ssh-key-private", (*OUT, "launch", "demo", "--ssh-key", "{inputs}/id_ed25519"), "is a private key", built("demo")),
    case("launch-ssh-key-not-a-key", (*OUT, "launch", "demo", "--ssh-key", "{inputs}/file"), "is not an SSH public key", built("demo")),
    case(
        "launch-cloud-config-keys-not-a-list",
        (*OUT, "launch", "demo", "--ssh-key", "{inputs}/id_ed25519.pub"),
        "cloud_config.ssh_authorized_keys must be a list",
        appliance(GOOD + '\n[targets.aws]\ncloud_config = {ssh_authorized_keys = "ssh-ed25519 AAAA x"}\n', built("demo")),
    ),
    case("terminate-region-made-up", "terminate wsgi --region Mars", "--region: 'Mars' is not an AWS region name"),
    case("terminate-instance-without-value", "terminate wsgi --instance", "argument --instance: expected one argument"),
    case("terminate-target-unknown", "terminate wsgi --target hetzner", "argument --target: invalid choice: 'hetzner'"),
    case(
        "terminate-broken-targets",
        "terminate demo",
        "unknown key 'targets.aws.regoin'",
        appliance(GOOD + '\n[targets.aws]\nregoin = "x"\n'),
        APPLIANCE,
    ),
]

SECRET_SPEC = """\
argument_specs:
  main:
    short_description: Uses a deploy key at build time.
    options:
      vault_probe_key_file:
        type: path
        required: true
        crust_secret: {sid}
        description: Path of the deploy key inside the tree (a build secret).
"""


def secret_role(spec: str = SECRET_SPEC.format(sid="deploy_key"), vars_text: str = "") -> Setup:
    """roles/vault_probe declaring a build secret, and demo.toml using it (plus vars_text in [vars])."""

    def setup(project: Path, inputs: Path) -> None:
        write_into(project, "roles/vault_probe/tasks/main.yml", "---\n- name: Nothing\n  ansible.builtin.meta: noop\n")
        write_into(project, "roles/vault_probe/meta/argument_specs.yml", spec)
        text = GOOD.replace('roles = ["common", "wsgi"]', 'roles = ["common", "wsgi", "vault_probe"]')
        write_into(project, APPLIANCE, text.replace("wsgi_workers = 3", "wsgi_workers = 3" + vars_text))

    return setup


def fifo(project: Path, inputs: Path) -> None:
    os.mkfifo(inputs / "fifo")


def short_file(project: Path, inputs: Path) -> None:
    (inputs / "short").write_bytes(b"pin1234\n")  # 7 characters: could not be redacted


def big_file(project: Path, inputs: Path) -> None:
    (inputs / "big").write_bytes(b"k" * (1024 * 1024 + 1))


SECRET = "{inputs}/id_ed25519"
SECRETS = [
    case("secret-without-value", "build wsgi --secret", "argument --secret: expected one argument"),
    case("secret-no-equals", "build wsgi --secret deploy_key", "--secret deploy_key: expected ID=PATH or ID=env:VARIABLE"),
    case("secret-empty-id", f"build wsgi --secret ={SECRET}", "expected ID=PATH or ID=env:VARIABLE"),
    case("secret-empty-source", "build wsgi --secret deploy_key=", "--secret deploy_key=: expected ID=PATH"),
    case("secret-id-with-slash", f"build wsgi --secret ../key={SECRET}", "'../key' is not a secret ID"),
    case("secret-id-leading-dot", f"build wsgi --secret .key={SECRET}", "'.key' is not a secret ID"),
    case("secret-id-space", ("build", "wsgi", "--secret", f"deploy key={SECRET}"), "'deploy key' is not a secret ID"),
    case("secret-id-too-long", f"build wsgi --secret {'k' * 65}={SECRET}", "is not a secret ID"),
    case("secret-id-nul", ("build", "wsgi", "--secret", f"k\x00={SECRET}"), "is not a secret ID"),
    case("secret-file-missing", "build wsgi --secret deploy_key={inputs}/nowhere", "--secret deploy_key: no such file"),
    case("secret-file-a-directory", "build wsgi --secret deploy_key={inputs}/dir", "not a regular file"),
    case("secret-file-a-fifo", "build wsgi --secret deploy_key={inputs}/fifo", "not a regular file", fifo),
    case("secret-file-under-a-file", "build wsgi --secret deploy_key={inputs}/file/key", "cannot read it: Not a directory"),
    case("secret-file-empty", "build wsgi --secret deploy_key={inputs}/empty.raw", "the secret is empty"),
    case("secret-file-too-big", "build wsgi --secret deploy_key={inputs}/big", "larger than 1024 KiB", big_file),
    case(
        "secret-file-short",
        "build wsgi --secret deploy_key={inputs}/short",
        "--secret deploy_key: the secret is shorter than 8 characters",
        short_file,
    ),
    case("secret-env-unset", "build wsgi --secret token=env:CRUST_TEST_NEVER_SET", "the environment variable CRUST_TEST_NEVER_SET is not set"),
    case("secret-env-bad-name", "build wsgi --secret token=env:1TOKEN", "'1TOKEN' is not an environment variable name"),
    case("secret-env-no-name", "build wsgi --secret token=env:", "'' is not an environment variable name"),
    case("secret-given-twice", f"build demo --secret deploy_key={SECRET} --secret deploy_key={SECRET}", "given twice", secret_role()),
    case("secret-not-used", f"build wsgi --secret deploy_key={SECRET}", "--secret deploy_key: no role of wsgi uses this secret"),
    case("secret-not-used-all", f"build --all --secret deploy_key={SECRET}", "--secret deploy_key: no role of config, demo, django, ids, moksha"),
    case("secret-missing", "build demo", "demo: role vault_probe needs the build secret 'deploy_key'", secret_role()),
    case("secret-misspelt", f"build demo --secret deploy_kye={SECRET}", "needs the build secret 'deploy_key'", secret_role()),
    case("secret-missing-second", f"build wsgi demo --secret other={SECRET}", "needs the build secret 'deploy_key'", secret_role()),
    case(
        "secret-set-in-appliance",
        f"build demo --secret deploy_key={SECRET}",
        "vars.vault_probe_key_file: role vault_probe takes this from the build secret 'deploy_key'",
        secret_role(vars_text='\nvault_probe_key_file = "/root/.ssh/id_ed25519"'),
        APPLIANCE,
    ),
    case(
        "secret-set-in-appliance-validate",
        "validate demo",
        "takes this from the build secret",
        secret_role(vars_text='\nvault_probe_key_file = "/tmp/k"'),
        APPLIANCE,
    ),
    case(
        "secret-role-bad-id",
        "validate demo",
        "crust_secret: 'deploy key' is not a secret ID",
        secret_role(SECRET_SPEC.format(sid='"deploy key"')),
        "roles/vault_probe/meta/argument_specs.yml",
    ),
    case(
        "secret-role-id-not-a-string",
        "build demo",
        "crust_secret: 3 is not a secret ID",
        secret_role(SECRET_SPEC.format(sid="3")),
        "roles/vault_probe/meta/argument_specs.yml",
    ),
    case(
        "secret-role-with-default",
        "plan demo",
        "a build secret's variable holds its path",
        secret_role(SECRET_SPEC.format(sid="deploy_key") + "        default: /root/key\n"),
        "roles/vault_probe/meta/argument_specs.yml",
    ),
    case("roles-missing-directory", "--roles {inputs}/nowhere validate wsgi", "--roles {inputs}/nowhere: no such directory"),
    case("roles-a-file", "--roles {inputs}/file build wsgi", "--roles {inputs}/file: no such directory"),
    case(
        "roles-without-common",
        "--roles {inputs}/dir validate demo",
        "role 'common' not found (no {inputs}/dir/common/tasks/main.yml)",
        file=APPLIANCE,
    ),
]

CACHE = [
    case("cache-without-action", "cache", "the following arguments are required: ACTION"),
    case("cache-unknown-action", "cache purge", "invalid choice: 'purge'"),
    case("cache-prune-without-cache", "cache prune", "no shared cache to prune"),
    case("cache-prune-keep-negative", "cache prune --keep -1 --cache s3://team-cache", "--keep -1: must be 0 or more"),
    case("cache-keygen-without-file", "cache keygen", "the following arguments are required: KEYFILE"),
    case("cache-keygen-existing-file", "cache keygen {inputs}/file", "{inputs}/file exists"),
    case("cache-not-s3", "build wsgi --cache http://team-cache/p", "--cache http://team-cache/p: 'http://team-cache/p' is not an s3:// URL"),
    case("cache-bad-bucket", "plan wsgi --cache s3://Team_Cache", "'Team_Cache' is not a bucket name"),
    case("cache-bad-endpoint", "plan wsgi --cache s3://team-cache --cache-endpoint ftp://x", "'ftp://x' is not an http(s) URL"),
    case("cache-trust-missing", "plan wsgi --cache s3://team-cache --trust {inputs}/nowhere.pub", "--trust {inputs}/nowhere.pub: no such file"),
    case("cache-nothing-trusted", "build wsgi --cache s3://team-cache", "no key to trust, so no entry could be used"),
    case("cache-trust-not-a-key", "build wsgi --cache s3://team-cache --trust {inputs}/file", "not an Ed25519 public key"),
    case("cache-key-others-read", "build wsgi --cache s3://team-cache --cache-key {inputs}/file", "mode 0644 lets others read it"),
    case("cache-trust-without-cache", "plan wsgi --trust {inputs}/file", "--cache-key and --trust need a cache"),
]

CASES = GLOBAL + NAMES + OPTIONS + TEST + AUDIT + CLOUD + SECRETS + CACHE


def make_inputs(inputs: Path) -> None:
    inputs.mkdir(parents=True)
    (inputs / "file").write_text("just a file\n", encoding="utf-8")
    (inputs / "dir").mkdir()
    (inputs / "junk.raw").write_text("not a disk image\n", encoding="utf-8")
    (inputs / "empty.raw").write_bytes(b"")
    (inputs / "zero.raw").write_bytes(b"\0" * (1 << 20))
    (inputs / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", encoding="utf-8")
    (inputs / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk crust@example\n", encoding="utf-8")


@pytest.mark.parametrize("cli", CASES, ids=[c.id for c in CASES])
def test_bad_command_line(cli: CliCase, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    inputs = tmp_path / "inputs"
    make_inputs(inputs)
    if cli.setup is not None:
        cli.setup(project, inputs)
    argv = [arg.replace("{inputs}", str(inputs)) for arg in cli.argv]
    expect = Expect(words=(cli.words.replace("{inputs}", str(inputs)),), file=cli.file, any_line=cli.file is not None)
    with project_root(project):
        line = check_bad(argv, Workdir(tmp_path / "work"), expect, watch=[inputs])
    if cli.file is None:
        assert not line.startswith(("error: appliances/", "error: kickstarts/", "error: roles/")), line


TYPED = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # a token typed in place of its path


@pytest.mark.parametrize(
    ("secret", "environ", "words"),
    [
        (f"api_token={TYPED}", {}, "--secret api_token: no such file"),
        (f"api_token=~/{TYPED}", {}, "--secret api_token: no such file"),
        ("api_token=env:CRUST_TEST_SHORT", {"CRUST_TEST_SHORT": "1234567"}, "--secret api_token: the secret is shorter than 8 characters"),
        ("api_token=env:CRUST_TEST_SHORT", {"CRUST_TEST_SHORT": "    abc\n\n"}, "the secret is shorter than 8 characters"),
    ],
    ids=["typed-token", "typed-token-under-home", "env-short", "env-short-padded"],
)
def test_bad_secret_values_are_not_shown(secret: str, environ: dict[str, str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused secret's text never reaches the terminal: a token typed where its path goes, a
    value too short to redact."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    project = copy_project(tmp_path / "project")
    with project_root(project):
        line = check_bad(["build", "wsgi", "--secret", secret], Workdir(tmp_path / "work"), Expect(words=(words,)))
    assert TYPED not in line and "1234567" not in line, line


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


THROUGH_BUILD_PY = [
    # (argv, file replaced in the copy, its text, words): a few inputs of the tables, once more through the script itself
    (["validate", "demo"], APPLIANCE, GOOD.replace('version = "1.0"', 'version = "1.0'), "appliances/demo.toml:2: invalid TOML"),
    (
        ["build", "demo"],
        "kickstarts/demo.ks.j2",
        '{% extends "base.ks.j2" %}\n{% block boot %}\n{{ 1 / 0 }}\n{% endblock %}\n',
        "kickstarts/demo.ks.j2:3: template error",
    ),
    (["plan", "demo"], APPLIANCE, GOOD.replace("wsgi_workers = 3", 'wsgi_workers = "3"'), "appliances/demo.toml:8: vars.wsgi_workers: expected int"),
    (["build", "-j", "0", "demo"], APPLIANCE, GOOD, "-j 0: need at least one job"),
]


@pytest.mark.parametrize(("argv", "rel", "text", "words"), THROUGH_BUILD_PY, ids=["toml", "template", "role-variable", "jobs"])
def test_through_build_py(argv: list[str], rel: str, text: str, words: str, tmp_path: Path) -> None:
    """The script as a user runs it (its own process, a copy of the project and of crust/)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    project = copy_project(tmp_path / "project")
    shutil.copytree(ROOT / "crust", project / "crust", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "build.py", project / "build.py")
    write_into(project, rel, text)
    work = Workdir(tmp_path / "work")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUST_")} | {"CRUST_NO_VENV": "1"}
    out = subprocess.run(
        [sys.executable, str(project / "build.py"), "--store", str(work.store), "--output", str(work.output), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a bad input that started a build would be stopped here (and fail)
        check=False,
    )
    assert out.returncode == 2, out
    assert out.stdout == "" and "Traceback" not in out.stderr, out
    assert out.stderr.count("\n") == 1 and out.stderr.endswith(")\n"), out  # one line, ending with its hint
    assert out.stderr.startswith(f"error: {words}") and "(fix: " in out.stderr, out
    assert not work.output.exists()
    assert all(p.is_dir() and not any(p.iterdir()) for p in work.store.glob("*")), sorted(work.store.rglob("*"))
