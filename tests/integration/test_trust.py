"""Appliance data stays data (issue 15), for real: a probe appliance whose data and role try to
reach the build host, built by the real pipeline.

The probe's description and a variable carry Jinja that would run a command on the host if
Ansible templated them; its role, running in the build sandbox, looks for the host (its PID 1's
root, its devices, its network, the wheel cache) and plants symlinks from the tree to a canary
directory on the host, through which sealing once deleted and wrote host files. After the build:
the host's canary is untouched, nothing ran on the host, the values are in the image literally,
and the role saw only the tree.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, build_py
from tests.integration.conftest import store_entry

pytestmark = pytest.mark.integration

Built = Callable[[str], dict[str, Any]]
NAME = "trust-probe"

ROLE_SPEC = """\
---
argument_specs:
  main:
    short_description: Looks for the build host from inside the tree.
    options:
      trust_probe_text: {type: str, required: true, description: Hostile text.}
      trust_probe_canary: {type: str, required: true, description: A host directory the tree must not reach.}
"""

ROLE_TASKS = r"""---
- name: Look for the host from inside the sandbox
  ansible.builtin.shell: |
    echo "proc1-root=$(ls /proc/1/root/etc/crust-release 2>&1)"
    echo "host-canary=$(cat /proc/1/root{{ trust_probe_canary }}/marker 2>&1 | head -c 80)"
    echo "devices=$(ls /dev | tr '\n' ' ')"
    echo "hostname=$(cat /proc/sys/kernel/hostname)"
    echo "wheel-cache=$(touch /var/tmp/crust-wheels/poison 2>/dev/null && echo WRITABLE || echo read-only)"
    python3 - <<'EOF'
    import glob, re, socket
    # the mirror the packages step fetched from (mmdebstrap's sources until the kickstart's replace them)
    sources = "".join(open(path).read() for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")))
    uri = re.search(r"https?://([^/\s:]+)", sources).group(1)
    try:
        socket.create_connection((uri, 80), timeout=5)
        print("network=CONNECTED", uri)
    except OSError as exc:
        print("network=none", type(exc).__name__)
    EOF
  args:
    executable: /bin/bash
  register: trust_probe_seen
  changed_when: false

- name: Write what it saw, and the hostile values as Ansible gave them
  ansible.builtin.copy:
    dest: /etc/trust-probe
    content: |
      {{ trust_probe_seen.stdout }}
      text={{ trust_probe_text }}
      description={{ crust_description }}
    mode: "0644"

- name: Clear the places the links replace
  ansible.builtin.file:
    path: "{{ item }}"
    state: absent
  loop: [/etc/ssh, /var/log, /root, /var/lib/systemd/random-seed]

- name: Plant links from the tree to the host, where sealing writes and deletes
  ansible.builtin.file:
    src: "{{ trust_probe_canary }}/{{ item.to }}"
    dest: "{{ item.link }}"
    state: link
    force: true
    follow: false
  loop:
    - {link: /etc/ssh, to: etc-ssh}
    - {link: /var/log, to: var-log}
    - {link: /root, to: root}
    - {link: /var/lib/systemd/random-seed, to: random-seed}
    - {link: /tmp/escape, to: tmp}
"""


def appliance(canary: Path, pwned: Path) -> str:
    text = "{{ lookup('pipe', 'touch " + str(pwned) + "') }}"
    return f"""\
name = "{NAME}"
version = "1.0.0"
description = "Braces {{{{ 7 * 7 }}}} {{% raw %}} and {{{{ lookup('pipe', 'touch {pwned}.d') }}}}"
kickstart = "wsgi.ks.j2"
roles = ["common", "trust_probe"]

[vars]
trust_probe_text = {json.dumps(text)}
trust_probe_canary = "{canary}"

[image]
formats = ["raw"]
root_size = "1GiB"
"""


def make_canary(root: Path) -> dict[str, str]:
    files = {
        "marker": "the host's canary",
        "etc-ssh/ssh_host_ed25519_key": "a host key that must survive",
        "var-log/keep.log": "a host log that must survive",
        "root/.ansible/keep": "must survive",
        "root/.netrc": "machine host login root password must-survive",
        "random-seed": "must survive",
        "tmp/keep": "must survive",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_hostile_appliance_reaches_nothing_of_the_host(built: Built, tmp_path: Path) -> None:
    built("wsgi")  # shares the base and packages steps
    nonce = secrets.token_hex(4)
    canary = Path(f"/var/tmp/crust-canary-{nonce}")  # not under /tmp: sealing empties the tree's /tmp
    pwned = Path(f"/var/tmp/crust-pwned-{nonce}")
    before = make_canary(canary)
    apps, roles = tmp_path / "appliances", tmp_path / "roles"
    apps.mkdir()
    (apps / f"{NAME}.toml").write_text(appliance(canary, pwned))
    shutil.copytree(ROOT / "roles" / "common", roles / "common")
    # wsgi's roles' packages, in their order: the probe shares wsgi's packages step.
    share = "---\npackages: [cloud-init, nginx]\n"
    for rel, text in (("meta/argument_specs.yml", ROLE_SPEC), ("tasks/main.yml", ROLE_TASKS), ("meta/crust.yml", share)):
        (roles / "trust_probe" / rel).parent.mkdir(parents=True, exist_ok=True)
        (roles / "trust_probe" / rel).write_text(text)
    try:
        args = ("--appliances", str(apps), "--roles", str(roles), "--output", str(tmp_path / "out"))
        out = build_py(*args, "build", NAME)
        # The tree is built; its image is refused: with /etc/ssh a link out of the tree, the
        # image has no sshd configuration of its own (the audit names it), and nothing is published.
        assert out.returncode == 1, out.stderr[-4000:]
        assert "image step of trust-probe failed: the audit found" in out.stderr and "sshd" in out.stderr, out.stderr[-2000:]
        assert not (tmp_path / "out" / NAME / "manifest.json").exists()
        after = {str(p.relative_to(canary)): p.read_text() for p in sorted(canary.rglob("*")) if p.is_file()}
        assert after == before, "the build changed the host's files through links in the tree"
        assert not pwned.exists() and not Path(f"{pwned}.d").exists(), "a value was templated: a command ran on the host"
        plan = json.loads(build_py(*args, "plan", NAME, "--json").stdout)
        tree = store_entry("tree", next(row["id"] for row in plan if row["step"] == "tree")) / "tree"
        seen = dict(line.split("=", 1) for line in (tree / "etc/trust-probe").read_text().splitlines() if "=" in line)
        assert seen["proc1-root"] == "/proc/1/root/etc/crust-release", "PID 1's root is the tree"
        assert "No such file" in seen["host-canary"], seen["host-canary"]
        assert seen["hostname"] == "crust-build"
        devices = set(seen["devices"].split())
        assert {"null", "zero", "urandom"} <= devices and not devices & {"sda", "vda", "kvm", "mem", "kmsg", "loop0"}, devices
        assert seen["wheel-cache"] == "read-only"
        assert seen["network"].startswith("none"), seen["network"]
        assert seen["text"] == "{{ lookup('pipe', 'touch " + str(pwned) + "') }}"
        assert seen["description"].startswith("Braces {{ 7 * 7 }} {% raw %} and {{ lookup(")
        # The links the role planted are in the image as links (their targets are the tree's, not the host's).
        assert (tree / "etc/ssh").is_symlink() and not (tree / str(canary).lstrip("/")).exists()
    finally:
        shutil.rmtree(canary, ignore_errors=True)
        pwned.unlink(missing_ok=True)
