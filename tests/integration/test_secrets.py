"""Build secrets never leak: canaries planted in a real build are searched for in every output.

A small role (written here, under the test's tmp dir, with a variant of the wsgi appliance that
shares its packages step) is given a freshly generated SSH private key, an API token and two
keys read from variables with neutral names (DEPLOY_KEY, and CRUST_DEPLOY_KEY, which looks like
one of Crust's own settings) with --secret, while the build's environment holds canary AWS
credentials and a GitHub token. The role uses the secrets for real: it derives the key's public
key with ssh-keygen inside the chroot and installs it (/etc/secret-probe.pub), and records the
sha256 of the token and of the keys. It also records what the run could see: the secret file's
mode and file system, the environment of commands in the tree, the names in the ansible_env
fact, and the controller's view of the variables.

Then every output is searched for every canary (the key's base64 body lines, its raw private
seed, the token, the AWS values): the raw disk image (the whole file) and the qcow2, the store
entries of the build (configured tree, image, qcow2) and their logs, the build record, the
fact cache, build/NAME/ (manifest, SBOM), and the build's stdout and stderr. The derived public
key and the token's digest must be in the image (else the role never saw the secrets, and the
search proves nothing). A rebuild with a rotated key and token reuses the tree (secrets are
no step input). A role that prints a secret and fails shows it redacted, in stderr and its log.

Each run builds its own tree, image and qcow2 (a fresh nonce, ~1.2 GB): at teardown the test
removes exactly those store entries (and their logs and build records), never one that another
appliance's build uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets as random
import shutil
import stat
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crust.build.store import Store, remove_tree
from tests.conftest import ROOT, build_py, need_tool

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]
STORE = ROOT / ".crust"
NAME = "secret-probe"

ROLE_SPEC = """\
---
argument_specs:
  main:
    short_description: Uses build secrets the way a real role would.
    options:
      secret_probe_key_file:
        type: path
        required: true
        crust_secret: deploy_key
        description: Path of the deploy key inside the tree (a build secret).
      secret_probe_token_file:
        type: path
        required: true
        crust_secret: api_token
        description: Path of the API token inside the tree (a build secret).
      secret_probe_site_key_file:
        type: path
        required: true
        crust_secret: site_key
        description: A key given from $DEPLOY_KEY (a variable named like no credential).
      secret_probe_crust_key_file:
        type: path
        required: true
        crust_secret: crust_key
        description: A key given from $CRUST_DEPLOY_KEY (named like a setting of Crust's).
      secret_probe_nonce:
        type: str
        default: ""
        description: Makes each test run's tree its own.
      secret_probe_leak:
        type: bool
        default: false
        description: Print the key and fail (a careless role), to see the redaction.
      secret_probe_copy:
        type: bool
        default: false
        description: Copy the key into the image (a careless role), to see the build refuse it.
"""

ROLE_TASKS = """\
---
- name: Look at the deploy key
  ansible.builtin.stat:
    path: "{{ secret_probe_key_file }}"
  register: secret_probe_key

- name: Find the file system the secrets are on
  ansible.builtin.command:
    argv: [findmnt, --noheadings, --output, "FSTYPE,OPTIONS", --target, "{{ secret_probe_key_file }}"]
  register: secret_probe_mount
  changed_when: false

- name: Derive the public key from the deploy key
  ansible.builtin.command:
    argv: [ssh-keygen, -y, -f, "{{ secret_probe_key_file }}"]
  register: secret_probe_public
  changed_when: false
  no_log: true

- name: Digest the API token
  ansible.builtin.command:
    argv: [sha256sum, "{{ secret_probe_token_file }}"]
  register: secret_probe_token
  changed_when: false
  no_log: true

- name: Digest the keys given from variables
  ansible.builtin.command:
    argv: [sha256sum, "{{ secret_probe_site_key_file }}", "{{ secret_probe_crust_key_file }}"]
  register: secret_probe_env_keys
  changed_when: false
  no_log: true

- name: Record the environment of commands in the tree
  ansible.builtin.command:
    argv: [env]
  register: secret_probe_env
  changed_when: false

- name: A careless role prints the key
  ansible.builtin.command:
    argv: [cat, "{{ secret_probe_key_file }}"]
  register: secret_probe_cat
  changed_when: false
  when: secret_probe_leak

- name: And fails showing it
  ansible.builtin.fail:
    msg: "{{ secret_probe_cat.stdout }}"
  when: secret_probe_leak

- name: Install the derived public key
  ansible.builtin.copy:
    dest: /etc/secret-probe.pub
    content: "{{ secret_probe_public.stdout }}\\n"
    mode: "0644"

- name: A careless role copies the key into the image
  ansible.builtin.copy:
    src: "{{ secret_probe_key_file }}"
    remote_src: true
    dest: /etc/leaked-key
    mode: "0600"
  when: secret_probe_copy

- name: Record what the run saw
  ansible.builtin.copy:
    dest: /etc/secret-probe
    mode: "0644"
    content: |
      nonce={{ secret_probe_nonce }}
      key_mode={{ secret_probe_key.stat.mode }}
      key_owner={{ secret_probe_key.stat.pw_name }}
      mount={{ secret_probe_mount.stdout }}
      token_sha256={{ secret_probe_token.stdout.split()[0] }}
      site_key_sha256={{ secret_probe_env_keys.stdout_lines[0].split()[0] }}
      crust_key_sha256={{ secret_probe_env_keys.stdout_lines[1].split()[0] }}
      controller_aws_secret={{ lookup('ansible.builtin.env', 'AWS_SECRET_ACCESS_KEY', default='absent') }}
      controller_github_token={{ lookup('ansible.builtin.env', 'GITHUB_TOKEN', default='absent') }}
      controller_deploy_key={{ lookup('ansible.builtin.env', 'DEPLOY_KEY', default='absent') }}
      controller_crust_deploy_key={{ lookup('ansible.builtin.env', 'CRUST_DEPLOY_KEY', default='absent') }}
      facts_env_names={{ ansible_env.keys() | sort | join(',') }}
      --- env in the tree
      {{ secret_probe_env.stdout }}
"""


def appliance(leak: bool, copy: bool = False) -> str:
    return f"""\
name = "{NAME}"
version = "1.0.0"
description = "Build secrets test: a deploy key and a token used by a role"
kickstart = "wsgi.ks.j2"
roles = ["common", "secret_probe"]

[vars]
secret_probe_leak = {str(leak).lower()}
secret_probe_copy = {str(copy).lower()}

[image]
formats = ["raw", "qcow2"]
root_size = "1GiB"
"""


def make_project(tmp: Path, nonce: str, leak: bool = False, copy: bool = False) -> tuple[Path, Path]:
    """--appliances and --roles directories: the shipped common role and the test's own."""
    apps, roles = tmp / "appliances", tmp / "roles"
    apps.mkdir(exist_ok=True)
    (apps / f"{NAME}.toml").write_text(appliance(leak, copy))
    if not roles.exists():
        shutil.copytree(ROOT / "roles" / "common", roles / "common")
        for sub, text in (
            ("meta/argument_specs.yml", ROLE_SPEC),
            # wsgi's roles' packages, in their order: the variant shares wsgi's packages step.
            ("meta/crust.yml", "---\npackages: [cloud-init, nginx]\n"),
            ("tasks/main.yml", ROLE_TASKS),
            ("defaults/main.yml", f"---\nsecret_probe_nonce: {nonce}\n"),
        ):
            (roles / "secret_probe" / sub).parent.mkdir(parents=True, exist_ok=True)
            (roles / "secret_probe" / sub).write_text(text)
    return apps, roles


def new_key(folder: Path, name: str) -> tuple[Path, str]:
    """A fresh ed25519 key pair: the private key file and the public key's base64 blob."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    return key, (folder / f"{name}.pub").read_text().split()[1]


def key_canaries(key: Path) -> dict[str, bytes]:
    """Recognisable pieces of a private key: its base64 body lines (but the first, the same
    for every unencrypted ed25519 key), its raw 32-byte seed and the seed in hex, and pieces
    of the whole file in base64 (as Ansible's slurp would return it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = key.read_bytes()
    body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    found = {f"{key.name} body line {i}": line.encode() for i, line in enumerate(body) if i > 0 and len(line) >= 16}
    private = serialization.load_ssh_private_key(pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    found[f"{key.name} seed"] = seed
    found[f"{key.name} seed hex"] = seed.hex().encode()
    encoded = base64.b64encode(pem)
    found[f"{key.name} in base64 (a)"] = encoded[160:220]
    found[f"{key.name} in base64 (b)"] = encoded[240:300]
    return found


def token(prefix: str, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return prefix + "".join(random.choice(alphabet) for _ in range(length))


def env_canaries() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": token("AKIA", 16, string.ascii_uppercase + string.digits),
        "AWS_SECRET_ACCESS_KEY": token("", 40, string.ascii_letters + string.digits + "/+"),
        "AWS_SESSION_TOKEN": token("IQoJb3JpZ2luX2VjE", 180),
        "GITHUB_TOKEN": token("ghp_", 36),
    }


def secret_env() -> dict[str, str]:
    """The variables --secret reads from: neutral names, which no credential pattern matches."""
    return {"PROBE_API_TOKEN": token("tok_", 40), "DEPLOY_KEY": token("dk_", 40), "CRUST_DEPLOY_KEY": token("cdk_", 40)}


def regular_files(root: Path) -> Iterator[Path]:
    """Every regular file under root (no symlink followed, no device or FIFO opened)."""
    if root.is_file():
        yield root
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


CHUNK = 64 * 1024 * 1024


def search(roots: list[Path], needles: dict[str, bytes]) -> list[str]:
    """'needle in file' for every needle found in any regular file under the roots."""
    longest = max(len(n) for n in needles.values())
    hits = []
    for root in roots:
        for path in regular_files(root):
            with open(path, "rb") as handle:
                tail = b""
                while chunk := handle.read(CHUNK):
                    data = tail + chunk
                    hits += [f"{what} in {path}" for what, needle in needles.items() if needle in data]
                    tail = data[-longest:]
    return sorted(set(hits))


def build(apps: Path, roles: Path, out: Path, key: Path, env: dict[str, str], given: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Build the probe: the key from a file, the other secrets from the variables of given."""
    return build_py(
        "--appliances",
        str(apps),
        "--roles",
        str(roles),
        "--output",
        str(out),
        "build",
        NAME,
        "--secret",
        f"deploy_key={key}",
        "--secret",
        "api_token=env:PROBE_API_TOKEN",
        "--secret",
        "site_key=env:DEPLOY_KEY",
        "--secret",
        "crust_key=env:CRUST_DEPLOY_KEY",
        env={**env, **given},
        timeout=1200,
    )


def step(manifest: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in manifest["steps"] if s["kind"] == kind)
    return found


OWN_KINDS = ("role", "tree", "image", "convert")  # what a probe build makes; base and packages are wsgi's


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture
def own_entries() -> Iterator[list[Path]]:
    """Removes, at teardown, the store entries the test's builds made (each run's nonce makes its
    tree, image and qcow2 new: ~1.2 GB a run) and their logs and build records: only entries of
    this appliance, made during the test, that no other appliance's build record uses. The test
    appends the logs of steps that failed (they have no entry)."""
    steps, logs, records = STORE / "steps", STORE / "logs", STORE / "builds" / NAME
    before = (names(steps), names(logs), names(records))
    failed_logs: list[Path] = []
    yield failed_logs
    with Store(STORE).exclusive():  # as ./build.py clean: no build is using them meanwhile
        used_elsewhere: set[str] = set()
        for record in (STORE / "builds").glob("*/*.json"):
            if record.parent.name != NAME:
                used_elsewhere |= {f"{s['kind']}-{s['id']}" for s in json.loads(record.read_text()).get("steps", [])}
        removed: list[str] = []
        for name in sorted(names(steps) - before[0]):
            meta = steps / name / "step.json"
            kind = name.split("-", 1)[0]
            if kind not in OWN_KINDS or name in used_elsewhere or not meta.is_file():
                continue
            made_for = json.loads(meta.read_text())["name"]
            if made_for == NAME or made_for.startswith(f"{NAME}."):  # convert steps are named NAME.FORMAT
                remove_tree(steps / name)
                removed.append(name)
        for name in sorted(names(logs) - before[1]):
            if name.removesuffix(".log") in removed or name in {p.name for p in failed_logs}:
                (logs / name).unlink()
        for name in sorted(names(records) - before[2]):
            (records / name).unlink()


def test_no_secret_in_any_output(built: Built, tmp_path: Path, own_entries: list[Path]) -> None:
    need_tool("ssh-keygen")
    built("wsgi")  # the variant reuses its base and packages steps
    started = time.monotonic()
    nonce = token("", 16)
    apps, roles = make_project(tmp_path, nonce)
    out = tmp_path / "out"
    key, public = new_key(tmp_path, "deploy_key")
    given = secret_env()
    api_token = given["PROBE_API_TOKEN"]
    env = env_canaries()
    needles = {**key_canaries(key), **{name: value.encode() for name, value in {**env, **given}.items()}}
    needles["api token in base64"] = base64.b64encode(api_token.encode())

    first = build(apps, roles, out, key, env, given)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "packages up to date" in " ".join(first.stderr.split()), "the packages step is shared with wsgi"
    manifest = json.loads((out / NAME / "manifest.json").read_text())
    tree_step = step(manifest, "tree")
    assert not tree_step["reused"], "a fresh nonce: this run built its tree"
    tree = STORE / "steps" / f"tree-{tree_step['id']}" / "tree"

    # The role saw the secrets, as files on the run's tmpfs, and used them.
    probe = (tree / "etc/secret-probe").read_text()
    assert f"nonce={nonce}" in probe
    assert "key_mode=0400" in probe and "key_owner=root" in probe
    assert "mount=tmpfs" in probe and "noexec" in probe, probe
    assert f"token_sha256={hashlib.sha256(api_token.encode()).hexdigest()}" in probe
    assert f"site_key_sha256={hashlib.sha256(given['DEPLOY_KEY'].encode()).hexdigest()}" in probe
    assert f"crust_key_sha256={hashlib.sha256(given['CRUST_DEPLOY_KEY'].encode()).hexdigest()}" in probe
    assert (tree / "etc/secret-probe.pub").read_text().split()[1] == public
    # Nothing of the build's credentials reached Ansible or the tree's commands.
    assert "controller_aws_secret=absent" in probe and "controller_github_token=absent" in probe
    assert "controller_deploy_key=absent" in probe and "controller_crust_deploy_key=absent" in probe
    assert "PATH=" in probe.split("--- env in the tree", 1)[1], "the tree's environment was recorded"
    facts_env = probe.split("facts_env_names=", 1)[1].split("\n", 1)[0].split(",")
    assert "PATH" in facts_env, "the ansible_env fact was recorded"
    assert not any(name in probe for name in (*env, *given)), probe  # names: the values are searched for below
    assert not (tree / "run/crust-secrets").exists(), "the secrets' tmpfs left nothing in the tree"

    raw, qcow2 = out / NAME / f"{NAME}.raw", out / NAME / f"{NAME}.qcow2"
    # The search finds what is there: the derived public key is in both disk images.
    assert search([raw, qcow2], {"public key": public.encode()}) == sorted([f"public key in {raw}", f"public key in {qcow2}"])

    outputs = [
        out,  # raw, qcow2, manifest.json, the SBOM
        *(STORE / "steps" / f"{s['kind']}-{s['id']}" for s in manifest["steps"] if not s["reused"]),  # tree, image, qcow2 entries
        *(Path(s["log"]) for s in manifest["steps"]),
        STORE / "builds" / NAME,
        STORE / "state" / "facts",
        STORE / "tmp",
    ]
    assert {s["kind"] for s in manifest["steps"] if not s["reused"]} == set(OWN_KINDS)
    assert all(p.exists() for p in outputs), [p for p in outputs if not p.exists()]
    leaks = search(outputs, needles)
    leaks += [f"{what} in stdout/stderr" for what, needle in needles.items() if needle in (first.stdout + first.stderr).encode()]
    assert leaks == [], leaks
    searched = time.monotonic()

    # A rotated key and token: no step runs again (secrets are no input of any step id).
    key2, public2 = new_key(tmp_path, "rotated_key")
    given2 = secret_env()
    second = build(apps, roles, out, key2, env, given2)
    assert second.returncode == 0, second.stderr[-4000:]
    again = json.loads((out / NAME / "manifest.json").read_text())
    assert step(again, "tree")["id"] == tree_step["id"] and all(s["reused"] for s in again["steps"])
    assert "tree up to date" in " ".join(second.stderr.split())
    assert (tree / "etc/secret-probe.pub").read_text().split()[1] == public, "the tree built with the first key is kept"
    needles2 = {**key_canaries(key2), **{f"{name} 2": value.encode() for name, value in given2.items()}}
    small = [out / NAME / "manifest.json", out / NAME / f"{NAME}.cdx.json", STORE / "builds" / NAME]
    leaks = search(small, {**needles, **needles2})
    leaks += [f"{what} in stdout/stderr" for what, needle in {**needles, **needles2}.items() if needle in (second.stdout + second.stderr).encode()]
    assert leaks == [], leaks
    assert search([raw], {"rotated public key": public2.encode()}) == []
    print(f"\nsecrets: {len(needles)} canaries, first build + search {searched - started:.0f}s, rotated rebuild {time.monotonic() - searched:.0f}s")


def test_a_role_that_prints_a_secret_shows_it_redacted(built: Built, tmp_path: Path, own_entries: list[Path]) -> None:
    need_tool("ssh-keygen")
    built("wsgi")
    apps, roles = make_project(tmp_path, token("", 16), leak=True)
    out = tmp_path / "out"
    key, _ = new_key(tmp_path, "deploy_key")
    env = env_canaries()
    given = secret_env()
    failed = build(apps, roles, out, key, env, given)
    assert failed.returncode == 1, failed.stderr[-4000:]
    assert re.search(rf"role step of {NAME}\+\w+ failed", failed.stderr), failed.stderr[-3000:]  # the roles run in role steps
    found = re.search(r"full log: (\S+\.log)", failed.stderr)
    assert found, failed.stderr
    log = Path(found.group(1))
    own_entries.append(log)  # the failed role step's log: removed at teardown
    text = log.read_text()
    assert "A careless role prints the key" in text and "<redacted>" in text, text[-3000:]
    needles = {**key_canaries(key), **{name: value.encode() for name, value in {**env, **given}.items()}}
    leaks = search([log, STORE / "tmp"], needles)
    leaks += [f"{what} in stdout/stderr" for what, needle in needles.items() if needle in (failed.stdout + failed.stderr).encode()]
    assert leaks == [], leaks
    assert not (out / NAME).exists()


def test_a_secret_copied_into_the_image_fails_the_build(built: Built, tmp_path: Path, own_entries: list[Path]) -> None:
    """Issue 15: a role that copies a build secret into the tree: the sealed tree is searched
    for every given secret, the build fails naming its ID and the file, nothing is published."""
    need_tool("ssh-keygen")
    built("wsgi")
    apps, roles = make_project(tmp_path, token("", 16), copy=True)
    out = tmp_path / "out"
    key, _ = new_key(tmp_path, "deploy_key")
    failed = build(apps, roles, out, key, env_canaries(), secret_env())
    assert failed.returncode == 1, failed.stderr[-4000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: tree step of {NAME} failed: build secret 'deploy_key' in /etc/leaked-key"), last
    assert "/usr/sbin/sshd" not in last, "a packaged file, as shipped, is no leak"
    found = re.search(r"tree-([0-9a-f]{64})", failed.stderr)
    if found:
        own_entries.append(STORE / "logs" / f"tree-{found.group(1)}.log")
    assert not (out / NAME).exists()
    assert key.read_text() not in failed.stderr
