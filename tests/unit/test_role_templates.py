"""Role variables stay data (issue 15): every role template, rendered with Ansible's own
templating with each string variable an appliance can set given hostile values (a newline,
%, $, ;, }, quotes, a backslash, shell code, a Jinja expression), is still well-formed for its
file and carries the value as it was; or the role's own validation (tasks/validate.yml, run
as Ansible runs an assert) refuses the value with a message naming the variable.

Files are checked with the tools that read them: systemd units with `systemd-analyze verify`
(and its unit dump for the exact values), nginx sites with `nginx -t`, shell scripts with
`sh -n` and by running their assignments in sh, Python with its parser, YAML with a YAML
parser. A template without a declared file kind fails the test.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, build_py, need_tool

ROLES = ROOT / "roles"

# Each template's kind of file, which says how a rendering is checked.
KINDS = {
    "cloud_init/95-crust.cfg.j2": "yaml",
    "django/crust-django-setup.service.j2": "systemd",
    "django/manage.j2": "sh",
    "django/setup.py.j2": "python",
    "common/crust-release.j2": "env",
    "ids/crust-ids-interface.service.j2": "systemd",
    "ids/crust-ids-update.service.j2": "systemd",
    "ids/crust-ids-update.timer.j2": "systemd",
    "ids/find-interface.j2": "sh",
    "ids/suricata-dropin.conf.j2": "systemd-dropin",
    "ids/update.yaml.j2": "yaml",
    "moksha_hub/moksha-hub.service.j2": "systemd",
    "moksha_hub/nginx-moksha.conf.j2": "nginx",
    "nginx/nginx.service.j2": "systemd",
    "rabbitmq/rabbitmq.conf.j2": "rabbitmq",
    "rabbitmq/setup-users.py.j2": "python",
    "postgresql/crust-postgresql.service.j2": "systemd",
    "puppetserver/crust-puppetserver-setup.service.j2": "systemd",
    "puppetserver/puppetserver-dropin.conf.j2": "systemd-dropin",
    "puppetserver/setup.py.j2": "python",
    "pyramid/crust-pyramid-setup.service.j2": "systemd",
    "pyramid/setup.j2": "sh",
    "postgresql/setup.py.j2": "python",
    "turbogears2/crust-tg2-schema.service.j2": "systemd",
    "turbogears2/setup-schema.j2": "sh",
    "wsgi/nginx-site.conf.j2": "nginx",
    "wsgi/wsgi.service.j2": "systemd",
}

HOSTILE = [
    "two\nlines",
    "100% %n %i %%",
    "$HOME ${PATH} $$",
    "a; b",
    "} {",
    "\"double\" 'single'",
    "back\\slash\\",
    "$(echo INJECTED) `echo INJECTED`",
    "{{ 7 * 6 }} {% raw %}",
]
# The same behind an absolute path's prefix: a path's shape must not be what refuses them.
PATH_HOSTILE = ["/srv/" + value for value in HOSTILE]

# Free text: must be accepted (and quoted), never refused.
FREE_TEXT = {"wsgi_app_title", "turbogears2_title", "django_title", "pyramid_title", "ids_alerts_title"}

# Not in the matrix, and why: host paths are Crust's (type path: checked to exist on the
# host, their content hashed); *_packages only feed an assert against crust_packages;
# requirements are checked by python_app's pin pattern (test_requirements_are_pinned below);
# the rules are Suricata's (one per line, checked with suricata -T at build).
SKIPPED = re.compile(r".*_packages|.*requirements|ids_local_rules|crust_roles_dir")

CRUST_VARS = {
    "crust_appliance": "wsgi",
    "crust_version": "1.0.0",
    "crust_distribution": "debian-13",
    "crust_description": "test",
    "crust_roles_dir": str(ROLES),
    "crust_wheel_cache": "/var/cache/crust/wheels",
    "crust_wheel_dir": "/var/tmp/crust-wheels",
    "crust_packages": {},
    "ansible_managed": "Ansible managed",
    # What roles register before they include python_app (its validation reads them).
    "moksha_hub_built": {"files": []},
    "moksha_hub_work": {"path": "/tmp/crust-moksha-test"},
}


@functools.cache
def ansible() -> Any:
    """Ansible's loader and templating, with the common role's plugins added as Ansible adds
    a legacy role's (ansible.playbook.role.Role: add_all_plugin_dirs)."""
    import ansible.template
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader

    init_plugin_loader()
    add_all_plugin_dirs(str(ROLES / "common"))
    return ansible.template, DataLoader()


