"""The audit on small synthetic trees: each planted fault gives a finding, the clean tree none.

Secrets are put together at run time (never written out whole in this file), so that secret
scanners do not flag the repository itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from crust.define.kickstart import load
from crust.tree.seal import SSHD_POLICY
from crust.trust.audit import AuditPolicy, Finding, audit_tree, files_with_anchors, policy_from_kickstart, summarize, walk

BEGIN, END = "-----BEGIN ", "-----END "
BODY = base64.b64encode(bytes(range(256)) * 2).decode()


def pem(kind: str, sep: str = "\n") -> str:
    lines = [BODY[i : i + 64] for i in range(0, len(BODY), 64)]
    return sep.join([f"{BEGIN}{kind}-----", *lines, f"{END}{kind}-----"]) + "\n"


AWS_KEY_ID = "AKIA" + "Q7W3E5R7T9Y2U4I6"
AWS_SECRET = "Zx" * 19 + "/+"
GITHUB_TOKEN = "gh" + "p_" + "a1B2c3D4e5" * 4
SLACK_TOKEN = "xo" + "xb-" + "123456789012-abcdefABCDEF"
PUTTY = (
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: x\nPublic-Lines: 1\n" + BODY[:64] + "\nPrivate-Lines: 1\n" + BODY[64:128] + "\n"
)


def write(root: Path, path: str, content: str | bytes, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    os.chmod(target, mode)
    return target


def md5(data: str | bytes) -> str:
    return hashlib.md5(data.encode() if isinstance(data, str) else data, usedforsecurity=False).hexdigest()


def record_hash(data: str) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b"=").decode()


SITE = "/opt/app/venv/lib/python3.13/site-packages"
LIBFOO = "\x7fELF...self-test vectors..." + pem("RSA PRIVATE KEY")  # a library shipping test keys
TEST_KEY = pem("PRIVATE KEY")  # a Python package's test key


def make_clean_tree(root: Path) -> Path:
    """A sealed tree as Crust makes it, with what packages legitimately ship."""
    for name in ("bin", "sbin", "lib"):
        (root / "usr" / name).mkdir(parents=True)
        os.symlink(f"usr/{name}", root / name)
    write(root, "/etc/shadow", "root:!*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nops:!:19000:0:99999:7:::\n", 0o640)
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nops:x:1000:1000::/home/ops:/bin/bash\n")
    write(root, "/etc/machine-id", "", 0o444)
    write(root, "/usr/sbin/sshd", "binary", 0o755)
    write(root, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\n")
    write(root, "/etc/ssh/sshd_config.d/50-crust.conf", SSHD_POLICY)
    write(root, "/etc/ssh/ssh_config", "Host *\n")
    for tmp in ("tmp", "var/tmp"):
        (root / tmp).mkdir(parents=True)
        os.chmod(root / tmp, 0o1777)
    (root / "srv/shared").mkdir(parents=True)
    os.chmod(root / "srv/shared", 0o1777)  # world-writable with the sticky bit: fine
    write(root, "/tmp/scratch", "x", 0o666)  # world-writable under /tmp: fine
    (root / "var/mail").mkdir(parents=True)
    os.chmod(root / "var/mail", 0o2775)  # a setgid directory: fine
    os.symlink("/etc/passwd", root / "etc/link")  # symlinks are 0777: ignored
    # packaged setuid files: su (listed with the /bin spelling of merged /usr), the dbus helper (statoverride)
    write(root, "/usr/bin/su", "su binary", 0o4755)
    write(root, "/usr/lib/dbus-1.0/dbus-daemon-launch-helper", "helper", 0o4754)
    write(root, "/usr/lib/x86_64-linux-gnu/libfoo.so.1", LIBFOO)
    info = "/var/lib/dpkg/info"
    write(root, f"{info}/util-linux.list", "/.\n/bin\n/bin/su\n")
    write(root, f"{info}/util-linux.md5sums", f"{md5('su binary')}  usr/bin/su\n")
    write(root, f"{info}/dbus.list", "/usr/lib/dbus-1.0/dbus-daemon-launch-helper\n")
    write(root, f"{info}/dbus.md5sums", f"{md5('helper')}  usr/lib/dbus-1.0/dbus-daemon-launch-helper\n")
    write(root, f"{info}/libfoo1:amd64.list", "/usr/lib/x86_64-linux-gnu/libfoo.so.1\n")
    write(root, f"{info}/libfoo1:amd64.md5sums", f"{md5(LIBFOO)}  usr/lib/x86_64-linux-gnu/libfoo.so.1\n")
    write(root, "/var/lib/dpkg/statoverride", "root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n")
    # a Python package's test key, as its wheel's RECORD lists it, and its compiled test module
    write(root, f"{SITE}/pkg/tests/key.pem", TEST_KEY)
    test_module = f'KEY = """{TEST_KEY}"""\n'
    write(root, f"{SITE}/pkg/tests/test_tls.py", test_module)
    write(root, f"{SITE}/pkg/tests/__pycache__/test_tls.cpython-313.pyc", b"\xf3\r\r\n" + TEST_KEY.encode())
    record = (
        f"pkg/tests/key.pem,{record_hash(TEST_KEY)},{len(TEST_KEY)}\npkg/tests/test_tls.py,{record_hash(test_module)},1\npkg-1.0.dist-info/RECORD,,\n"
    )
    write(root, f"{SITE}/pkg-1.0.dist-info/RECORD", record)
    # documentation and AWS's documented example credentials
    write(root, "/usr/share/doc/openssl/example.key", pem("RSA PRIVATE KEY"))
    write(
        root, "/etc/skel/aws-example", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_clean_tree(tmp_path / "tree")


def edit(root: Path, path: str, old: str, new: str) -> None:
    target = root / path.lstrip("/")
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new))


def add_line(root: Path, path: str, line: str) -> None:
    target = root / path.lstrip("/")
    target.write_text(target.read_text() + line + "\n")


Plant = Callable[[Path], None]

FAULTS: list[tuple[str, Plant, str, str]] = [
    # (case, plant the fault, rule, words of the finding)
    ("root unlocked", lambda r: edit(r, "/etc/shadow", "root:!*:", "root:$6$salt$hash:"), "accounts", "root is not locked"),
    ("undeclared password", lambda r: edit(r, "/etc/shadow", "ops:!:", "ops:$y$j9T$salt$hash:"), "accounts", "ops has a password hash"),
    ("empty password", lambda r: edit(r, "/etc/shadow", "daemon:*:", "daemon::"), "accounts", "daemon has an empty password"),
    ("password in passwd", lambda r: edit(r, "/etc/passwd", "ops:x:", "ops::"), "accounts", "ops has an empty password field"),
    ("no shadow", lambda r: (r / "etc/shadow").unlink(), "accounts", "cannot tell whether root is locked"),
    ("host key", lambda r: write(r, "/etc/ssh/ssh_host_ed25519_key", "key material", 0o600), "host-keys", "SSH host key"),
    ("host public key", lambda r: write(r, "/etc/ssh/ssh_host_ecdsa_key.pub", "ecdsa-sha2-nistp256 AAAA root@build"), "host-keys", "SSH host key"),
    (
        "ssh private key",
        lambda r: write(r, "/root/.ssh/id_ed25519", pem("OPENSSH PRIVATE KEY"), 0o600),
        "secrets",
        "private key (OPENSSH PRIVATE KEY) at line 1",
    ),
    ("tls private key", lambda r: write(r, "/etc/ssl/private/server.key", pem("PRIVATE KEY")), "secrets", "private key (PRIVATE KEY)"),
    ("rsa key, second line", lambda r: write(r, "/etc/app/key", "# app key\n" + pem("RSA PRIVATE KEY")), "secrets", "(RSA PRIVATE KEY) at line 2"),
    (
        "encrypted pem headers",
        lambda r: write(
            r, "/etc/app/enc.key", pem("RSA PRIVATE KEY").replace("-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n", 1)
        ),
        "secrets",
        "private key (RSA PRIVATE KEY)",
    ),
    (
        "pgp private key",
        lambda r: write(r, "/root/secring.asc", pem("PGP PRIVATE KEY BLOCK").replace("-----\n", "-----\n\n", 1)),
        "secrets",
        "PGP PRIVATE KEY BLOCK",
    ),
    (
        "key in json",
        lambda r: write(r, "/srv/app/service-account.json", '{"private_key": "' + pem("PRIVATE KEY", sep="\\n") + '"}'),
        "secrets",
        "private key (PRIVATE KEY)",
    ),
    ("aws key id", lambda r: write(r, "/etc/environment", f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n"), "secrets", "AWS access key id at line 1"),
    (
        "aws secret",
        lambda r: write(r, "/root/.aws/credentials", f"[default]\naws_secret_access_key = {AWS_SECRET}\n"),
        "secrets",
        "AWS secret access key at line 2",
    ),
    ("aws secret env", lambda r: write(r, "/etc/default/app", f"AWS_SECRET_ACCESS_KEY='{AWS_SECRET}'\n"), "secrets", "AWS secret access key"),
    ("github token", lambda r: write(r, "/srv/app/.env", f"TOKEN={GITHUB_TOKEN}\n"), "secrets", "GitHub token"),
    ("slack token", lambda r: write(r, "/srv/app/slack.yml", f"token: {SLACK_TOKEN}\n"), "secrets", "Slack token"),
    (
        "github fine-grained token",
        lambda r: write(r, "/srv/app/gh", "github" + "_pat_" + "11ABCDEFG0" * 3 + "\n"),
        "secrets",
        "GitHub fine-grained token",
    ),
    ("putty key", lambda r: write(r, "/root/key.ppk", PUTTY), "secrets", "PuTTY private key at line 1"),
    (
        "key in a binary",
        lambda r: write(r, "/usr/local/bin/tool", b"\x7fELF\x00" + pem("EC PRIVATE KEY").encode() + b"\x00"),
        "secrets",
        "EC PRIVATE KEY",
    ),
    ("packaged file changed", lambda r: add_line(r, "/usr/lib/x86_64-linux-gnu/libfoo.so.1", "more"), "secrets", "(RSA PRIVATE KEY)"),
    ("venv file changed", lambda r: add_line(r, f"{SITE}/pkg/tests/key.pem", "# edited"), "secrets", "private key (PRIVATE KEY)"),
    ("machine-id", lambda r: write(r, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n"), "machine-id", "not empty"),
    ("dbus machine-id", lambda r: write(r, "/var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n"), "machine-id", "not empty"),
    (
        "password auth yes",
        lambda r: write(r, "/etc/ssh/sshd_config.d/10-local.conf", "PasswordAuthentication yes\n"),
        "sshd",
        "PasswordAuthentication yes (line 1)",
    ),
    ("password auth unset", lambda r: (r / "etc/ssh/sshd_config.d/50-crust.conf").unlink(), "sshd", "PasswordAuthentication is not set"),
    (
        "password auth in match",
        lambda r: add_line(r, "/etc/ssh/sshd_config", "Match User ops\n  PasswordAuthentication yes"),
        "sshd",
        "in `Match User ops`",
    ),
    ("root login yes", lambda r: write(r, "/etc/ssh/sshd_config.d/01-root.conf", "PermitRootLogin yes\n"), "sshd", "PermitRootLogin yes"),
    (
        "kbd-interactive with pam",
        lambda r: write(r, "/etc/ssh/sshd_config.d/10-local.conf", "ChallengeResponseAuthentication yes\n"),
        "sshd",
        "KbdInteractiveAuthentication yes (line 1) with UsePAM yes",
    ),
    ("sshd without config", lambda r: (r / "etc/ssh/sshd_config").unlink(), "sshd", "without a configuration"),
    ("world-writable file", lambda r: write(r, "/etc/app.conf", "x", 0o666), "world-writable", "world-writable file (mode 0666)"),
    (
        "world-writable dir",
        lambda r: (r / "srv/drop").mkdir(mode=0o777) or os.chmod(r / "srv/drop", 0o777),
        "world-writable",
        "without the sticky bit",
    ),
    (
        "setuid not packaged",
        lambda r: write(r, "/usr/local/bin/rootshell", "sh", 0o4755),
        "setuid",
        "setuid file (mode 4755) that no package ships",
    ),
    ("setgid not packaged", lambda r: write(r, "/opt/app/bin/helper", "sh", 0o2755), "setuid", "setgid file (mode 2755)"),
    ("statoverride differs", lambda r: os.chmod(r / "usr/lib/dbus-1.0/dbus-daemon-launch-helper", 0o4755), "setuid", "dpkg-statoverride says 4754"),
    ("packaged setuid changed", lambda r: write(r, "/usr/bin/su", "another su", 0o4755), "setuid", "changed since its package installed it"),
    # Issue 15: blind spots of the audit before.
    (
        "authorized_keys nobody declared",
        lambda r: write(r, "/home/ops/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr role@build\n", 0o600),
        "ssh-keys",
        "1 key(s) for ops that no sshkey line declared",
    ),
    ("root's authorized_keys", lambda r: write(r, "/root/.ssh/authorized_keys", "ssh-rsa AAAAB3 x\n"), "ssh-keys", "for root"),
    (
        "file capabilities on a file no package ships",
        lambda r: set_caps(write(r, "/usr/local/bin/sniffer", "binary", 0o755)),
        "capabilities",
        "file with capabilities (",
    ),
    (
        "sticky world-writable directory in PATH",
        lambda r: os.chmod(r / "usr/bin", 0o1777),
        "world-writable",
        "world-writable directory in PATH (mode 1777)",
    ),
    (
        "pem key indented in yaml",
        lambda r: write(r, "/etc/app/tls.yml", "tls:\n  key: |\n" + "".join("    " + x + "\n" for x in pem("RSA PRIVATE KEY").splitlines())),
        "secrets",
        "private key (RSA PRIVATE KEY) at line 3",
    ),
    ("pem key on one line", lambda r: write(r, "/etc/app/key.conf", "key = " + pem("PRIVATE KEY", sep=" ")), "secrets", "private key (PRIVATE KEY)"),
    (
        "secret in a pyc its packaged source does not hold",
        lambda r: write(r, f"{SITE}/pkg/tests/__pycache__/test_tls.cpython-313.pyc", b"\xf3\r\r\n" + GITHUB_TOKEN.encode()),
        "secrets",
        "GitHub token",
    ),
    ("netrc", lambda r: write(r, "/root/.netrc", "machine git.example login ci password s3cr3t-t0k3n\n"), "secrets", ".netrc password at line 1"),
    (
        "docker credentials",
        lambda r: write(r, "/root/.docker/config.json", '{"auths": {"registry.example": {"auth": "Y2k6czNjcjN0"}}}'),
        "secrets",
        "Docker registry credential",
    ),
    (
        "kube config token",
        lambda r: write(
            r, "/root/.kube/config", "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    token: eyJhbGciOiJSUzI1NiJ9.payload\n"
        ),
        "secrets",
        "Kubernetes credential at line 6",
    ),
    (
        "kube client key anywhere",
        lambda r: write(r, "/srv/app/cluster.yaml", "users:\n- user:\n    client-key-data: " + BODY[:64] + "\n"),
        "secrets",
        "Kubernetes client key at line 3",
    ),
    (
        "secret in the appliance's own application",
        lambda r: write(r, f"{SITE}/pkg-1.0.dist-info/direct_url.json", '{"url": "file:///var/tmp/crust-app-wheels/pkg-1.0-py3-none-any.whl"}'),
        "secrets",
        "private key (PRIVATE KEY)",
    ),
]


def set_caps(path: Path) -> None:
    """cap_net_raw+ep, as `setcap cap_net_raw+ep PATH` writes it (VFS_CAP_REVISION_2)."""
    os.setxattr(path, "security.capability", bytes.fromhex("0100000200200000000000000000000000000000"))


def test_clean_tree_has_no_findings(tree: Path) -> None:
    assert audit_tree(tree, AuditPolicy()) == []


@pytest.mark.parametrize(("plant", "rule", "words"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_each_fault_is_found(tree: Path, plant: Plant, rule: str, words: str) -> None:
    plant(tree)
    findings = audit_tree(tree, AuditPolicy())
    assert findings, "the audit passed a tree with the fault"
    assert {f.rule for f in findings} == {rule}, findings
    assert any(words in f.reason for f in findings), findings


def test_privileged_files_are_checked_against_the_packages_baseline(tree: Path) -> None:
    """In a build, the packages step records the setuid files and capabilities the packages
    made; a packaged binary a role made setuid (same content, so dpkg cannot tell) is found."""
    from crust.trust.audit import privileged_files

    baseline = privileged_files(tree)
    assert baseline == {"/usr/bin/su": "4755 ", "/usr/lib/dbus-1.0/dbus-daemon-launch-helper": "4754 "}
    write(tree, "/usr/bin/python3", "python", 0o755)
    write(tree, "/var/lib/dpkg/info/python3.list", "/usr/bin/python3\n")
    write(tree, "/var/lib/dpkg/info/python3.md5sums", f"{md5('python')}  usr/bin/python3\n")
    assert audit_tree(tree, AuditPolicy(privileged=baseline)) == []
    os.chmod(tree / "usr/bin/python3", 0o4755)
    findings = audit_tree(tree, AuditPolicy(privileged=baseline))
    assert [(f.rule, f.path, f.reason) for f in findings] == [
        ("setuid", "/usr/bin/python3", "setuid file (mode 4755), made so after its package installed it")
    ]
    assert audit_tree(tree, AuditPolicy()) == [], "without a baseline (an image alone) dpkg cannot tell"
    os.chmod(tree / "usr/bin/python3", 0o755)
    set_caps(tree / "usr/bin/python3")
    assert [f.rule for f in audit_tree(tree, AuditPolicy(privileged=baseline))] == ["capabilities"]


def test_declared_ssh_keys_are_allowed(tree: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr ops@laptop"
    write(tree, "/home/ops/.ssh/authorized_keys", key + "\n", 0o600)
    ks = load(f"network --hostname=x\npart / --size=1024\nuser --name=ops --lock\nsshkey --username=ops '{key}'\n", allow_plaintext=False)
    assert audit_tree(tree, policy_from_kickstart(ks)) == []
    add_line(tree, "/home/ops/.ssh/authorized_keys", "ssh-rsa AAAAB3 someone-else")
    assert [f.rule for f in audit_tree(tree, policy_from_kickstart(ks))] == ["ssh-keys"]


def test_a_host_private_key_is_also_a_secret(tree: Path) -> None:
    write(tree, "/etc/ssh/ssh_host_ed25519_key", pem("OPENSSH PRIVATE KEY"), 0o600)
    assert [f.rule for f in audit_tree(tree, AuditPolicy())] == ["host-keys", "secrets"]


def test_a_later_setting_does_not_override_the_first(tree: Path) -> None:
    # 50-crust.conf is included at the top of sshd_config: its values win over later lines
    edit(tree, "/etc/ssh/sshd_config", "KbdInteractiveAuthentication no", "KbdInteractiveAuthentication yes\nPasswordAuthentication yes")
    assert audit_tree(tree, AuditPolicy()) == []


def test_findings_never_show_the_secret(tree: Path) -> None:
    write(tree, "/srv/app/.env", f"TOKEN={GITHUB_TOKEN}\nAWS={AWS_KEY_ID}\n")
    write(tree, "/root/.aws/credentials", f"aws_secret_access_key = {AWS_SECRET}\n")
    write(tree, "/root/.ssh/id_rsa", pem("RSA PRIVATE KEY"))
    text = "\n".join(str(f) for f in audit_tree(tree, AuditPolicy()))
    for secret in (GITHUB_TOKEN, AWS_KEY_ID, AWS_SECRET, BODY[:40]):
        assert secret not in text
    assert text.count("secrets:") == 4


def test_declared_passwords_are_allowed(tree: Path) -> None:
    edit(tree, "/etc/shadow", "root:!*:", "root:$6$salt$hash:")
    edit(tree, "/etc/shadow", "ops:!:", "ops:$6$salt$hash:")
    assert audit_tree(tree, AuditPolicy(password_accounts=frozenset({"root", "ops"}))) == []
    assert [f.reason for f in audit_tree(tree, AuditPolicy(password_accounts=frozenset({"ops"})))] == [
        "root is not locked: it has a password hash the kickstart did not set (rootpw)"
    ]


def test_policy_from_kickstart() -> None:
    base = "network --hostname=x\npart / --size=1024\n"
    locked = load(base + "rootpw --lock\nuser --name=ops --lock\n", allow_plaintext=False)
    assert policy_from_kickstart(locked).password_accounts == frozenset()
    declared = load(
        base + "rootpw --iscrypted $6$salt$abcdefghijklmnop\nuser --name=ops --iscrypted --password=$6$salt$abcdefghijklmnop\n", allow_plaintext=False
    )
    assert policy_from_kickstart(declared).password_accounts == frozenset({"root", "ops"})


def test_files_over_the_scan_limit_are_not_read(tree: Path) -> None:
    write(tree, "/srv/big.bin", b"\0" * 4096 + pem("PRIVATE KEY").encode())
    assert audit_tree(tree, AuditPolicy(scan_limit=4096)) == []
    assert [f.rule for f in audit_tree(tree, AuditPolicy())] == ["secrets"]


def test_mentions_of_key_formats_are_not_keys(tree: Path) -> None:
    # what ssh-keygen's binary and PEM libraries carry: markers without a key body
    write(tree, "/usr/local/bin/keygen", b"\0" + (BEGIN + "OPENSSH PRIVATE KEY-----\n").encode() + b"\0" + b"xoxb-\0ghp_\0")
    write(tree, "/usr/local/lib/pem.py", 'MARK = "-----BEGIN RSA PRIVATE KEY-----"\nif line == MARK:\n    pass\n')
    assert audit_tree(tree, AuditPolicy()) == []


def test_findings_come_in_rule_order(tree: Path) -> None:
    write(tree, "/etc/machine-id", "abc\n")
    write(tree, "/etc/zz.conf", "x", 0o666)
    write(tree, "/etc/ssh/ssh_host_rsa_key", "k")
    edit(tree, "/etc/shadow", "root:!*:", "root:$6$x$y:")
    assert [f.rule for f in audit_tree(tree, AuditPolicy())] == ["accounts", "host-keys", "machine-id", "world-writable"]


def test_summarize() -> None:
    findings = [Finding("secrets", f"/etc/f{i}", "AWS access key id at line 1") for i in range(5)]
    assert summarize(findings[:1]) == "1 problem: secrets: /etc/f0: AWS access key id at line 1"
    assert summarize(findings).startswith("5 problems: secrets: /etc/f0: ")
    assert summarize(findings).endswith("; and 2 more")


def test_secrets_after_near_misses_in_binaries_and_odd_names(tree: Path) -> None:
    # an anchor that does not start a match (a longer upper-case run), then a real key id;
    # a key in a binary blob; a file whose name is not UTF-8 (grep's listing cannot spell it)
    blob = b"\x7fELF\0\0X" + AWS_KEY_ID.encode() + b"\0" * 64 + AWS_KEY_ID.encode() + b"\0" + os.urandom(4096)
    write(tree, "/usr/local/lib/libcrust.so", blob)
    write(tree, "/srv/app/near-miss", f"XXAKIA{'Q' * 16}\nnext line {AWS_KEY_ID}\n")
    odd = os.fsencode(tree / "srv") + b"/app/key-\xff.pem"
    with open(odd, "wb") as fh:
        fh.write(pem("OPENSSH PRIVATE KEY").encode())
    write(tree, "/srv/app/only-a-near-miss", f"XXAKIA{'Q' * 16}\n")
    reasons = {(f.path, f.reason) for f in audit_tree(tree, AuditPolicy())}
    assert reasons == {
        ("/usr/local/lib/libcrust.so", "AWS access key id at line 1"),
        ("/srv/app/near-miss", "AWS access key id at line 2"),
        (os.fsdecode(b"/srv/app/key-\xff.pem"), "private key (OPENSSH PRIVATE KEY) at line 1"),
    }


def test_grep_narrows_the_files_read_to_those_holding_an_anchor(tree: Path) -> None:
    write(tree, "/srv/app/near-miss", f"XXAKIA{'Q' * 16}\n")
    write(tree, "/srv/app/key.pem", pem("RSA PRIVATE KEY"))
    listed = files_with_anchors(tree)
    assert listed is not None
    assert {"/srv/app/near-miss", "/srv/app/key.pem"} <= listed
    assert "/etc/passwd" not in listed and "/etc/ssh/sshd_config" not in listed
    every = sum(1 for _, st in walk(tree) if stat.S_ISREG(st.st_mode))
    assert len(listed) < every / 2, "grep lists only the files with an anchor"
