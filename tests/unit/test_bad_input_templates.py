"""Bad input, kickstart templates and role variables: Jinja syntax errors, undefined values,
expressions that fail, kickstart injection, pykickstart errors and warnings, Crust's policy
(unsupported commands, plain-text passwords, ...), and appliance variables that the roles'
meta/argument_specs.yml do not allow.

Each case writes a malformed kickstarts/demo.ks.j2 (or demo.toml, or a role) into a project
copy and runs every verb that checks it; tests/unit/badinput.py says what each run must show.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.badinput import APPLIANCE, GOOD, KICKSTART, TEMPLATE, FileCase, copy_project, run_file_case

# The verbs each case runs. A kickstart is parsed by a fresh pykickstart handler, ~20-40 ms a
# run: the kickstart cases run `validate` and `build` (whose planning is `plan`'s), the others
# (refused before the parse) run more.
TEMPLATE_VERBS = ("validate", "plan", "build", "render")  # Jinja errors: render fails too
KICKSTART_VERBS = ("validate", "build")  # pykickstart and policy: render only renders
VARS_VERBS = ("validate", "plan", "build", "audit")  # checked before rendering: cheap
AUTO = "<the first line of the new text>"
BASE = "kickstarts/base.ks.j2"
SUPER = "{{ super() }}"


def jinja(case_id: str, new: str, words: str, at: str | None = AUTO, old: str = SUPER, verbs: tuple[str, ...] = TEMPLATE_VERBS) -> FileCase:
    """demo.ks.j2 with `old` replaced by `new`; the error names its line holding `at`."""
    assert old in TEMPLATE, old
    return FileCase(
        case_id,
        {KICKSTART: TEMPLATE.replace(old, new, 1)},
        words,
        KICKSTART,
        next(line for line in new.splitlines() if line.strip()) if at == AUTO else at,
        verbs,
    )


def system(case_id: str, lines: str, words: str, at: str | None = AUTO, where: str = KICKSTART) -> FileCase:
    """demo.ks.j2 whose `system` block (base.ks.j2's commands) is `lines`."""
    body = "rootpw --lock\ntimezone Etc/UTC --utc\nlang C.UTF-8\nkeyboard us\nnetwork --bootproto=dhcp --hostname={{ appliance.name }}\n"
    if lines.startswith("-"):  # "-old\n+new": a replaced line
        old, new = lines[1:].split("\n+", 1)
        assert old in body, old
        body, lines = body.replace(old, new, 1), new
    else:
        body += lines + "\n"
    template = TEMPLATE + "{% block system %}\n" + body + "{% endblock %}\n"
    return FileCase(
        case_id, {KICKSTART: template}, words, where, next(line for line in lines.splitlines() if line.strip()) if at == AUTO else at, KICKSTART_VERBS
    )


def block(case_id: str, name: str, content: str, words: str, at: str | None = AUTO) -> FileCase:
    """demo.ks.j2 overriding base.ks.j2's block `name` with `content`."""
    template = TEMPLATE + "{% block " + name + " %}\n" + content + "\n{% endblock %}\n"
    return FileCase(
        case_id,
        {KICKSTART: template},
        words,
        KICKSTART,
        next(line for line in content.splitlines() if line.strip()) if at == AUTO else at,
        KICKSTART_VERBS,
    )


def packages(case_id: str, lines: str, words: str, at: str | None = AUTO, where: str = KICKSTART) -> FileCase:
    """demo.ks.j2 whose packages block lists `lines` after nginx."""
    template = TEMPLATE.replace("nginx\n", "nginx\n" + lines + "\n", 1)
    return FileCase(case_id, {KICKSTART: template}, words, where, lines.splitlines()[0] if at == AUTO else at, KICKSTART_VERBS)


JINJA = [
    jinja("unclosed-expression", "{{ super() }", "template syntax error: unexpected '}'"),
    jinja("empty-if", "{% if %}", "template syntax error: Expected an expression"),
    jinja("empty-for", "{% for x in %}", "template syntax error"),
    jinja("unknown-tag", "{% nosuchtag %}", "Encountered unknown tag 'nosuchtag'"),
    jinja("misspelt-endblock", "{% endblok %}", "template syntax error", old="{% endblock %}"),
    jinja("unclosed-block", "", "Unexpected end of template", at=SUPER, old="{% endblock %}\n"),
    jinja("unknown-filter", "{{ appliance.name|shout }}", "No filter named 'shout'"),
    jinja("unknown-test", "{% if appliance.name is shouting %}x{% endif %}", "No test named 'shouting'"),
    jinja(
        "block-defined-twice",
        "{% endblock %}\n{%  block packages %}{% endblock %}",
        "block 'packages' defined twice",
        at="{%  block packages %}",
        old="{% endblock %}",
    ),
    jinja("unclosed-comment", "{# a comment", "template syntax error"),
    jinja("unclosed-string", "{{ 'abc }}", "template syntax error"),
    jinja("undefined-name", "{{ nope }}", "undefined template value: 'nope' is undefined"),
    jinja("undefined-var", "{{ vars.nope }}", "undefined template value: 'dict object' has no attribute 'nope'"),
    jinja("undefined-appliance-key", "{{ appliance.nme }}", "has no attribute 'nme'"),
    jinja("undefined-distro-key", "{{ distro.codename }}", "has no attribute 'codename'"),
    jinja("attribute-of-int", "{{ vars.wsgi_workers.x }}", "'int object' has no attribute 'x'"),
    jinja("index-out-of-range", "{{ (1, 2)[5] }}", "tuple object has no element 5"),
    jinja("undefined-in-loop", "{% for p in vars.packages %}{{ p }}{% endfor %}", "has no attribute 'packages'"),
    jinja("caller-outside-call", "{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}", "No caller defined"),
    jinja("super-of-super", "{{ super() }}{{ super.super() }}", "there is no parent block called 'packages'"),
    jinja("division-by-zero", "{{ 1 / 0 }}", "template error: ZeroDivisionError"),
    jinja("int-plus-string", "{{ vars.wsgi_workers + 'a' }}", "template error: TypeError"),
    jinja("call-an-int", "{{ vars['wsgi_workers'](1) }}", "template error: TypeError"),
    jinja("format-without-arguments", "{{ '%s'|format() }}", "template error: TypeError"),
    jinja("filter-without-arguments", "{{ 'x'|replace() }}", "template error: TypeError"),
    jinja("extends-itself", '{% extends "demo.ks.j2" %}', "template recursion", old='{% extends "base.ks.j2" %}'),
    jinja("includes-itself", "{% include 'demo.ks.j2' %}", "template recursion"),
    jinja(
        "extends-missing", '{% extends "nope.ks.j2" %}', "template 'nope.ks.j2' not found in kickstarts/", at=None, old='{% extends "base.ks.j2" %}'
    ),
    jinja("includes-missing", "{% include 'nope.ks.j2' %}", "template 'nope.ks.j2' not found in kickstarts/", at=None),
    FileCase("template-not-utf8", {KICKSTART: TEMPLATE.encode() + b"# caf\xe9\n"}, "not UTF-8 text", KICKSTART, "# caf", TEMPLATE_VERBS),
    FileCase(
        "base-template-broken",
        {BASE: (Path(__file__).parents[2] / BASE).read_text(encoding="utf-8").replace("{% endblock %}", "{% endblok %}", 1)},
        "template syntax error",
        BASE,
        "{% endblok %}",
        TEMPLATE_VERBS,
    ),
    FileCase(
        "value-injected-through-template",
        {
            APPLIANCE: GOOD.replace('description = "A demo"', 'description = "x\\u2028rootpw --plaintext x"'),
            KICKSTART: TEMPLATE.replace(SUPER, "{{ super() }}\n# {{ appliance.description }}"),
        },
        "value contains a newline",
        APPLIANCE,
        "description =",
        TEMPLATE_VERBS,
    ),
]

KICKSTART_SYNTAX = [
    system("unknown-command", "frobnicate --now", "Unknown command: frobnicate"),
    system("rootpw-without-argument", "-rootpw --lock\n+rootpw", "A single argument is expected for the rootpw command"),
    system("rootpw-unknown-option", "-rootpw --lock\n+rootpw --bogus", "A single argument is expected"),
    system("user-without-name", "user --groups=sudo", "the following arguments are required: --name"),
    system("sshkey-without-user", 'sshkey "ssh-ed25519 AAAA x"', "the following arguments are required: --username"),
    system("timezone-without-zone", "-timezone Etc/UTC --utc\n+timezone", "At least one option and/or an argument are expected"),
    system("lang-without-locale", "-lang C.UTF-8\n+lang", "the following arguments are required"),
    system("keyboard-without-layout", "-keyboard us\n+keyboard", "is expected for the keyboard command"),
    system("network-unknown-option", "-network --bootproto=dhcp\n+network --bootproto=dhcp --bogus", "unrecognized arguments: --bogus"),
    system("services-without-options", "services", "One of --disabled or --enabled must be provided"),
    system("unknown-section", "%bogus\n%end", "Unknown kickstart section: %bogus"),
    system("stray-end", "%end", "Unknown kickstart section: %end"),
    system("post-without-end", "%post\necho hi", "Section %post does not end with %end", at="%packages", where=BASE),
    system("removed-command", "install", "install has been removed"),
    system("removed-auth", "auth --useshadow", "auth has been removed"),
    system("deprecated-option", "-timezone Etc/UTC --utc\n+timezone Etc/UTC --isUtc", "deprecated", at="timezone Etc/UTC --isUtc"),
    system("deprecated-ntpservers", "-timezone Etc/UTC --utc\n+timezone Etc/UTC --ntpservers=pool.ntp.org", "pykickstart warnings are errors"),
    system("deprecated-command", "module --name=nodejs", "The module command has been deprecated"),
    system("deprecated-traceback", "%traceback\necho\n%end", "The %traceback section has been deprecated"),
    system("network-device-twice", "network --bootproto=dhcp --hostname=other", "has already been defined"),
    system("logvol-without-size", "logvol / --vgname=x --name=y", "No size given for logical volume"),
    system("raid-without-device", "raid / --level=1", "the following arguments are required: --device"),
    system("autopart-with-part", "autopart", "The part and autopart commands can't be used at the same time", at="part /boot/efi", where=BASE),
    system("mount-with-part", "mount /dev/sda1 /", "The part and mount commands can't be used at the same time", at="part /boot/efi", where=BASE),
]

POLICY = [
    system("reboot", "reboot", "command 'reboot' cannot be honoured for a Debian image"),
    system("poweroff", "poweroff", "command 'poweroff' cannot be honoured"),
    system("text-mode", "text", "command 'text' cannot be honoured"),
    system("selinux", "selinux --disabled", "command 'selinux' cannot be honoured"),
    system("firewall", "firewall --enabled", "configure nftables in a role instead"),
    system("url", "url --url=http://deb.debian.org/debian", "use `repo` for extra sources"),
    system("zerombr", "zerombr", "Crust always writes a fresh disk image"),
    system("clearpart", "clearpart --all", "Crust always writes a fresh disk image"),
    system("firstboot", "firstboot --disable", "command 'firstboot' cannot be honoured"),
    system("skipx", "skipx", "command 'skipx' cannot be honoured"),
    system("eula", "eula --agreed", "command 'eula' cannot be honoured"),
    system("ignoredisk", "ignoredisk --only-use=sda", "command 'ignoredisk' cannot be honoured"),
    system("realm", "realm join example.com", "command 'realm' cannot be honoured"),
    system("sshpw", "sshpw --username=root --iscrypted $6$x$y", "command 'sshpw' cannot be honoured"),
    system("authselect", "authselect select sssd", "command 'authselect' cannot be honoured"),
    system("reqpart", "reqpart", "command 'reqpart' cannot be honoured"),
    system("rootpw-plaintext", "-rootpw --lock\n+rootpw hunter2", "rootpw: a plain-text password is refused"),
    system("rootpw-plaintext-option", "-rootpw --lock\n+rootpw --plaintext hunter2", "rootpw: a plain-text password is refused"),
    system("rootpw-locked-plaintext", "-rootpw --lock\n+rootpw --lock hunter2", "rootpw: a plain-text password is refused"),
    system("rootpw-not-a-hash", "-rootpw --lock\n+rootpw --iscrypted nothash", "rootpw: --iscrypted value is not a crypt(3) hash"),
    system("user-plaintext", "user --name=ops --password=hunter2", "user ops: a plain-text password is refused"),
    system("user-plaintext-option", "user --name=ops --password=hunter2 --plaintext", "user ops: a plain-text password is refused"),
    system("user-not-a-hash", "user --name=ops --iscrypted --password=abc", "user ops: --iscrypted value is not a crypt(3) hash"),
    system("user-bad-name", "user --name=Ops!", "user 'Ops!' is not a valid user name"),
    system("sshkey-unknown-user", 'sshkey --username=nobody "ssh-ed25519 AAAA x"', "sshkey for unknown user 'nobody'"),
    system("sshkey-not-a-key", 'sshkey --username=root "not a key"', "sshkey is not an OpenSSH public key line"),
    system("timezone-unknown", "-timezone Etc/UTC --utc\n+timezone Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    system("timezone-path", "-timezone Etc/UTC --utc\n+timezone ../../etc/passwd", "unknown time zone"),
    system("lang-not-a-locale", "-lang C.UTF-8\n+lang klingon!", "'klingon!' is not a locale name"),
    system("lang-addsupport", "-lang C.UTF-8\n+lang en_US.UTF-8 --addsupport=de_DE", "lang --addsupport cannot be honoured"),
    system("keyboard-not-a-layout", "-keyboard us\n+keyboard --vckeymap=US!", "'US!' is not a keyboard layout"),
    system("network-missing", "-network --bootproto=dhcp --hostname={{ appliance.name }}\n+", "no `network --hostname=...` line", at=None),
    system("network-bootp", "-network --bootproto=dhcp\n+network --bootproto=bootp", "network --bootproto=bootp cannot be honoured"),
    system("network-static-without-ip", "-network --bootproto=dhcp\n+network --bootproto=static", "needs --ip and --netmask"),
    system(
        "network-static-bad-ip",
        "-network --bootproto=dhcp\n+network --bootproto=static --ip=300.1.1.1 --netmask=255.255.255.0",
        "does not appear to be",
    ),
    system("network-vlan", "-network --bootproto=dhcp\n+network --bootproto=dhcp --vlanid=5", "network --vlanid cannot be honoured"),
    system(
        "hostname-invalid",
        "-network --bootproto=dhcp --hostname={{ appliance.name }}\n+network --bootproto=dhcp --hostname=Bad_Host",
        "is not a valid host name",
    ),
    system("repo-without-baseurl", "repo --name=extra", "repo 'extra' needs --baseurl=http(s)://"),
    system("repo-ftp", "repo --name=extra --baseurl=ftp://example.org/debian", "needs --baseurl=http(s)://"),
    system("repo-noverifyssl", "repo --name=extra --baseurl=https://example.org/debian --noverifyssl", "repo --noverifyssl is refused"),
    system(
        "repo-proxy", "repo --name=extra --baseurl=https://example.org/debian --proxy=http://proxy:3128", "repo option --proxy cannot be honoured"
    ),
    system("repo-mirrorlist", "repo --name=extra --mirrorlist=https://example.org/list", "repo option --mirrorlist cannot be honoured"),
    block("bootloader-timeout", "boot", "bootloader --timeout=5", "bootloader --timeout cannot be honoured"),
    block("bootloader-password", "boot", "bootloader --password=secret", "bootloader --password cannot be honoured"),
    block("bootloader-location", "boot", "bootloader --location=partition", "bootloader --location cannot be honoured"),
    block("bootloader-root", "boot", 'bootloader --append="root=/dev/sda1 quiet"', "bootloader --append must not set root="),
    system(
        "bootloader-twice",
        'bootloader --password=secret --append="quiet"',
        "'bootloader' is given again",
        at='bootloader --append="quiet"',
        where=BASE,
    ),
    system("timezone-twice", "timezone Europe/Berlin", "'timezone' is given again (first on rendered line 3)"),
    system("rootpw-twice", "rootpw --iscrypted $6$salt$abcdefghijklmnop", "'rootpw' is given again"),
    system("pre-script", "%pre\necho\n%end", "%pre cannot be honoured: there is no installer run"),
    system("pre-install-script", "%pre-install\necho\n%end", "%pre-install cannot be honoured"),
    system("onerror-script", "%onerror\necho\n%end", "%onerror cannot be honoured"),
    system("post-log", "%post --log=/tmp/post.log\necho\n%end", "%post --log cannot be honoured"),
    system("include-host-file", "%include /etc/hostname", "%include cannot be honoured"),
    system("include-missing-file", "%include /nonexistent/ks.cfg", "%include cannot be honoured"),
    system("ksappend", "%ksappend /nonexistent/ks.cfg", "%ksappend cannot be honoured"),
    system("addon-section", "%addon com_redhat_kdump --enable\n%end", "%addon sections cannot be honoured"),
    system("anaconda-section", "%anaconda\n%end", "%anaconda sections cannot be honoured"),
    packages("package-group", "@core", "package groups and environments (@name) do not exist on Debian", at="%packages", where=BASE),
    packages("package-bad-name", "Not_A_Package!", "'Not_A_Package!' is not a Debian package name"),
    packages("package-included-and-excluded", "-nginx", "package 'nginx' is both included and excluded", at="%packages", where=BASE),
    FileCase(
        "packages-option",
        {BASE: (Path(__file__).parents[2] / BASE).read_text(encoding="utf-8").replace("%packages", "%packages --nocore", 1)},
        "%packages option 'nocore' cannot be honoured",
        BASE,
        "%packages --nocore",
        KICKSTART_VERBS,
    ),
    block(
        "part-home",
        "storage",
        "part /boot/efi --fstype=efi --size=64\npart / --fstype=ext4 --size=2048\npart /home --size=512",
        "partition '/home' cannot be honoured",
        at="part /home",
    ),
    block(
        "part-root-xfs",
        "storage",
        "part /boot/efi --fstype=efi --size=64\npart / --fstype=xfs --size=2048",
        "root filesystem 'xfs' cannot be honoured",
        at="part / ",
    ),
    block("part-root-small", "storage", "part /boot/efi --fstype=efi --size=64\npart / --fstype=ext4 --size=100", "at least 256", at="part / "),
    block("part-esp-ext4", "storage", "part /boot/efi --fstype=ext4 --size=64\npart / --fstype=ext4 --size=2048", "/boot/efi must have --fstype=efi"),
    block(
        "part-esp-small", "storage", "part /boot/efi --fstype=efi --size=10\npart / --fstype=ext4 --size=2048", "the ESP needs --size of at least 33"
    ),
    block(
        "part-label",
        "storage",
        "part /boot/efi --fstype=efi --size=64\npart / --fstype=ext4 --size=2048 --label=root",
        "part options other than",
        at="part / ",
    ),
    block("part-no-root", "storage", "part /boot/efi --fstype=efi --size=64", "no root partition", at=None),
]

ROLE = "roles/demo_role"
ROLE_SPECS = """\
---
argument_specs:
  main:
    short_description: A role of the bad-input suite.
    options:
      demo_role_mode: {type: str, default: safe, choices: [safe, fast], description: Mode.}
      demo_role_levels: {type: list, elements: int, default: [1], choices: [1, 2, 3], description: Levels.}
      demo_role_token: {type: str, required: true, description: A value nothing sets but the appliance.}
      demo_role_count: {type: int, default: 1, description: Count.}
      demo_role_ratio: {type: float, default: 0.5, description: Ratio.}
      demo_role_enabled: {type: bool, default: true, description: Switch.}
      demo_role_names: {type: list, elements: str, default: [], description: Names.}
      demo_role_settings: {type: dict, default: {}, description: Settings.}
      demo_role_source: {type: path, crust_host_path: true, default: "", description: A file on the build host.}
      demo_role_target: {type: path, default: /etc/demo, description: A file in the image.}
"""
ROLE_FILES = {
    f"{ROLE}/tasks/main.yml": "---\n- name: Nothing\n  ansible.builtin.meta: noop\n",
    f"{ROLE}/meta/main.yml": "---\ndependencies: []\n",
    f"{ROLE}/meta/argument_specs.yml": ROLE_SPECS,
}
WITH_ROLE = GOOD.replace('roles = ["common", "wsgi"]', 'roles = ["common", "wsgi", "demo_role"]').replace(
    "wsgi_workers = 3", 'wsgi_workers = 3\ndemo_role_token = "t0k3n"'
)


def var(case_id: str, line: str, words: str, at: str | None = AUTO, files: dict[str, str | bytes] | None = None, drop: str = "") -> FileCase:
    """The appliance with the demo role and `line` added to [vars] (`drop` removed)."""
    assert drop in WITH_ROLE
    appliance = WITH_ROLE.replace(drop, "", 1).replace("[vars]\n", "[vars]\n" + line + ("\n" if line else ""), 1)
    return FileCase(
        case_id,
        {**ROLE_FILES, APPLIANCE: appliance, **(files or {})},
        words,
        APPLIANCE,
        line.split(" =", maxsplit=1)[0] + " =" if at == AUTO else at,
        VARS_VERBS,
    )


ROLE_VARS = [
    var("unknown-typo", "wsgi_wrkers = 3", "vars.wsgi_wrkers: no role of this appliance declares this variable (fix: did you mean 'wsgi_workers'?)"),
    var("unknown-unrelated", "colour = 'red'", "vars.colour: no role of this appliance declares this variable"),
    var("unknown-quoted-name", '"wsgi workers" = 3', "vars.wsgi workers: no role", at='"wsgi workers"'),
    var("unknown-table", "wsgi = {workers = 3}", "vars.wsgi: no role of this appliance declares this variable"),
    FileCase(
        "var-of-a-role-not-in-use",
        {APPLIANCE: GOOD.replace('roles = ["common", "wsgi"]', 'roles = ["common"]')},
        "vars.wsgi_workers: no role of this appliance declares this variable",
        APPLIANCE,
        "wsgi_workers",
        VARS_VERBS,
    ),
    var("int-given-string", 'demo_role_count = "3"', "vars.demo_role_count: expected int (role demo_role), got str"),
    var("int-given-bool", "demo_role_count = true", "expected int (role demo_role), got bool"),
    var("int-given-float", "demo_role_count = 3.5", "expected int (role demo_role), got float"),
    var("int-given-date", "demo_role_count = 1979-05-27", "expected int (role demo_role), got date"),
    var("float-given-string", 'demo_role_ratio = "0.5"', "expected float (role demo_role), got str"),
    var("bool-given-string", 'demo_role_enabled = "yes"', "expected bool (role demo_role), got str"),
    var("bool-given-int", "demo_role_enabled = 1", "expected bool (role demo_role), got int"),
    var("str-given-int", "demo_role_mode = 1", "expected str (role demo_role), got int"),
    var("str-given-table", "demo_role_mode = {a = 1}", "expected str (role demo_role), got dict"),
    var("list-given-string", 'demo_role_names = "a,b"', "expected list (role demo_role), got str"),
    var("dict-given-list", "demo_role_settings = [1]", "expected dict (role demo_role), got list"),
    var("path-given-int", "demo_role_source = 3", "expected path (role demo_role), got int"),
    var("list-element-int-given-string", 'demo_role_levels = ["1"]', "vars.demo_role_levels[0]: expected int elements (role demo_role), got str"),
    var("list-element-int-given-bool", "demo_role_levels = [1, true]", "vars.demo_role_levels[1]: expected int elements"),
    var("list-element-str-given-int", 'demo_role_names = ["a", 2]', "vars.demo_role_names[1]: expected str elements (role demo_role), got int"),
    var("shipped-role-list-element", "wsgi_app_requirements = [1, 2]", "vars.wsgi_app_requirements[0]: expected str elements (role wsgi), got int"),
    var("missing-required", "", "vars.demo_role_token: role demo_role requires this variable", at="[vars]", drop='demo_role_token = "t0k3n"\n'),
    FileCase(
        "missing-required-without-vars-table",
        {**ROLE_FILES, APPLIANCE: WITH_ROLE.replace('[vars]\nwsgi_workers = 3\ndemo_role_token = "t0k3n"\n', "")},
        "vars.demo_role_token: role demo_role requires this variable",
        APPLIANCE,
        "roles =",
        VARS_VERBS,
    ),
    var("bad-choice", 'demo_role_mode = "turbo"', "vars.demo_role_mode: 'turbo' is not a choice of role demo_role (fix: use one of 'safe', 'fast')"),
    var("bad-choice-case", 'demo_role_mode = "Safe"', "'Safe' is not a choice of role demo_role"),
    var("bad-choice-in-list", "demo_role_levels = [1, 5]", "vars.demo_role_levels: 5 is not a choice of role demo_role"),
    var("path-relative", 'demo_role_source = "relative/file"', "vars.demo_role_source: path 'relative/file' must be absolute"),
    var("path-missing", 'demo_role_source = "@PROJECT@/no/such/file"', "/no/such/file does not exist"),
    var("wsgi-path-missing", 'wsgi_app_path = "@PROJECT@/no/app"', "/no/app does not exist"),
    var(
        "wsgi-path-outside-missing",
        'wsgi_app_path = "/nonexistent/app"',
        "vars.wsgi_app_path: /nonexistent/app is outside the directories a build may read",
    ),
    # Issue 15: a host path names the project's (or the appliance directory's) files, nothing else
    # of the build host: not its keys, not the whole of it.
    var("host-path-root-keys", 'demo_role_source = "/root"', "vars.demo_role_source: /root is outside the directories a build may read"),
    var("host-path-slash", 'demo_role_source = "/"', "vars.demo_role_source: / is outside the directories a build may read"),
    var("host-path-etc-shadow", 'demo_role_source = "/etc/shadow"', "/etc/shadow is outside the directories a build may read"),
    # as many '..' as any working directory is deep: the path is /etc wherever the tests run
    var("host-path-dotdot", f'demo_role_source = "/proc/self/cwd{"/.." * 40}/etc"', "is outside the directories a build may read"),
    var("host-path-outside-missing", 'demo_role_source = "/etc/crust-no-such-file"', "is outside the directories a build may read"),
    var("wsgi-app-outside", 'wsgi_app_path = "/etc"', "vars.wsgi_app_path: /etc is outside the directories a build may read"),
    var("image-path-relative", 'demo_role_target = "etc/x"', "vars.demo_role_target: 'etc/x' is not a plain absolute path in the image"),
    var("image-path-dotdot", 'demo_role_target = "/etc/../../x"', "vars.demo_role_target: '/etc/../../x' is not a plain absolute path in the image"),
    var("image-path-space", 'demo_role_target = "/etc/x y"', "is not a plain absolute path in the image"),
    var("argument-specs-invalid-yaml", "", "invalid YAML", files={f"{ROLE}/meta/argument_specs.yml": "argument_specs:\n\tmain: {}\n"}, at=None),
    var(
        "argument-specs-a-list",
        "",
        "argument_specs.yml: expected a mapping, got list",
        files={f"{ROLE}/meta/argument_specs.yml": "- a\n- b\n"},
        at=None,
    ),
    var(
        "argument-specs-option-a-string",
        "",
        "argument_specs.main.options.demo_role_mode: expected a mapping, got str",
        files={f"{ROLE}/meta/argument_specs.yml": "argument_specs:\n  main:\n    options:\n      demo_role_mode: str\n"},
        at=None,
    ),
    var(
        "argument-specs-choices-a-string",
        "",
        "choices: expected a list",
        files={f"{ROLE}/meta/argument_specs.yml": "argument_specs:\n  main:\n    options:\n      demo_role_mode: {type: str, choices: safe}\n"},
        at=None,
    ),
    var("argument-specs-not-utf8", "", "not UTF-8 text", files={f"{ROLE}/meta/argument_specs.yml": b"argument_specs: {}\n# caf\xe9\n"}, at=None),
    var("dependency-missing", "", "role 'ghost' not found", files={f"{ROLE}/meta/main.yml": "---\ndependencies:\n  - role: ghost\n"}, at=None),
    var(
        "dependency-cycle",
        "",
        "role dependency cycle: demo_role -> demo_role",
        files={f"{ROLE}/meta/main.yml": "---\ndependencies: [demo_role]\n"},
        at=None,
    ),
    var("dependencies-a-string", "", "dependencies: expected a list", files={f"{ROLE}/meta/main.yml": "---\ndependencies: common\n"}, at=None),
    var("dependency-without-role", "", "names no role", files={f"{ROLE}/meta/main.yml": "---\ndependencies:\n  - vars: {a: 1}\n"}, at=None),
    var("dependency-an-int", "", "a dependency: expected a mapping, got int", files={f"{ROLE}/meta/main.yml": "---\ndependencies: [3]\n"}, at=None),
]
# Role metadata errors name the role's file, not the appliance.
_WHERE = {
    "argument-specs-invalid-yaml": (f"{ROLE}/meta/argument_specs.yml", "main: {}"),
    "argument-specs-a-list": (f"{ROLE}/meta/argument_specs.yml", None),
    "argument-specs-option-a-string": (f"{ROLE}/meta/argument_specs.yml", None),
    "argument-specs-choices-a-string": (f"{ROLE}/meta/argument_specs.yml", None),
    "argument-specs-not-utf8": (f"{ROLE}/meta/argument_specs.yml", "# caf"),
    "dependency-missing": (f"{ROLE}/meta/main.yml", None),
    "dependency-cycle": (f"{ROLE}/meta/main.yml", None),
    "dependencies-a-string": (f"{ROLE}/meta/main.yml", None),
    "dependency-without-role": (f"{ROLE}/meta/main.yml", None),
    "dependency-an-int": (f"{ROLE}/meta/main.yml", None),
}
ROLE_VARS = [FileCase(c.id, c.files, c.words, *_WHERE[c.id], c.verbs) if c.id in _WHERE else c for c in ROLE_VARS]

CASES = JINJA + KICKSTART_SYNTAX + POLICY + ROLE_VARS


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_template_or_role_variable(case: FileCase, tmp_path: Path) -> None:
    run_file_case(case, copy_project(tmp_path / "project"), tmp_path)


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
