"""Bad input, appliance files: TOML syntax, unknown keys at every level, wrong types for every
setting, bad names, missing files, bad formats, sizes, checks, cloud targets, and values that
would inject kickstart.

Each case writes a malformed appliances/demo.toml (or a file it points at) into a project copy
and runs every verb that reads it; tests/unit/badinput.py says what each run must show.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.badinput import APPLIANCE, GOOD, FileCase, copy_project, run_file_case

# The verbs each case runs. `audit NAME` and `test NAME` read the appliance file as `validate`
# does; they run on the syntax cases only (with every other verb that reads the file), which
# keeps the suite fast: the parser of the command line alone costs ~5 ms a run.
SYNTAX_VERBS = ("validate", "plan", "build", "render", "audit", "test", "upload", "launch", "terminate")
SPEC_VERBS = ("validate", "plan", "build", "render")
RENDER_VERBS = ("validate", "plan", "build", "render")
TARGET_VERBS = ("validate", "upload", "launch", "terminate")  # `plan` and `build` do not read [targets]
AUTO = "<the first line of the new text>"

NAME = 'name = "demo"'
VERSION = 'version = "1.0"'
DESCRIPTION = 'description = "A demo"'
KICKSTART = 'kickstart = "demo.ks.j2"'
ROLES = 'roles = ["common", "wsgi"]'
FORMATS = 'formats = ["qcow2"]'
ROOT_SIZE = 'root_size = "3GiB"'
IMAGE_TABLE = '[image]\nformats = ["qcow2"]\nroot_size = "3GiB"\n'
PORTS = "ports = [80]"
CHECK = '[[test.checks]]\ntype = "http"'
PORT = "port = 80"
PATH = 'path = "/healthz"'
BODY = 'body = "ok"'
BEFORE_CHECKS = GOOD.split("[[test.checks]]")[0]


def toml(case_id: str, old: str, new: str, words: str, at: str | None = AUTO, verbs: tuple[str, ...] = SPEC_VERBS) -> FileCase:
    """demo.toml with `old` replaced by `new`; the error names the line holding `at`."""
    assert old in GOOD, old
    return text(case_id, GOOD.replace(old, new, 1), words, next(line for line in new.splitlines() if line.strip()) if at == AUTO else at, verbs)


def text(case_id: str, content: str | bytes, words: str, at: str | None, verbs: tuple[str, ...] = SPEC_VERBS) -> FileCase:
    return FileCase(case_id, {APPLIANCE: content}, words, APPLIANCE, at, verbs)


def top(case_id: str, line: str, words: str, drop: str = "", verbs: tuple[str, ...] = SPEC_VERBS) -> FileCase:
    """A top-level key added after `roles` (so that it is not inside a table), `drop` removed."""
    assert drop in GOOD
    return text(case_id, GOOD.replace(drop, "", 1).replace(ROLES, ROLES + "\n" + line, 1), words, line.splitlines()[0], verbs)


def check(case_id: str, body: str, words: str, at: str | None = AUTO, ports: str = PORTS) -> FileCase:
    """demo.toml whose check table is `body` (after its [[test.checks]] header)."""
    content = BEFORE_CHECKS.replace(PORTS, ports, 1) + "[[test.checks]]\n" + body + "\n"
    return text(case_id, content, words, next(line for line in body.splitlines() if line.strip()) if at == AUTO else at)


def target(case_id: str, table: str, words: str, at: str = AUTO) -> FileCase:
    """demo.toml with a [targets...] table appended (after the checks: a table of its own)."""
    return text(case_id, GOOD + "\n" + table + "\n", words, table.splitlines()[-1] if at == AUTO else at, TARGET_VERBS)


def distribution_with(old: str, new: str) -> dict[str, str]:
    """debian-13.toml with its first `old` replaced by `new` ("" for old: new goes first)."""
    content = (Path(__file__).parents[2] / "distributions/debian-13.toml").read_text()
    return {"distributions/debian-13.toml": content.replace(old, new, 1)}


def aws(case_id: str, line: str, words: str) -> FileCase:
    return target(case_id, "[targets.aws]\n" + line, words)


SYNTAX = [
    toml("unterminated-string", VERSION, 'version = "1.0', "invalid TOML", verbs=SYNTAX_VERBS),
    toml("missing-value", VERSION, "version =", "invalid TOML", verbs=SYNTAX_VERBS),
    toml("duplicate-key", VERSION, VERSION + '\nversion = "2.0"', "Cannot overwrite a value", at='version = "2.0"', verbs=SYNTAX_VERBS),
    toml("table-declared-twice", "[test]", "[ image ]\nx = 1\n[test]", "twice", verbs=SYNTAX_VERBS),
    toml("dotted-key-then-table", ROLES, ROLES + '\nimage.formats = ["raw"]', "twice", at="[image]", verbs=SYNTAX_VERBS),
    toml("bad-table-header", "[image]", "[image", "invalid TOML", verbs=SYNTAX_VERBS),
    toml("unclosed-array", ROLES, 'roles = ["common", "wsgi"', "Unclosed array", at="[vars]", verbs=SYNTAX_VERBS),
    toml("double-comma", PORTS, "ports = [80,,]", "invalid TOML", verbs=SYNTAX_VERBS),
    toml("bad-escape", DESCRIPTION, r'description = "a\q"', "invalid TOML", verbs=SYNTAX_VERBS),
    toml("control-character", DESCRIPTION, 'description = "a\x01b"', "Illegal character", verbs=SYNTAX_VERBS),
    toml("unterminated-multiline-string", DESCRIPTION, 'description = """A demo', "end of document", at=BODY, verbs=SYNTAX_VERBS),
    toml("bare-words", DESCRIPTION, DESCRIPTION + "\njust some words", "invalid TOML", at="just some words", verbs=SYNTAX_VERBS),
    toml("key-without-equals", "[vars]", 'other "x"\n[vars]', "invalid TOML", verbs=SYNTAX_VERBS),
    toml(
        "newline-in-inline-table", "wsgi_workers = 3", "wsgi_workers = 3\nextra = {a = 1,\nb = 2}", "invalid TOML", at="extra =", verbs=SYNTAX_VERBS
    ),
    toml("key-then-array-of-tables", PORTS, PORTS + "\nchecks = 3", "Cannot overwrite a value", at="[[test.checks]]", verbs=SYNTAX_VERBS),
    toml("bad-date", VERSION, "version = 1979-13-45", "invalid TOML", verbs=SYNTAX_VERBS),
    toml("bad-number", "wsgi_workers = 3", "wsgi_workers = 0x", "invalid TOML", verbs=SYNTAX_VERBS),
    text("nul-byte", GOOD + '\nbad = "a\x00b"\n', "Illegal character", 'bad = "a', SYNTAX_VERBS),
    text("byte-order-mark", "\ufeff" + GOOD, "invalid TOML", NAME, SYNTAX_VERBS),
    text("not-utf8", GOOD.encode() + b'\nextra = "\xff\xfe"\n', "not UTF-8 text", "extra = ", SYNTAX_VERBS),
    text("empty-file", "", "missing key 'name'", None),
    text("only-a-comment", "# nothing here\n", "missing key 'name'", None),
]

