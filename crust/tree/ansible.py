"""Apply Ansible roles to a tree through the chroot connection (community.general.chroot).

The controller runs on the host in private mount and PID namespaces; each task it runs in the
tree goes through a stand-in for chroot(8) that runs it in the build sandbox (bubblewrap, see
crust/tree/sandbox.py): no network, the host's wheel cache read-only at /var/tmp/crust-wheels.
Build secrets the roles declare (crust_secret in meta/argument_specs.yml) are files on a tmpfs
mounted in the controller's private namespace by crust/trust/secretfs.py (from what run()
writes to its stdin), bound read-only at /run/crust-secrets in each task's sandbox; the
variables hold their paths.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from crust.define.roles import secret_options
from crust.log import log_line
from crust.runner import check_tools, find_tool, run, sandboxed
from crust.tree.ansible_boot import SERVE
from crust.tree.files import make_dirs
from crust.tree.sandbox import chroot_wrapper, in_sandbox
from crust.trust import secrets


class Unsafe(str):
    """A string Ansible must never template: written with YAML's !unsafe tag."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


def _represent_unsafe(dumper: yaml.SafeDumper, value: Unsafe) -> yaml.ScalarNode:
    """!unsafe 'text'; but Ansible resolves an !unsafe scalar's type again as if it were plain
    (ansible-core 2.19: '123' would come back an int, 'null' None, '2026-01-01' a date, '*' or
    '=' an error). A string that would is written as a quoted string without the tag: such
    strings (numbers, booleans, null, dates, YAML's '!', '&', '*', '=' and '<<') hold no brace,
    so nothing in them can be a template."""
    text = str(value)
    if dumper.resolve(yaml.ScalarNode, text, (True, False)) != "tag:yaml.org,2002:str":  # type: ignore[no-untyped-call]
        if "{" in text or "%" in text:  # pragma: no cover - no such resolver matches a brace
            raise ValueError(f"cannot write {text!r} so that Ansible neither templates nor retypes it")
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="'")
    return dumper.represent_scalar("!unsafe", text, style="'")


_UnsafeDumper.add_representer(Unsafe, _represent_unsafe)


def mark_unsafe(value: Any) -> Any:
    """Every string value (not the keys: they are names) as Unsafe, in lists and mappings too."""
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, Mapping):
        return {str(k): mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark_unsafe(v) for v in value]
    return value


def unsafe_yaml(variables: Mapping[str, Any]) -> str:
    """The variables as an Ansible vars file in which no value is ever templated.

    Values come from appliance files (data from pull requests): given as JSON extra vars,
    `{{ lookup('pipe', ...) }}` in a description would run on the build host as root. Tagged
    !unsafe, Ansible uses them as they are: a brace in a description comes out as a brace.
    """
    return yaml.dump(mark_unsafe(dict(variables)), Dumper=_UnsafeDumper, sort_keys=True, allow_unicode=True, width=1 << 20)


def write_playbook(workdir: Path, tree: Path, roles: tuple[str, ...], variables: Mapping[str, Any], chroot: Path) -> Path:
    inventory = {
        "all": {
            "hosts": {
                "tree": {
                    "ansible_host": str(tree),
                    "ansible_connection": "community.general.chroot",
                    "ansible_chroot_exe": str(chroot),
                    "ansible_python_interpreter": f"{BOOT_DIR}/python3",
                }
            }
        }
    }
    (workdir / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (workdir / "vars.yml").write_text(unsafe_yaml(variables), encoding="utf-8")
    # Facts of the tree, not of hardware: a chroot's hardware and network facts are the
    # build host's, and gathering them costs seconds.
    # Gathered once per packages tree and kickstart (ANSIBLE_GATHERING=smart with a fact cache
    # keyed by them, see apply_roles): a rebuild after a role edit does not gather again.
    play = [{"name": "Configure the appliance tree", "hosts": "tree", "gather_subset": ["min"], "roles": list(roles)}]
    playbook = workdir / "playbook.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    return playbook


# Modules start through ansible_boot.py, which keeps what they compile in the step's work dir
# (see its docstring): bound at BOOT_DIR in each task's sandbox, the script read-only.
BOOT = Path(__file__).with_name("ansible_boot.py")
BOOT_DIR = "/run/crust-ansible"
WHEEL_CACHE = Path(os.environ.get("CRUST_WHEEL_CACHE", "/var/cache/crust/wheels"))
WHEEL_DIR = "/var/tmp/crust-wheels"  # where the host's wheel cache shows inside the tree


def apply_roles(
    tree: Path,
    roles: tuple[str, ...],
    variables: Mapping[str, Any],
    roles_dir: Path,
    workdir: Path,
    facts_dir: Path,
    applied: tuple[str, ...] = (),
    module_cache: Path | None = None,
) -> None:
    """Run the roles against tree, each task in the build sandbox with the host's wheel cache
    read-only at WHEEL_DIR (roles fetch into it on the host, delegated to localhost). facts_dir
    caches the tree's facts: give each view the roles start from its own.
    applied: roles an earlier play already ran on this tree, that Ansible would skip as run
    had they been in this play (crust/steps/role.py): they run as stubs, without tasks.
    module_cache: where ansible_boot.py keeps the module code it compiled (default: in
    workdir, for this run only). Only runs whose roles are trusted alike may share one: a
    tree's tasks can write into it (the role steps of one build of one appliance)."""
    if not roles:
        return
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    wheels = make_dirs(tree, WHEEL_DIR)
    needed = {opt.name: opt.secret for opt in secret_options(roles_dir, roles)}
    given = secrets.given(sorted(set(needed.values())))  # their content: only ever on run()'s stdin
    paths = {name: f"{secrets.SECRETS_DIR}/{sid}" for name, sid in needed.items()}
    variables = {**variables, "crust_wheel_cache": str(WHEEL_CACHE), "crust_wheel_dir": WHEEL_DIR, **paths}
    secret_dir = workdir / "secrets"  # a tmpfs in the controller's namespace while the playbook runs
    # Ansible quotes the interpreter as one word: a script that starts the tree's python3 with BOOT.
    interpreter = workdir / "python3"
    interpreter.write_text(f'#!/bin/sh\nexec /usr/bin/python3 {BOOT_DIR}/{BOOT.name} "$@"\n')
    interpreter.chmod(0o755)
    compiled = module_cache or workdir / "module-cache"
    compiled.mkdir(parents=True, exist_ok=True)
    (compiled / "stats").unlink(missing_ok=True)  # this run's report only
    boot = [(BOOT, f"{BOOT_DIR}/{BOOT.name}"), (interpreter, f"{BOOT_DIR}/python3")]
    ro_binds = [(WHEEL_CACHE, WHEEL_DIR), *boot, *([(secret_dir, secrets.SECRETS_DIR)] if given else [])]
    server_dir = workdir / "module-server"  # the server's socket: written by it, only connected to by the tasks
    server_dir.mkdir(exist_ok=True)
    chroot = chroot_wrapper(
        workdir / "crust-chroot", ro_binds=[*ro_binds, (server_dir, f"{BOOT_DIR}/server")], binds=[(compiled, f"{BOOT_DIR}/cache")]
    )
    server = module_server(
        workdir / "module-server.sh", tree, ro_binds=ro_binds, binds=[(compiled, f"{BOOT_DIR}/cache"), (server_dir, f"{BOOT_DIR}/server")]
    )
    # No mount point in the tree: the sandbox's /run is a tmpfs, bwrap makes it there.
    playbook = write_playbook(workdir, tree, roles, variables, chroot)
    check_tools(["ansible-playbook"])
    ansible_playbook = str(find_tool("ansible-playbook"))
    env = {
        "ANSIBLE_ROLES_PATH": f"{stub_roles(roles_dir, applied, workdir / 'applied-roles')}:{roles_dir}" if applied else str(roles_dir),
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "ANSIBLE_REMOTE_TMP": "/tmp/.ansible-crust",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "0",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts_dir),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "0",
        # Per-task durations in the step log: where a configured tree's time goes.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
    }
    try:
        _run_playbook(ansible_playbook, workdir, playbook, secret_dir, env, given, server)
    finally:
        wheels.rmdir()
        log_line(module_cache_report(compiled))