@functools.cache
def load(path: Path) -> Any:
    """A role file as Ansible reads it (its strings trusted as templates); shared: not to be changed."""
    return ansible()[1].load_from_file(str(path), trusted_as_template=True)


def templar(variables: dict[str, Any]) -> Any:
    return ansible()[0].Templar(loader=ansible()[1], variables=variables)


def unsafe(value: Any) -> Any:
    """An appliance value as Crust means to pass it: data, never templated."""
    from ansible.utils.unsafe_proxy import wrap_var

    return wrap_var(value)


def closure(roles: list[str]) -> list[str]:
    ordered: list[str] = []

    def visit(name: str) -> None:
        meta = ROLES / name / "meta/main.yml"
        for dep in (yaml.safe_load(meta.read_text()) or {}).get("dependencies") or [] if meta.is_file() else []:
            visit(dep if isinstance(dep, str) else dep["role"])
        if name not in ordered:
            ordered.append(name)

    for role in roles:
        visit(role)
    return ordered


@dataclass(frozen=True)
class Stack:
    """The roles of one shipped appliance, in Ansible's order."""

    appliance: str
    roles: tuple[str, ...]

    def variables(self) -> dict[str, Any]:
        """Defaults, then what roles pass to their dependencies (meta/main.yml vars)."""
        found: dict[str, Any] = {}
        for role in self.roles:
            defaults = ROLES / role / "defaults/main.yml"
            if defaults.is_file():
                found.update(load(defaults) or {})
        for role in self.roles:
            meta = ROLES / role / "meta/main.yml"
            for dep in (load(meta) or {}).get("dependencies") or [] if meta.is_file() else []:
                if isinstance(dep, dict):
                    found.update(dep.get("vars") or {})
        return found

    def options(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(role, variable, spec) of every option an appliance may set."""
        return role_options(self.roles)

    def aliases(self, name: str) -> set[str]:
        """The name, and the variables of dependencies that roles set from it (meta/main.yml)."""
        found = {name}
        for role in self.roles:
            meta = ROLES / role / "meta/main.yml"
            for dep in (load(meta) or {}).get("dependencies") or [] if meta.is_file() else []:
                for var, value in (dep.get("vars") or {}).items() if isinstance(dep, dict) else []:
                    if re.search(r"\{\{[^}]*\b" + re.escape(name) + r"\b", json.dumps(value)):
                        found.add(var)
        return found

    def templates(self) -> list[Path]:
        return [p for role in self.roles for p in sorted((ROLES / role / "templates").glob("*.j2"))]

    def python_app_vars(self) -> list[dict[str, Any]]:
        """The vars of every include_role of python_app (it validates what it is given)."""
        found = []

        def walk(tasks: Any) -> None:
            for task in tasks or []:
                if not isinstance(task, dict):
                    continue
                include = task.get("ansible.builtin.include_role")
                if isinstance(include, dict) and include.get("name") == "python_app":
                    found.append(task.get("vars") or {})
                for key in ("block", "rescue", "always"):
                    walk(task.get(key))

        for role in self.roles:
            walk(load(ROLES / role / "tasks/main.yml"))
        return found


@functools.cache
def role_options(roles: tuple[str, ...]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for role in roles:
        spec_file = ROLES / role / "meta/argument_specs.yml"
        if spec_file.is_file():
            found += [(role, n, s) for n, s in yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"].items()]
    return found


def stack_of(appliance: str) -> Stack:
    import tomllib

    return Stack(appliance, tuple(closure(tomllib.loads((ROOT / "appliances" / f"{appliance}.toml").read_text())["roles"])))


@functools.cache
def stacks() -> list[Stack]:
    seen: dict[tuple[str, ...], Stack] = {}
    from crust.define.project import Project
    from crust.define.spec import load_appliance

    project = Project.at(ROOT)
    for name in project.appliance_names():
        spec = load_appliance(project.appliance_path(name), project)  # the roles of those that extend another too
        roles = tuple(closure(list(spec.roles)))
        seen.setdefault(roles, Stack(spec.name, roles))
    return list(seen.values())


@functools.cache
def argument_spec(path: Path) -> dict[str, Any]:
    options: dict[str, Any] = yaml.safe_load(path.read_text())["argument_specs"]["main"]["options"]
    return options


def validate(stack: Stack, variables: dict[str, Any]) -> str | None:
    """Validate as Ansible does when each role starts, its argument spec (types, choices), then
    run its tasks/validate.yml: the first failing assert's message (or failing command), or
    None when the values pass."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    engine = templar(variables)
    for role in stack.roles:
        spec_file = ROLES / role / "meta/argument_specs.yml"
        if spec_file.is_file():
            spec = argument_spec(spec_file)
            given = {name: engine.template(variables[name]) for name in spec if name in variables}
            errors = ArgumentSpecValidator(spec).validate(given, validate_role_argument_spec=True).error_messages
            if errors:
                return f"{spec_file.relative_to(ROOT)}: " + "; ".join(errors)
    files = [(ROLES / role / "tasks/validate.yml", variables) for role in stack.roles]
    for include_vars in stack.python_app_vars():
        app_vars = {**load(ROLES / "python_app/defaults/main.yml"), **variables, **include_vars}
        files.append((ROLES / "python_app/tasks/validate.yml", app_vars))
    for path, task_vars in files:
        if not path.is_file():
            continue
        for task in load(path):
            problem = run_task(task, task_vars)
            if problem:
                return f"{path.relative_to(ROOT)}: {problem}"
    return None


def run_task(task: dict[str, Any], task_vars: dict[str, Any]) -> str | None:
    engine = templar(task_vars)
    items = engine.template(task["loop"]) if "loop" in task else [None]
    for item in items:
        local = templar({**task_vars, "item": item}) if item is not None else engine
        if "ansible.builtin.assert" in task:
            args = task["ansible.builtin.assert"]
            conditions = args["that"] if isinstance(args["that"], list) else [args["that"]]
            for condition in conditions:
                if not local.evaluate_conditional(condition):
                    return str(local.template(args["fail_msg"]))
        elif "ansible.builtin.command" in task:
            argv = [str(a) for a in local.template(task["ansible.builtin.command"]["argv"])]
            need_tool(argv[0])
            out = subprocess.run(argv, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                return f"{' '.join(argv)}: {out.stderr.strip()}"
        else:
            raise AssertionError(f"validate.yml may hold assert and command tasks only, not {sorted(task)}")
    return None


def render(path: Path, variables: dict[str, Any]) -> str:
    """As the template action does: the file trusted as a template, trim_blocks."""
    module, _ = ansible()
    text = module.trust_as_template(path.read_text())
    engine = templar(variables).copy_with_new_env(searchpath=[str(path.parent)])
    return str(engine.template(text, escape_backslashes=False, overrides={"trim_blocks": True}))


# --- checks of a rendered file, by kind ------------------------------------------------------


def systemd_keys(text: str) -> list[tuple[str, str]]:
    """(section, key) of every setting line; a line that is neither fails."""
    keys, section = [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        if re.fullmatch(r"\[[A-Za-z]+\]", line):
            section = line
            continue
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=.*", line)
        assert match, f"not a setting: {line!r}"
        assert not line.endswith("\\"), f"a continued line: {line!r}"
        keys.append((section, match.group(1)))
    return keys


def systemd_verify(units: dict[str, str], dropins: dict[str, str], dump: bool = False) -> str:
    """systemd-analyze verify on a root holding the host's units, these, and stub programs;
    with dump, the units as systemd loaded them (its debug output). Fails on any warning."""
    need_tool("systemd-analyze")
    # One root per test process: the host's units stay, this call's units replace the last's.
    root = units_root()
    system = root / "etc/systemd/system"
    shutil.rmtree(system, ignore_errors=True)
    system.mkdir(parents=True)
    for name, text in units.items():
        (system / name).write_text(text)
    for name, text in dropins.items():
        unit = name.split("/")[0].removesuffix(".d")
        (system / name).parent.mkdir(parents=True, exist_ok=True)
        (system / name).write_text(text)
        if not (system / unit).exists():
            (system / unit).write_text("[Service]\nType=forking\nExecStart=/usr/bin/true\n")
    everything = "\n".join([*units.values(), *dropins.values()])
    for program in re.findall(r"^Exec[A-Za-z]*=[-@+!:]*(/[^\s\"]+)", everything, flags=re.M):
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    for name in ("true", "kill"):
        stub = root / "usr/bin" / name
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    names = sorted({*units, *(n.split("/")[0].removesuffix(".d") for n in dropins)})
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), out.stdout + out.stderr
    if not dump:
        return ""
    loaded = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_LEVEL": "debug"},
    )
    return loaded.stdout + loaded.stderr


@functools.cache
def units_root() -> Path:
    """A root for systemd-analyze --root: a copy of the host's units (the targets ours name)."""
    root = Path(tempfile.mkdtemp(prefix="crust-units-"))
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    return root


@pytest.fixture(scope="module", autouse=True)
def _remove_units_root() -> Iterator[None]:
    yield
    if units_root.cache_info().currsize:
        shutil.rmtree(units_root())
        units_root.cache_clear()


def nginx_check(site: str) -> None:
    need_tool("nginx")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp)
        (prefix / "site.conf").write_text(site)
        (prefix / "nginx.conf").write_text(
            f"pid {prefix}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
            f"  access_log off;\n  client_body_temp_path {prefix}/b;\n  proxy_temp_path {prefix}/p;\n"
            f"  fastcgi_temp_path {prefix}/f;\n  uwsgi_temp_path {prefix}/u;\n  scgi_temp_path {prefix}/s;\n"
            f"  include {prefix}/site.conf;\n}}\n"
        )
        nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert nginx
        out = subprocess.run([nginx, "-t", "-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr


def shell_assignments(template: Path) -> dict[str, str]:
    """shell variable -> Ansible variable of the `name={{ var | quote }}` lines; any other
    use of a template expression in a shell template fails."""
    pairs = {}
    for line in template.read_text().splitlines():
        if "{{" not in line:
            continue
        match = re.fullmatch(r"\s*([a-z_]+)=\{\{ ([a-z0-9_]+) \| quote \}\}", line)
        if match:
            pairs[match.group(1)] = match.group(2)
        else:
            assert line == "# {{ ansible_managed }}", f"{template.name}: a value outside a quoted assignment: {line!r}"
    return pairs


def check_shell(template: Path, text: str, variables: dict[str, Any], engine: Any) -> None:
    need_tool("sh")
    out = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    pairs = shell_assignments(template)
    first: dict[str, str] = {}  # the quoted assignment comes first; later ones are the script's own
    for line in text.splitlines():
        name = line.strip().split("=")[0] if re.match(r"\s*[a-z_]+=", line) else ""
        if name in pairs and name not in first:
            first[name] = line.strip()
    lines = list(first.values())
    # The assignments alone, in a shell: each variable must hold the value, not what running it would give.
    probe = "set -eu\n" + "\n".join(lines) + "\n" + "".join(f'printf "%s\\0" "${name}"\n' for name in pairs)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=False, cwd=tmp)
    assert out.returncode == 0 and "INJECTED" not in out.stderr, out.stderr
    got = dict(zip(pairs, out.stdout.split("\0")[:-1], strict=True))
    for name, var in pairs.items():
        assert got[name] == str(engine.template(variables[var]) if isinstance(variables[var], str) else variables[var]), (name, got[name])


# What each Python template carries as data: its constant, from the variable.
PYTHON_DATA = {
    "rabbitmq/setup-users.py.j2": {
        "DEFINITIONS": "rabbitmq_definitions_file",
        "USERS": "rabbitmq_users",
        "POLICIES": "rabbitmq_policies",
        "VHOST_LIMITS": "rabbitmq_vhost_limits",
    },
    "postgresql/setup.py.j2": {"DATABASES": "postgresql_databases"},
    "puppetserver/setup.py.j2": {
        "ALT_NAMES": "puppetserver_dns_alt_names",
        "HEAP_PERCENT": "puppetserver_heap_percent",
        "HEAP_MIN_MIB": "puppetserver_heap_min_mib",
        "HEAP_MAX_MIB": "puppetserver_heap_max_mib",
        "JRUBY_INSTANCES": "puppetserver_jruby_instances",
    },
    "django/setup.py.j2": {
        "CONFIG_DIR": "django_config_dir",
        "APP_USER": "wsgi_user",
        "APP_ROOT": "wsgi_root",
        "ADMIN_USER": "django_admin_user",
        "ADMIN_EMAIL": "django_admin_email",
        "ADMIN_PASSWORD_FILE": "django_admin_password_file",
    },
}


def check_python(path: Path, text: str, variables: dict[str, Any], engine: Any) -> None:
    tree = ast.parse(text)
    compile(tree, path.name, "exec")
    expected = PYTHON_DATA[f"{path.parent.parent.name}/{path.name}"]
    seen = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in expected:
            call = node.value
            assert isinstance(call, ast.Call) and ast.unparse(call.func) == "json.loads", ast.unparse(node)
            seen[node.targets[0].id] = json.loads(ast.literal_eval(call.args[0]))
    assert set(seen) == set(expected)
    for name, var in expected.items():
        assert seen[name] == json.loads(json.dumps(engine.template(variables[var]))), name


def check_rendered(stack: Stack, variables: dict[str, Any], probe: tuple[str, Any] | None = None) -> None:
    """Render every template of the stack with these variables and check each file."""
    engine = templar(variables)
    units: dict[str, str] = {}
    dropins: dict[str, str] = {}
    baseline = baseline_of(stack) if probe is not None else {}
    for path in stack.templates():
        if probe is not None and not references(path) & stack.aliases(probe[0]):
            continue  # renders as with the defaults (checked by test_defaults_pass_and_render_well_formed)
        kind = KINDS[f"{path.parent.parent.name}/{path.name}"]
        text = render(path, variables)
        where = f"{path.relative_to(ROOT)} with {probe}"
        try:
            if kind.startswith("systemd"):
                keys = systemd_keys(text)
                if probe is not None and not isinstance(probe[1], list):
                    assert keys == systemd_keys(baseline[path]), "the settings changed"
                name = path.name.removesuffix(".j2")
                if kind == "systemd-dropin":
                    dropins[f"{name.split('-')[0]}.service.d/{name}"] = text
                else:
                    units[name] = text
            elif kind == "nginx":
                nginx_check(text)
            elif kind == "sh":
                check_shell(path, text, variables, engine)
            elif kind == "python":
                check_python(path, text, variables, engine)
            elif kind == "yaml":
                data = yaml.safe_load(text)
                if path.name == "95-crust.cfg.j2":
                    assert data["datasource_list"] == list(engine.template(variables["cloud_init_datasources"]))
                    assert data["system_info"]["default_user"]["name"] == engine.template(variables["cloud_init_user"])
            elif kind == "env":
                lines = [line for line in text.splitlines() if not line.startswith("#")]
                assert [line.split("=")[0] for line in lines] == ["APPLIANCE", "VERSION", "DISTRIBUTION"]  # BUILD_ID: stamped by the tree step, lines
            elif kind == "rabbitmq":
                for line in text.splitlines():
                    assert line.startswith("#") or re.fullmatch(r"[a-z_][a-z0-9_.]* = \S+", line), line
            else:
                raise AssertionError(f"no check for kind {kind}")
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    if units or dropins:
        dump = systemd_verify(units, dropins, dump=probe is not None and "wsgi.service" in units and "wsgi_app_title" in stack.aliases(probe[0]))
        if dump:
            title = str(engine.template(variables["wsgi_app_title"]))
            match = re.search(r"\t\tEnvironment: CRUST_APP_TITLE=(.*?)\n\t\t", dump, flags=re.S)
            assert match and match.group(1) == title, f"the unit's environment has {match and match.group(1)!r}, not {title!r}"


@functools.cache
def references(path: Path) -> set[str]:
    """The names a template's expressions and statements mention (a superset of the variables it reads)."""
    blocks = re.findall(r"\{\{.*?\}\}|\{%.*?%\}", path.read_text(), flags=re.S)
    return {name for block in blocks for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", block)}


@functools.cache
def baseline_of(stack: Stack) -> dict[Path, str]:
    return {p: render(p, default_variables(stack)) for p in stack.templates()}


@functools.cache
def default_variables_cached(stack: Stack) -> dict[str, Any]:
    return {**stack.variables(), **CRUST_VARS}


def default_variables(stack: Stack) -> dict[str, Any]:
    return dict(default_variables_cached(stack))


# --- the matrix ------------------------------------------------------------------------------


def cases() -> Iterator[Any]:
    for stack in stacks():
        for role, name, spec in stack.options():
            if SKIPPED.fullmatch(name) or spec.get("type") == "path" or role == "python_app":
                continue
            kind = spec.get("type", "str")
            if kind == "str" or (kind == "list" and spec.get("elements") == "str"):
                yield pytest.param(stack, name, None, id=f"{stack.appliance}-{name}")
            elif kind == "list" and spec.get("elements") == "dict":
                for field, sub in (spec.get("options") or {}).items():
                    if sub.get("type", "str") == "str":
                        yield pytest.param(stack, name, field, id=f"{stack.appliance}-{name}.{field}")
                if not spec.get("options"):  # moksha_hub_js: package, version, files
                    for field in ("package", "version", "files"):
                        yield pytest.param(stack, name, field, id=f"{stack.appliance}-{name}.{field}")


def with_value(stack: Stack, name: str, field: str | None, value: str) -> dict[str, Any]:
    variables = default_variables(stack)
    spec = next(s for _, n, s in stack.options() if n == name)
    if field is None:
        variables[name] = unsafe([value] if spec.get("type") == "list" else value)
    else:
        items = [dict(i) for i in templar(variables).template(variables[name])] or [{}]
        items[0][field] = [value] if field == "files" else value
        variables[name] = unsafe(items)
    return variables


def test_every_template_has_a_kind() -> None:
    found = {f"{p.parent.parent.name}/{p.name}" for p in ROLES.glob("*/templates/*.j2")}
    assert found == set(KINDS), f"declare the kind of file of: {sorted(found - set(KINDS))}; remove: {sorted(set(KINDS) - found)}"


@pytest.mark.parametrize("stack", stacks(), ids=lambda s: s.appliance)
def test_defaults_pass_and_render_well_formed(stack: Stack) -> None:
    variables = default_variables(stack)
    assert validate(stack, variables) is None
    check_rendered(stack, variables)


@pytest.mark.parametrize(("stack", "name", "field"), list(cases()))
def test_hostile_values(stack: Stack, name: str, field: str | None) -> None:
    accepted = []
    for value in HOSTILE if name in FREE_TEXT else HOSTILE + PATH_HOSTILE:
        variables = with_value(stack, name, field, value)
        problem = validate(stack, variables)
        if problem is not None:
            names = stack.aliases(name)
            assert any(n in problem for n in names), f"{name}={value!r} refused, but the message names none of {names}: {problem}"
            assert name not in FREE_TEXT, f"{name} is free text, yet {value!r} was refused: {problem}"
            continue
        accepted.append(value)
        check_rendered(stack, variables, (name, value))
    if name in FREE_TEXT:
        assert accepted == HOSTILE


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("wsgi_bind", "[::1]:8000"),
        ("wsgi_bind", "localhost:8080"),
        ("wsgi_root", "/srv/my-app_1.0"),
        ("wsgi_after_units", ["crust-postgresql.service", "crust-tg2-schema.service"]),
        ("wsgi_environment_files", ["-/etc/default/app", "/etc/app.env"]),
        ("wsgi_app_callable", "my.app:create_app()"),
        ("wsgi_app_title", "Grüße, 東京 ☃"),
    ],
)
def test_unusual_but_valid_values_render(name: str, value: Any) -> None:
    """Values the validation lets through are real ones: they render to files that parse."""
    stack = stack_of("wsgi")
    variables = {**default_variables(stack), name: unsafe(value)}
    assert validate(stack, variables) is None
    check_rendered(stack, variables, (name, value))


