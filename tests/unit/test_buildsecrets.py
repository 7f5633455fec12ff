"""Build secrets: parsing --secret, redaction, the environment children get, the roles that
declare secrets, and the tmpfs a secret lives on during the run (a real mount namespace)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crust import redact as redaction
from crust.define.roles import check_vars, needed_secrets, secret_variables
from crust.errors import CommandError, UserError
from crust.log import logging_to
from crust.runner import run, sandboxed
from crust.trust import secrets
from tests.conftest import need_root, need_tool

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nQyNTUxOQAAACDcanaryCANARYcanaryCANARY0123\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def fresh_registry() -> object:
    """Each test starts with no given secret and no redaction (the registry is per process)."""
    with secrets._lock, redaction._lock:
        saved, hidden = set(redaction._values), set(secrets._source_vars)
        redaction._values.clear()
        secrets._source_vars.clear()
    secrets.clear()
    yield None
    secrets.clear()
    with secrets._lock, redaction._lock:
        redaction._values.clear()
        redaction._values.update(saved)
        secrets._source_vars.clear()
        secrets._source_vars.update(hidden)


def test_parse_file_and_env(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text(KEY)
    found = secrets.parse_secrets([f"deploy_key={key}", "token=env:MY_TOKEN"], {"MY_TOKEN": "t0ken-value"})
    assert found["deploy_key"].value == KEY.encode() and found["deploy_key"].source == f"file {key}"
    assert found["token"].value == b"t0ken-value" and found["token"].source == "environment variable MY_TOKEN"
    assert KEY not in repr(found) and "t0ken" not in repr(found), "a secret's repr never shows its value"


def test_parse_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "key").write_text("abcdefgh")
    assert secrets.parse_secret("k=~/key").value == b"abcdefgh"


@pytest.mark.parametrize(
    ("arg", "environ", "words"),
    [
        ("k=env:EMPTY", {"EMPTY": ""}, "the secret is empty"),
        ("k=env:BLANK", {"BLANK": " \n"}, "the secret is empty"),
        ("k=env:A-B", {}, "'A-B' is not an environment variable name"),
        ("k=env:UNSET", {}, "UNSET is not set"),
        ("k=env:SHORT", {"SHORT": "1234567"}, "--secret k: the secret is shorter than 8 characters"),
        ("k=env:PADDED", {"PADDED": "  1234567\n"}, "the secret is shorter than 8 characters"),
        ("k", {}, "expected ID=PATH or ID=env:VARIABLE"),
        ("=x", {}, "expected ID=PATH"),
        ("k/../x=/etc/hostname", {}, "is not a secret ID"),
    ],
)
def test_parse_errors(arg: str, environ: dict[str, str], words: str) -> None:
    with pytest.raises(UserError) as info:
        secrets.parse_secret(arg, environ)
    assert words in info.value.one_line() and "(fix: " in info.value.one_line()


def test_check_needed() -> None:
    given = {"deploy_key": secrets.Secret("deploy_key", "file x", b"v")}
    secrets.check_needed({"a": {"deploy_key": "r"}, "b": {}}, given)
    with pytest.raises(UserError, match="role r needs the build secret 'other'"):
        secrets.check_needed({"a": {"deploy_key": "r", "other": "r"}}, given)
    with pytest.raises(UserError, match="no role of a, b uses this secret"):
        secrets.check_needed({"a": {}, "b": {}}, given)


def test_given_and_missing() -> None:
    secrets.provide({"k": secrets.Secret("k", "file x", b"value-of-k")})
    assert secrets.given(["k"]) == {"k": b"value-of-k"}
    with pytest.raises(UserError, match="build secret 'nope' was not given"):
        secrets.given(["k", "nope"])


def test_redaction_of_a_key_line_by_line_and_in_base64() -> None:
    redaction.register(KEY)
    body = KEY.splitlines()[2]
    assert redaction.redact(f"fatal: {body} trailing") == "fatal: <redacted> trailing"
    assert "canary" not in redaction.redact(json.dumps({"content": KEY}))  # one line, with \n escapes
    assert "<redacted>" in redaction.redact(base64.b64encode(KEY.encode()).decode())
    assert redaction.redact("-----BEGIN OPENSSH PRIVATE KEY-----") == "-----BEGIN OPENSSH PRIVATE KEY-----", "armour is no secret"
    redaction.register("short")
    assert redaction.redact("a short word") == "a short word", "values under 8 characters are not redacted (--secret refuses them)"


def test_short_secrets_are_refused(tmp_path: Path) -> None:
    """A secret too short to redact would be printed in clear: refused, from a file or a variable."""
    (tmp_path / "short").write_bytes(b"pin1234\n")
    with pytest.raises(UserError, match="--secret pin: the secret is shorter than 8 characters"):
        secrets.parse_secret(f"pin={tmp_path / 'short'}")
    assert secrets.parse_secret("pin=env:PIN", {"PIN": "pin12345"}).value == b"pin12345", "8 characters are enough"


def test_a_secret_typed_in_place_of_its_path_is_not_shown() -> None:
    typed = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    with pytest.raises(UserError) as info:
        secrets.parse_secret(f"tok={typed}")
    assert "--secret tok: no such file" in info.value.one_line() and typed not in info.value.one_line()


def test_binary_secret_in_base64_is_redacted() -> None:
    """The base64 form is the secret's own bytes encoded (as Ansible's slurp returns a file),
    not that of its text decoded with replacement characters."""
    value = b"\xff\xfe\x00binary-deploy-secret\x80\xc3(\n"
    secrets.provide({"blob": secrets.Secret("blob", "file x", value)})
    encoded = base64.b64encode(value).decode()
    assert redaction.redact(f'ok: {{"content": "{encoded}", "encoding": "base64"}}') == 'ok: {"content": "<redacted>", "encoding": "base64"}'
    shown = value.decode("utf-8", "replace")  # how run() decodes a child's output
    assert "binary-deploy-secret" not in redaction.redact(f"cat: {shown}")


def test_proxy_passwords_are_redacted() -> None:
    secrets.register_environment(
        {
            "https_proxy": "http://builder:pr0xy-passw0rd@proxy.example:3128",
            "HTTP_PROXY": "http://ops:p%40ss%2Fw0rd-42@proxy.example:3128/",
            "ALL_PROXY": "socks5://u:pw@10.0.0.1:1080",
            "no_proxy": "localhost,http://x:no-proxy-pass-1@h",
            "http_proxy": "http://proxy.example:3128",  # no password: nothing to redact
        }
    )
    line = redaction.redact(
        "E: Failed to fetch http://builder:pr0xy-passw0rd@proxy.example:3128 via ops:p%40ss%2Fw0rd-42@ (p@ss/w0rd-42) socks5://u:pw@10.0.0.1 no-proxy-pass-1"
    )
    for password in ("pr0xy-passw0rd", "p%40ss%2Fw0rd-42", "p@ss/w0rd-42", ":pw@", "no-proxy-pass-1"):
        assert password not in line, line
    assert "proxy.example:3128" in line and "10.0.0.1" in line, "the proxy's address is no secret"
    assert redaction.redact("http://proxy.example:3128") == "http://proxy.example:3128"


def test_environment_credentials_are_redacted() -> None:
    secrets.register_environment({"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "HOME": "/root/home-dir"})
    assert redaction.redact("key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY!") == "key <redacted>!"
    assert redaction.redact("/root/home-dir") == "/root/home-dir"


ENV = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "https_proxy": "http://proxy:3128",
    "CRUST_STORE": "/s",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "x" * 40,
    "AWS_SESSION_TOKEN": "t" * 40,
    "AWS_PROFILE": "prod",
    "GITHUB_TOKEN": "ghp_x",
    "VAULT_TOKEN": "s.x",
    "DB_PASSWORD": "pw",
    "SSH_AUTH_SOCK": "/tmp/agent.sock",
    "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
    "AZURE_CLIENT_SECRET": "a",
    "PYTHONPATH": "/src",
    "EDITOR": "vi",
}


def test_child_env() -> None:
    host = secrets.child_env(ENV, sandboxed=False)
    assert set(host) == {"PATH", "HOME", "LC_ALL", "https_proxy", "CRUST_STORE", "PYTHONPATH", "EDITOR"}
    sandbox = secrets.child_env(ENV, sandboxed=True)
    assert set(sandbox) == {"PATH", "HOME", "LC_ALL", "https_proxy"}, "no CRUST_* variable: the sandbox needs none"


def test_variables_secrets_are_read_from_reach_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """--secret ID=env:NAME: NAME is dropped from every child's environment, whatever its name
    (DEPLOY_KEY looks like no credential; CRUST_DEPLOY_KEY looked like one of Crust's settings)."""
    environ = {"PATH": "/usr/bin", "DEPLOY_KEY": "canary-deploy-key-7d1e", "CRUST_DEPLOY_KEY": "canary-crust-key-9b2f", "OTHER": "x"}
    given = secrets.parse_secrets(["a=env:DEPLOY_KEY", "b=env:CRUST_DEPLOY_KEY"], environ)
    assert set(given) == {"a", "b"}
    assert secrets.child_env(environ, sandboxed=False) == {"PATH": "/usr/bin", "OTHER": "x"}
    assert secrets.child_env(environ, sandboxed=True) == {"PATH": "/usr/bin"}
    monkeypatch.setenv("DEPLOY_KEY", "canary-deploy-key-7d1e")
    monkeypatch.setenv("CRUST_DEPLOY_KEY", "canary-crust-key-9b2f")
    out = run(["env"], capture=True).stdout
    assert "canary-" not in out and "DEPLOY_KEY" not in out, out


def test_run_gives_children_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret-access-key-0123456789")
    monkeypatch.setenv("CRUST_TEST_PLAIN", "plain")
    out = run(["env"], capture=True).stdout
    assert "canary-secret-access-key" not in out and "AWS_SECRET_ACCESS_KEY" not in out
    assert "CRUST_TEST_PLAIN=plain" in out
    out = run(["env"], capture=True, env={"EXTRA": "given"}).stdout
    assert "EXTRA=given" in out, "what the caller passes is added"


def test_sandboxed_children_get_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    need_tool("unshare")
    monkeypatch.setenv("SOME_APP_SETTING", "x")
    out = run(sandboxed(["env"]), capture=True).stdout
    assert "SOME_APP_SETTING" not in out and "PATH=" in out


def test_run_redacts_its_log_and_errors() -> None:
    secret = "canary-deploy-token-5f3a9c"
    secrets.provide({"t": secrets.Secret("t", "env T", secret.encode())})
    log = io.StringIO()
    with logging_to(log), pytest.raises(Exception) as info:
        run(["sh", "-c", f"echo using {secret}; echo {secret} >&2; exit 3"])
    assert secret not in log.getvalue() and "using <redacted>" in log.getvalue()
    assert secret not in str(info.value) and "<redacted>" in str(info.value)


def test_a_command_that_does_not_read_its_stdin_fails_by_its_status() -> None:
    """The child exits before reading its input (secretfs refusing to start, say): the pipe
    breaks, and the failure is the command's exit status, not a BrokenPipeError."""
    payload = "x" * (4 << 20)  # more than a pipe holds: the write is under way when the child exits
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo refusing; exit 3"], input_text=payload)
    assert info.value.status == 3 and "refusing" in info.value.tail
    assert run(["sh", "-c", "exit 0"], input_text=payload, check=False).status == 0


def test_main_reports_a_step_whose_command_broke_its_pipe(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A build whose command exits without reading its stdin fails (main() once mapped every
    BrokenPipeError to exit 0, meant for a closed stdout: ./build.py plan | head)."""
    from crust import cli

    def failing_build(args: object) -> int:
        run(["sh", "-c", "exit 3"], input_text="x" * (4 << 20))
        return 0

    monkeypatch.setattr(cli.build, "cmd_build", failing_build)
    assert cli.main(["build", "wsgi"]) == 1
    assert "sh exited with status 3" in capsys.readouterr().err

    def broken_elsewhere(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli.build, "cmd_build", broken_elsewhere)
    assert cli.main(["build", "wsgi"]) == 1, "a pipe other than stdout broke: a failure"
    assert capsys.readouterr().err.startswith("error: broken pipe")


def test_main_exits_0_when_the_reader_of_its_output_goes_away(monkeypatch: pytest.MonkeyPatch) -> None:
    from crust import cli

    read, write = os.pipe()
    os.close(read)
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)

    def chatty(args: object) -> int:
        for _ in range(10000):
            print("a line of a long listing")
        return 0

    monkeypatch.setattr(cli.build, "cmd_plan", chatty)
    try:
        assert cli.main(["plan", "wsgi"]) == 0
    finally:
        with contextlib.suppress(OSError):
            stdout.close()


def write_role(roles: Path, name: str, spec: str) -> None:
    (roles / name / "tasks").mkdir(parents=True)
    (roles / name / "tasks/main.yml").write_text("---\n- name: Nothing\n  ansible.builtin.meta: noop\n")
    (roles / name / "meta").mkdir()
    (roles / name / "meta/argument_specs.yml").write_text(spec)


SPEC = """\
argument_specs:
  main:
    options:
      {var}:
        type: path
        required: true
        crust_secret: {sid}
"""


def test_roles_declare_secrets(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    write_role(roles, "a", SPEC.format(var="a_key_file", sid="deploy_key"))
    write_role(roles, "b", SPEC.format(var="b_token_file", sid="api_token"))
    (roles / "b/meta/main.yml").write_text("dependencies: [a]\n")
    assert needed_secrets(roles, ("b",)) == {"deploy_key": "a", "api_token": "b"}
    assert secret_variables(roles, ("b",)) == {"a_key_file": "/run/crust-secrets/deploy_key", "b_token_file": "/run/crust-secrets/api_token"}
    appliance = tmp_path / "x.toml"
    appliance.write_text("[vars]\n")
    check_vars(roles, ("b",), {}, appliance)  # a required secret variable is given by Crust


def secretfs(work: Path, payload: dict[str, bytes], command: list[str]) -> subprocess.CompletedProcess[str]:
    """secretfs as the Ansible run uses it: in the controller's private mount namespace."""
    data = json.dumps({k: base64.b64encode(v).decode() for k, v in payload.items()})
    helper = str(Path(secrets.__file__).with_name("secretfs.py"))
    argv = sandboxed([sys.executable, helper, str(work / "secrets"), "--", *command])
    return subprocess.run(argv, input=data, capture_output=True, text=True, check=False, env=secrets.child_env(os.environ, True))


def test_secret_lives_on_a_tmpfs_of_the_run_only(tmp_path: Path) -> None:
    need_root()
    need_tool("unshare")
    where = tmp_path / "secrets/deploy_key"
    script = f"stat -c '%a %U' {where}; cat {where}; grep ' {tmp_path}/secrets ' /proc/self/mounts; cat /proc/self/fd/0 | wc -c"
    out = secretfs(tmp_path, {"deploy_key": KEY.encode()}, ["sh", "-c", script])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "400 root"
    assert "\n".join(lines[1:5]) + "\n" == KEY
    assert " tmpfs " in lines[5] and "noexec" in lines[5]
    assert lines[6] == "0", "the command's stdin is /dev/null, not the secrets"
    assert list((tmp_path / "secrets").iterdir()) == [], "nothing on the disk after the run: the tmpfs went with the namespace"
    assert KEY not in Path("/proc/mounts").read_text() and str(tmp_path / "secrets") not in Path("/proc/mounts").read_text()


def test_secretfs_never_mounts_where_the_host_sees_it(tmp_path: Path) -> None:
    """Run outside any sandbox, secretfs makes its own private mount namespace: the host never
    sees the tmpfs, and nothing of the secrets stays on the disk."""
    need_root()
    helper = str(Path(secrets.__file__).with_name("secretfs.py"))
    out = subprocess.run(
        [
            sys.executable,
            helper,
            str(tmp_path / "secrets"),
            "--",
            "sh",
            "-c",
            f"cat {tmp_path}/secrets/k; grep -c ' {tmp_path}/secrets ' /proc/self/mounts",
        ],
        input='{"k": "dmFsdWUtb2YtYS1zZWNyZXQ="}',
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "value-of-a-secret1\n", "the command saw its tmpfs (the secret, then one mount line)"
    assert str(tmp_path) not in Path("/proc/mounts").read_text(), "the host never did"
    assert list((tmp_path / "secrets").iterdir()) == []