UNKNOWN_KEYS = [
    toml("top-level-typo", NAME, NAME + '\nnmae = "demo"', "did you mean 'name'", at="nmae"),
    toml("top-level-unknown", NAME, NAME + '\ncolour = "red"', "unknown key 'colour'", at="colour"),
    toml("unknown-table", "[image]", "[imag]", "unknown key 'imag'"),
    toml("image-key-typo", FORMATS, 'fromats = ["qcow2"]', "did you mean 'image.formats'"),
    toml("image-subtable", ROOT_SIZE, ROOT_SIZE + "\n[image.extra]\nx = 1", "unknown key 'image.extra'", at="[image.extra]"),
    toml("test-key-typo", PORTS, "prots = [80]", "did you mean 'test.ports'"),
    toml("test-subtable", PORTS, PORTS + "\n[test.extra]\nx = 1", "unknown key 'test.extra'", at="[test.extra]"),
    toml(
        "security-key-typo",
        "[image]",
        "[security]\nallow_plaintext = true\n\n[image]",
        "did you mean 'security.allow_plaintext_passwords'",
        at="allow_plaintext",
    ),
    toml("security-table-typo", "[image]", "[securty]\nallow_plaintext_passwords = true\n\n[image]", "unknown key 'securty'"),
    toml("check-key-typo", BODY, 'bdy = "ok"', "did you mean 'body'"),
    toml("check-key-of-another-type", BODY, 'unit = "nginx.service"', "unknown key 'test.checks[0].unit'"),
    target("unknown-target", '[targets.hetzner]\nproject = "x"', "unknown target 'targets.hetzner'", at="[targets.hetzner]"),
    aws("aws-key-typo", 'regoin = "eu-west-1"', "did you mean 'region'"),
    target("aws-subtable", "[targets.aws.extra]\nx = 1", "unknown key 'targets.aws.extra'", at="[targets.aws.extra]"),
]