def test_ids_calendar_and_home_net_are_checked_by_their_tools() -> None:
    """A well-shaped but meaningless calendar is refused by systemd-analyze calendar; a real
    one, and a HOME_NET with a negation, render to a unit systemd accepts."""
    stack = stack_of("ids")
    bad = {**default_variables(stack), "ids_update_calendar": unsafe("Mon *-*-* 25:99")}
    assert "systemd-analyze calendar" in (validate(stack, bad) or "")
    good = {
        **default_variables(stack),
        "ids_update_calendar": unsafe("Mon,Thu *-*-* 03:00:00"),
        "ids_home_net": unsafe("[10.0.0.0/8,!10.1.0.0/16,fd00::/8]"),
    }
    assert validate(stack, good) is None
    check_rendered(stack, good)


@pytest.mark.parametrize("value", ["gunicorn", "gunicorn==23.0.0\n", "--index-url=http://x/", "gunicorn==23.0.0 ; x", "gunicorn>=1"])
def test_requirements_are_pinned(value: str) -> None:
    """What reaches pip's command line is name==version, nothing else (not even an option)."""
    stack = stack_of("wsgi")
    variables = {**default_variables(stack), "wsgi_app_requirements": unsafe([value])}
    problem = validate(stack, variables)
    assert problem is not None and "is not pinned" in problem