def stub_roles(roles_dir: Path, names: tuple[str, ...], into: Path) -> Path:
    """A roles folder searched before roles_dir in which each of NAMES is its role without
    tasks (its other folders linked: defaults, variables, plugins, argument specs, and handlers,
    which other roles may notify): the role counts as applied and runs nothing."""
    for name in names:
        stub = into / name
        stub.mkdir(parents=True)
        for part in sorted((roles_dir / name).iterdir()):
            if part.name != "tasks":
                (stub / part.name).symlink_to(part.resolve())
        (stub / "tasks").mkdir()
        (stub / "tasks" / "main.yml").write_text("[]\n", encoding="utf-8")
    return into


def module_cache_report(compiled: Path) -> str:
    """What ansible_boot.py did in the run: module imports served compiled, and compiled; module
    runs forked by the module server with its imports, forked with their own, and run alone."""
    served = made = 0
    runs = {"forked": 0, "fresh": 0, "alone": 0, "server": 0}
    try:
        for line in (compiled / "stats").read_text(encoding="ascii").splitlines():
            a, b, how = line.split()
            served, made = served + int(a), made + int(b)
            runs[how] += 1
    except (OSError, ValueError, KeyError):
        pass
    return (
        f"crust: ansible module imports: {served} served compiled, {made} compiled; module runs: "
        f"{runs['forked']} forked with the server's imports, {runs['fresh']} forked with their own, {runs['alone']} alone"
    )


def module_server(path: Path, tree: Path, *, ro_binds: Sequence[tuple[Path, str]], binds: Sequence[tuple[Path, str]]) -> Path:
    """A script that runs ansible_boot.py's module server on tree, in the build sandbox (the
    same as each task's): its modules' children run there as the tasks' own would."""
    argv = in_sandbox(tree, ["/usr/bin/python3", f"{BOOT_DIR}/{BOOT.name}", SERVE], ro_binds=ro_binds, binds=binds)
    path.write_text(f"#!/bin/sh\n# Crust: Ansible's module server for one playbook (crust/tree/ansible_boot.py).\nexec {shlex.join(argv)}\n")
    path.chmod(0o700)
    return path


def _run_playbook(
    ansible_playbook: str, workdir: Path, playbook: Path, secret_dir: Path, env: dict[str, str], given: Mapping[str, bytes], server: Path
) -> None:
    # The module server starts beside the controller, in its PID namespace (sandboxed): when the
    # controller (its init) exits, the kernel kills the server with everything else there.
    argv = ["/bin/sh", "-c", '"$0" & exec "$@"', str(server)]
    argv += [ansible_playbook, "-i", str(workdir / "inventory.yml"), "-e", f"@{workdir / 'vars.yml'}", str(playbook)]
    payload = None
    if given:
        argv = [sys.executable, str(secrets.SECRETFS), str(secret_dir), "--", *argv]
        payload = json.dumps({sid: base64.b64encode(value).decode("ascii") for sid, value in given.items()})
    run(sandboxed(argv), env=env, cwd=workdir, input_text=payload)