WRONG_TYPES = [
    toml("name-int", NAME, "name = 3", "name: expected a string"),
    toml("version-int", VERSION, "version = 1", "version: expected a string"),
    toml("version-date", VERSION, "version = 1979-05-27", "got date"),
    toml("description-array", DESCRIPTION, "description = []", "description: expected a string"),
    toml("distribution-int", DESCRIPTION, DESCRIPTION + "\ndistribution = 13", "distribution: expected a string", at="distribution"),
    toml("kickstart-bool", KICKSTART, "kickstart = true", "kickstart: expected a string"),
    toml("roles-string", ROLES, 'roles = "common"', "roles: expected a list of strings"),
    toml("roles-int-element", ROLES, 'roles = ["common", 1]', "roles: expected a list of strings"),
    toml("vars-array", "[vars]\nwsgi_workers = 3", "vars = [1]", "vars: expected a table"),
    top("image-int", "image = 3", "image must be a table", drop=IMAGE_TABLE),
    top("image-array", "image = []", "image must be a table", drop=IMAGE_TABLE),
    toml("image-array-of-tables", "[image]", "[[image]]", "image must be a table"),
    top("test-int", "test = 3", "test must be a table", drop=GOOD[GOOD.index("[test]") :]),
    top("security-bool", "security = true", "security must be a table"),
    top("targets-int", "targets = 3", "a table", verbs=SYNTAX_VERBS),
    target("targets-aws-int", "[targets]\naws = 3", "targets.aws must be a table"),
    toml("formats-string", FORMATS, 'formats = "qcow2"', "image.formats: expected a list of strings"),
    toml("formats-int-element", FORMATS, 'formats = ["qcow2", 2]', "image.formats: expected a list of strings"),
    toml("formats-nested-array", FORMATS, 'formats = [["qcow2"]]', "image.formats: expected a list of strings"),
    toml("root-size-bool", ROOT_SIZE, "root_size = true", "image.root_size: True is not a size"),
    toml("root-size-float", ROOT_SIZE, "root_size = 3.5", "image.root_size: 3.5 is not a size"),
    toml("root-size-array", ROOT_SIZE, "root_size = []", "is not a size"),
    toml("grow-string", ROOT_SIZE, ROOT_SIZE + '\ngrow = "yes"', "image.grow: expected true or false", at="grow"),
    toml("grow-int", ROOT_SIZE, ROOT_SIZE + "\ngrow = 1", "image.grow: expected true or false", at="grow"),
    toml("esp-size-array", ROOT_SIZE, ROOT_SIZE + "\nesp_size = [64]", "image.esp_size: [64] is not a size", at="esp_size"),
    toml("compress-int", ROOT_SIZE, ROOT_SIZE + "\ncompress = 1", "image.compress: expected true or false", at="compress"),
    toml(
        "plaintext-string",
        "[image]",
        '[security]\nallow_plaintext_passwords = "no"\n\n[image]',
        "security.allow_plaintext_passwords: expected true or false",
        at="allow_plaintext_passwords",
    ),
    toml("ports-int", PORTS, "ports = 80", "test.ports: expected a list of port numbers"),
    toml("ports-string-element", PORTS, 'ports = ["80"]', "test.ports: expected an integer, got str"),
    toml("ports-bool-element", PORTS, "ports = [true]", "test.ports: expected an integer, got bool"),
    toml("boot-timeout-string", PORTS, PORTS + '\nboot_timeout = "60"', "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("boot-timeout-zero", PORTS, PORTS + "\nboot_timeout = 0", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("boot-timeout-negative", PORTS, PORTS + "\nboot_timeout = -5", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("boot-timeout-nan", PORTS, PORTS + "\nboot_timeout = nan", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("boot-timeout-inf", PORTS, PORTS + "\nboot_timeout = inf", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("memory-too-much", PORTS, PORTS + '\nmemory = "64GiB"', "test.memory: '64GiB' is out of range (256MiB to 16GiB)", at="memory"),
    toml("memory-too-little", PORTS, PORTS + "\nmemory = 128", "test.memory: 128 is out of range (256MiB to 16GiB)", at="memory"),
    toml("memory-not-a-size", PORTS, PORTS + '\nmemory = "lots"', "test.memory: 'lots' is not a size", at="memory"),
    toml("boot-timeout-bool", PORTS, PORTS + "\nboot_timeout = true", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("boot-timeout-huge-int", PORTS, PORTS + f"\nboot_timeout = {10**400}", "test.boot_timeout: expected a positive number", at="boot_timeout"),
    toml("module-int", PORTS, PORTS + "\nmodule = 3", "test.module: expected a string", at="module"),
    toml("boot-analysis-string", PORTS, PORTS + '\nboot_analysis = "no"', "test.boot_analysis: expected true or false", at="boot_analysis"),
    text("checks-int", BEFORE_CHECKS + "checks = 3\n", "test.checks must be an array of tables", "checks = 3"),
    text("checks-int-element", BEFORE_CHECKS + "checks = [1]\n", "test.checks[0] must be a table", "checks = [1]"),
]

NAMES = [
    toml("name-capitals", NAME, 'name = "Demo"', "is not a valid name"),
    toml("name-one-letter", NAME, 'name = "d"', "is not a valid name"),
    toml("name-leading-dash", NAME, 'name = "-demo"', "is not a valid name"),
    toml("name-trailing-dash", NAME, 'name = "demo-"', "is not a valid name"),
    toml("name-space", NAME, 'name = "de mo"', "is not a valid name"),
    toml("name-non-ascii", NAME, 'name = "démo"', "is not a valid name"),
    toml("name-underscore", NAME, 'name = "de_mo"', "is not a valid name"),
    toml("name-too-long", NAME, f'name = "{"a" * 41}"', "is not a valid name"),
    toml("name-empty", NAME, 'name = ""', "is not a valid name"),
    toml("name-trailing-newline", NAME, 'name = "demo\\n"', "is not a valid name"),
    toml("name-other-than-file", NAME, 'name = "other"', "does not match the file name"),
    toml("name-missing", NAME + "\n", "", "missing key 'name'", at=None),
    toml("version-missing", VERSION + "\n", "", "missing key 'version'", at=None),
    toml("description-missing", DESCRIPTION + "\n", "", "missing key 'description'", at=None),
    toml("kickstart-missing", KICKSTART + "\n", "", "missing key 'kickstart'", at=None),
]

MISSING_FILES = [
    toml("kickstart-not-found", KICKSTART, 'kickstart = "nope.ks.j2"', "template 'nope.ks.j2' not found in kickstarts/"),
    toml("kickstart-path", KICKSTART, 'kickstart = "../kickstarts/demo.ks.j2"', "not found in kickstarts/"),
    toml("kickstart-absolute", KICKSTART, 'kickstart = "/etc/hostname"', "not found in kickstarts/"),
    toml("kickstart-empty", KICKSTART, 'kickstart = ""', "not found in kickstarts/"),
    toml("kickstart-directory", KICKSTART, 'kickstart = "."', "not found in kickstarts/"),
    toml("role-not-found", ROLES, 'roles = ["common", "nope"]', "role 'nope' not found"),
    toml("role-path", ROLES, 'roles = ["../roles/common"]', "role '../roles/common' not found"),
    toml("role-subdirectory", ROLES, 'roles = ["common/tasks"]', "not found"),
    toml("role-empty-name", ROLES, 'roles = ["common", ""]', "role '' not found"),
    FileCase(
        "role-without-tasks",
        {APPLIANCE: GOOD.replace(ROLES, 'roles = ["common", "wsgi", "hollow"]'), "roles/hollow/README.md": "no tasks/main.yml\n"},
        "role 'hollow' not found (no roles/hollow/tasks/main.yml)",
        APPLIANCE,
        "roles =",
        SPEC_VERBS,
    ),
    toml(
        "distribution-undefined",
        DESCRIPTION,
        DESCRIPTION + '\ndistribution = "debian-99"',
        "distribution 'debian-99' is not defined",
        at="distribution",
    ),
    toml(
        "distribution-path",
        DESCRIPTION,
        DESCRIPTION + '\ndistribution = "../distributions/debian-13"',
        "distribution '../distributions/debian-13' is not defined",
        at="distribution",
    ),
    toml("distribution-empty", DESCRIPTION, DESCRIPTION + '\ndistribution = ""', "distribution '' is not defined", at="distribution"),
    toml("module-not-found", PORTS, PORTS + '\nmodule = "nope_checks.py"', "test.module: 'nope_checks.py' not found beside", at="module"),
    toml("module-absolute", PORTS, PORTS + '\nmodule = "/etc/hostname"', "not found beside the appliance file", at="module"),
    toml("module-elsewhere", PORTS, PORTS + '\nmodule = "../appliances/wsgi_checks.py"', "not found beside the appliance file", at="module"),
    FileCase(
        "distribution-file-broken",
        {"distributions/debian-13.toml": 'name = "debian-13"\ndescription =\n'},
        "invalid TOML",
        "distributions/debian-13.toml",
        "description =",
        RENDER_VERBS,
    ),
    FileCase(
        "distribution-file-unknown-key",
        distribution_with("", 'mirrors = "x"\n'),
        "unknown key 'mirrors'",
        "distributions/debian-13.toml",
        "mirrors",
        RENDER_VERBS,
    ),
    FileCase(
        "distribution-masked-unit-path",
        distribution_with("masked_units = [", 'masked_units = ["../../../../etc/passwd.service", '),
        "is not a systemd unit name",
        "distributions/debian-13.toml",
        "masked_units",
        RENDER_VERBS,
    ),
    FileCase(
        "distribution-initramfs-module-shell",
        distribution_with("initramfs_modules = [", 'initramfs_modules = ["virtio_blk; touch /tmp/x", '),
        "is not a kernel module name",
        "distributions/debian-13.toml",
        "initramfs_modules",
        RENDER_VERBS,
    ),
]

FORMATS_AND_SIZES = [
    toml("format-unknown", FORMATS, 'formats = ["qcow3"]', "'qcow3' is not a known format"),
    toml("format-capitals", FORMATS, 'formats = ["QCOW2"]', "'QCOW2' is not a known format"),
    toml("format-empty-name", FORMATS, 'formats = [""]', "'' is not a known format"),
    toml("format-iso", FORMATS, 'formats = ["raw", "iso"]', "'iso' is not a known format"),
    toml("size-words", ROOT_SIZE, 'root_size = "lots"', "is not a size"),
    toml("size-terabytes", ROOT_SIZE, 'root_size = "2TB"', "is not a size"),
    toml("size-negative", ROOT_SIZE, 'root_size = "-1G"', "is not a size"),
    toml("size-fraction", ROOT_SIZE, 'root_size = "1.5G"', "is not a size"),
    toml("size-empty", ROOT_SIZE, 'root_size = ""', "is not a size"),
    toml("size-spaced-unit", ROOT_SIZE, 'root_size = "2 G B"', "is not a size"),
    toml("size-zero", ROOT_SIZE, "root_size = 0", "out of range"),
    toml("size-too-small", ROOT_SIZE, "root_size = 63", "out of range"),
    toml("size-too-small-mib", ROOT_SIZE, 'root_size = "63M"', "out of range"),
    toml("size-too-large", ROOT_SIZE, 'root_size = "1025G"', "out of range"),
    toml("size-huge-int", ROOT_SIZE, "root_size = 99999999999999999999", "out of range"),
    toml("esp-size-too-small", ROOT_SIZE, ROOT_SIZE + '\nesp_size = "32M"', "image.esp_size: '32M' is out of range", at="esp_size"),
    toml("esp-size-words", ROOT_SIZE, ROOT_SIZE + '\nesp_size = "big"', "image.esp_size: 'big' is not a size", at="esp_size"),
]

CHECKS = [
    toml("check-type-missing", CHECK, '[[test.checks]]\nname = "x"', "test.checks[0].type: None is not a check type", at="[[test.checks]]"),
    toml("check-type-unknown", CHECK, '[[test.checks]]\ntype = "htp"', "'htp' is not a check type", at="type ="),
    toml("check-type-int", CHECK, "[[test.checks]]\ntype = 3", "3 is not a check type", at="type ="),
    toml("check-type-array", CHECK, '[[test.checks]]\ntype = ["http"]', "is not a check type", at="type ="),
    toml("check-port-zero", PORT, "port = 0", "test.checks[0].port: 0 is not a port number"),
    toml("check-port-too-big", PORT, "port = 70000", "70000 is not a port number"),
    toml("check-port-string", PORT, 'port = "80"', "test.checks[0].port: expected an integer"),
    toml("check-port-not-forwarded", PORTS, "ports = [8080]", "guest port 80 is not forwarded", at=PORT),
    toml("check-path-relative", PATH, 'path = "healthz"', "must start with '/'"),
    toml("check-path-int", PATH, "path = 3", "test.checks[0].path: expected a string"),
    toml("check-body-int", BODY, "body = 3", "test.checks[0].body: expected a string"),
    toml("check-body-regex", BODY, 'body_regex = "("', "not a valid regular expression"),
    toml("check-header-name", BODY, 'headers = {"Bad Header" = "x"}', "'Bad Header' is not an HTTP header name"),
    toml("check-header-value-int", BODY, "headers = {X-Served-By = 3}", "test.checks[0].headers: expected a string"),
    toml("check-header-regex", BODY, 'headers = {X-Served-By = "("}', "not a valid regular expression"),
    toml("check-headers-string", BODY, 'headers = "X-Served-By"', "test.checks[0].headers: expected a table"),
    toml("check-status-string", BODY, 'status = "200"', "test.checks[0].status: expected an integer"),
    toml("check-status-bool", BODY, "status = true", "test.checks[0].status: expected an integer, got bool"),
    toml("check-timeout-zero", BODY, "timeout = 0", "test.checks[0].timeout: expected a positive number"),
    toml("check-timeout-negative", BODY, "timeout = -1", "test.checks[0].timeout: expected a positive number"),
    toml("check-timeout-nan", BODY, "timeout = nan", "test.checks[0].timeout: expected a positive number"),
    toml("check-timeout-inf", BODY, "timeout = inf", "test.checks[0].timeout: expected a positive number"),
    toml("check-timeout-string", BODY, 'timeout = "60"', "test.checks[0].timeout: expected a positive number"),
    toml("check-name-int", BODY, "name = 3", "test.checks[0].name: expected a string"),
    check("tcp-without-port", 'type = "tcp"', "missing key 'test.checks[0].port'", at="[[test.checks]]"),
    check("unit-without-unit", 'type = "unit"', "missing key 'test.checks[0].unit'", at="[[test.checks]]"),
    check("unit-int", 'type = "unit"\nunit = 3', "test.checks[0].unit: expected a string", at="unit = 3"),
    check("command-without-argv", 'type = "command"', "missing key 'test.checks[0].argv'", at="[[test.checks]]"),
    check("command-argv-string", 'type = "command"\nargv = "ls /"', "test.checks[0].argv: expected a list of strings", at="argv"),
    check("command-argv-int-element", 'type = "command"\nargv = ["ls", 1]', "test.checks[0].argv: expected a list of strings", at="argv"),
    check("command-output-regex", 'type = "command"\nargv = ["ls"]\noutput = "["', "not a valid regular expression", at="output"),
    check("command-status-string", 'type = "command"\nargv = ["ls"]\nstatus = "0"', "test.checks[0].status: expected an integer", at="status"),
    check("python-without-function", 'type = "python"', "missing key 'test.checks[0].function'", at="[[test.checks]]"),
    check("python-without-module", 'type = "python"\nfunction = "f"', "a python check needs test.module", at="[[test.checks]]"),
    check("no-failed-units-with-port", 'type = "no_failed_units"\nport = 80', "unknown key 'test.checks[0].port'", at="port = 80"),
    check(
        "second-check-not-forwarded",
        'type = "tcp"\nport = 80\n\n[[test.checks]]\ntype = "tcp"\nport = 22',
        "test.checks[1].port: guest port 22 is not forwarded",
        at="port = 22",
    ),
]

TARGETS = [
    aws("region-made-up", 'region = "Mars"', "targets.aws.region: 'Mars' is not an AWS region name"),
    aws("region-int", "region = 3", "targets.aws.region: expected a string"),
    aws("region-trailing-newline", 'region = "eu-west-1\\n"', "is not an AWS region name"),
    aws("copy-to-string", 'copy_to = "eu-west-1"', "targets.aws.copy_to: expected a list of region names"),
    aws("copy-to-bad-region", 'copy_to = ["eu-west-1", "x"]', "'x' is not an AWS region name"),
    aws("share-with-short", 'share_with = ["123"]', "'123' is not an AWS account id"),
    aws("share-with-int", "share_with = [123456789012]", "targets.aws.share_with: expected a list of strings"),
    aws("name-unknown-field", 'name = "{nope}"', "unknown field {nope}"),
    aws("name-unbalanced-brace", 'name = "{"', "is not a valid pattern"),
    aws("name-positional-field", 'name = "{0}"', "unknown field {0}"),
    aws("tags-reserved", 'tags = {"aws:x" = "y"}', "keys starting with aws: or crust: are reserved"),
    aws("tags-int-value", "tags = {team = 1}", "tag 'team': expected a string value"),
    aws("tags-empty-key", 'tags = {"" = "x"}', "keys are 1-128 characters"),
    aws("tags-string", 'tags = "team"', "targets.aws.tags: expected a table"),
    aws("method-unknown", 'method = "ftp"', "'ftp' is not an upload method"),
    aws("bucket-int", "bucket = 3", "targets.aws.bucket: expected a string"),
    aws("import-role-array", "import_role = []", "targets.aws.import_role: expected a string"),
    aws("workers-zero", "workers = 0", "0 workers: use 1 to 64"),
    aws("workers-too-many", "workers = 65", "65 workers: use 1 to 64"),
    aws("workers-string", 'workers = "8"', "targets.aws.workers: expected an integer"),
    aws("root-volume-negative", "root_volume_size = -1", "-1 GiB: use 1 to 16384"),
    aws("root-volume-huge", "root_volume_size = 20000", "20000 GiB: use 1 to 16384"),
    aws("connect-timeout-zero", "connect_timeout = 0", "targets.aws.connect_timeout: expected a positive number"),
    aws("read-timeout-string", 'read_timeout = "60"', "targets.aws.read_timeout: expected a positive number"),
    aws("wait-timeout-inf", "wait_timeout = inf", "targets.aws.wait_timeout: expected a positive number"),
    aws("max-attempts-zero", "max_attempts = 0", "0 attempts: use 1 to 20"),
    aws("instance-type-made-up", 'instance_type = "big"', "'big' is not an instance type"),
    aws("subnet-made-up", 'subnet = "subnet-xyz"', "'subnet-xyz' is not a subnet id"),
    aws("security-groups-string", 'security_groups = "sg-12345678"', "expected a list of security group ids"),
    aws("security-groups-made-up", 'security_groups = ["sg-zz"]', "'sg-zz' is not a sg id"),
    aws("ssh-key-int", "ssh_key = 3", "targets.aws.ssh_key: expected a string"),
    aws("ssh-key-unknown-user", 'ssh_key = "~no-such-user-of-crust/id_ed25519.pub"', "targets.aws.ssh_key: Could not determine home directory"),
    aws("cloud-config-int", "cloud_config = 3", "targets.aws.cloud_config: expected a table"),
    FileCase(
        "shared-targets-key-typo", {"targets.toml": '[aws]\nregoin = "eu-west-1"\n'}, "did you mean 'region'", "targets.toml", "regoin", TARGET_VERBS
    ),
    FileCase(
        "shared-targets-unknown-target",
        {"targets.toml": '[hetzner]\nproject = "x"\n'},
        "unknown target 'hetzner'",
        "targets.toml",
        "[hetzner]",
        TARGET_VERBS,
    ),
    FileCase("shared-targets-aws-int", {"targets.toml": "aws = 3\n"}, "aws must be a table", "targets.toml", "aws = 3", TARGET_VERBS),
    FileCase("shared-targets-syntax", {"targets.toml": "[aws\n"}, "invalid TOML", "targets.toml", "[aws", TARGET_VERBS),
]

INJECTION = [
    toml(
        "description-newline",
        DESCRIPTION,
        'description = "line one\\nrootpw --plaintext x"',
        "appliance.description: value contains a newline",
        verbs=RENDER_VERBS,
    ),
    toml("description-carriage-return", DESCRIPTION, 'description = "a\\rb"', "value contains a newline", verbs=RENDER_VERBS),
    toml("description-line-separator", DESCRIPTION, 'description = "a\\u2028%pre"', "value contains a newline", verbs=RENDER_VERBS),
    toml("description-form-feed", DESCRIPTION, 'description = "a\\fb"', "value contains a newline", verbs=RENDER_VERBS),
    toml("description-next-line", DESCRIPTION, 'description = "a\\u0085b"', "value contains a newline", verbs=RENDER_VERBS),
    toml("description-nul", DESCRIPTION, 'description = "a\\u0000b"', "value contains a newline", verbs=RENDER_VERBS),
    toml("description-percent", DESCRIPTION, 'description = "%pre"', "appliance.description: value starts with '%'", verbs=RENDER_VERBS),
    toml("description-spaced-percent", DESCRIPTION, 'description = "  %post --nochroot"', "value starts with '%'", verbs=RENDER_VERBS),
    toml("version-percent", VERSION, 'version = "%end"', "appliance.version: value starts with '%'", verbs=RENDER_VERBS),
    toml(
        "var-newline",
        "wsgi_workers = 3",
        'wsgi_workers = 3\nwsgi_app_title = "a\\nrootpw x"',
        "vars.wsgi_app_title: value contains a newline",
        at="wsgi_app_title",
        verbs=RENDER_VERBS,
    ),
    toml(
        "var-percent",
        "wsgi_workers = 3",
        'wsgi_workers = 3\nwsgi_app_title = "%post"',
        "vars.wsgi_app_title: value starts with '%'",
        at="wsgi_app_title",
        verbs=RENDER_VERBS,
    ),
    toml(
        "var-list-element-newline",
        "wsgi_workers = 3",
        'wsgi_workers = 3\nwsgi_app_requirements = ["flask==3.0", "x\\r%pre"]',
        "vars.wsgi_app_requirements[1]: value contains a newline",
        at="wsgi_app_requirements",
        verbs=RENDER_VERBS,
    ),
]

CASES = SYNTAX + UNKNOWN_KEYS + WRONG_TYPES + NAMES + MISSING_FILES + FORMATS_AND_SIZES + CHECKS + TARGETS + INJECTION


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_appliance_file(case: FileCase, tmp_path: Path) -> None:
    run_file_case(case, copy_project(tmp_path / "project"), tmp_path)


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