def test_systemd_quote() -> None:
    """The filter's own rules, on the words that matter (the matrix checks them in units)."""
    quote = templar({}).environment.filters["systemd_quote"]
    assert quote("/opt/wsgi/app") == "/opt/wsgi/app"
    assert quote("a b") == '"a b"'
    assert quote("100%") == '"100%%"'
    assert quote("$HOME") == '"$HOME"' and quote("$HOME", exec=True) == '"$$HOME"'
    assert quote('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'
    assert quote("") == '""'
    module, _ = ansible()
    with pytest.raises(Exception, match="NUL"):
        templar({"v": "a\x00b"}).template(module.trust_as_template("{{ v | systemd_quote }}"))


def test_a_choice_is_refused_by_validate(tmp_path: Path) -> None:
    """Choices in meta/argument_specs.yml are checked by ./build.py validate: exit 2, file:line."""
    folder = tmp_path / "appliances"
    folder.mkdir()
    text = (ROOT / "appliances" / "wsgi.toml").read_text()
    text = text.replace("wsgi_workers = 2\n", 'wsgi_workers = 2\ncloud_init_datasources = ["NoCloud", "None"]\n')
    (folder / "wsgi.toml").write_text(text)
    shutil.copy(ROOT / "appliances" / "wsgi_checks.py", folder)
    out = build_py("--appliances", str(folder), "validate", "wsgi")
    line = text.splitlines().index('cloud_init_datasources = ["NoCloud", "None"]') + 1
    assert out.returncode == 2, out.stderr
    assert f"wsgi.toml:{line}" in out.stderr and "'None' is not a choice of role cloud_init" in out.stderr, out.stderr


DEBIAN_PUPPET_CONF = """\
# This file can be used to override the default puppet settings.
[server]
autosign = /usr/local/libexec/crust-puppet-autosign
"""


def test_puppetserver_setup_writes_puppet_conf_as_puppet_config_set_would(tmp_path: Path) -> None:
    """crust-puppetserver-setup sets the server's certname and the CLI's server in puppet.conf
    itself (a `puppet config set` is a minute under emulation); what it writes parses to the
    values, keeps the rest of the file, and replaces a key that is already set."""
    import configparser

    text = render(ROOT / "roles" / "puppetserver" / "templates" / "setup.py.j2", default_variables(stack_of("config")))
    namespace: dict[str, Any] = {"__name__": "crust_puppetserver_setup"}
    exec(compile(text, "setup.py", "exec"), namespace)  # the rendered script's functions, not its main
    conf = tmp_path / "puppet.conf"
    conf.write_text(DEBIAN_PUPPET_CONF)
    namespace["PUPPET_CONF"] = conf
    namespace["write"] = lambda path, body, mode, group="root": path.write_text(body)
    namespace["set_puppet_settings"]({("server", "certname"): "cfg.example", ("main", "server"): "cfg.example"})
    namespace["set_puppet_settings"]({("server", "certname"): "renamed.example"})
    written = conf.read_text()
    assert written.startswith(DEBIAN_PUPPET_CONF)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(written)
    assert dict(parser["server"]) == {"autosign": "/usr/local/libexec/crust-puppet-autosign", "certname": "renamed.example"}
    assert dict(parser["main"]) == {"server": "cfg.example"}
    assert '["puppet", "config"' not in text  # no start of Puppet's Ruby left in the script
