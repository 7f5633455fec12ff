"""Build secrets: values a role needs while the tree is configured, and never after.

A role declares a secret in its ``meta/argument_specs.yml``: an option with ``crust_secret: ID``
is the variable that holds the *path* of the secret inside the tree (``/run/crust-secrets/ID``),
never its content. ``./build.py build NAME --secret ID=PATH`` (or ``ID=env:VARIABLE``) gives
it. The content is read once, before any work, and kept in memory:

- it is written only to a tmpfs mounted in the Ansible run's private mount namespace
  (crust/trust/secretfs.py), which vanishes with the run: nothing of it reaches the tree's disk;
- it is no input of any step id (like BuildKit's ``--secret``): a rotated key does not
  rebuild, and a tree built with the old one stays in use until another input changes;
- it is redacted from every line Crust logs or reports (crust/redact.py), together with the
  values of credential variables of Crust's own environment, which no child process gets
  (``child_env``).
"""

from __future__ import annotations

import os
import re
import stat
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crust.errors import UserError
from crust.redact import MIN_REDACTED, add, register

SECRETFS = Path(__file__).with_name("secretfs.py")  # run as a script by the tree step (crust/tree/ansible.py)

SECRETS_DIR = "/run/crust-secrets"  # inside the tree, during the Ansible run only
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BYTES = 1024 * 1024
SYNTAX = "ID=PATH or ID=env:VARIABLE"
EXAMPLE = "--secret deploy_key=$HOME/.ssh/id_ed25519"

# Environment variables that carry credentials: no child process of a build gets them.
CREDENTIAL_ENV = re.compile(
    r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN|PROFILE|DEFAULT_PROFILE|SHARED_CREDENTIALS_FILE|CONFIG_FILE"
    r"|WEB_IDENTITY_TOKEN_FILE|ROLE_ARN|ROLE_SESSION_NAME|CONTAINER_CREDENTIALS_\w+|CONTAINER_AUTHORIZATION_TOKEN\w*)"
    r"|\w*(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY|AUTH)\w*"
    r"|SSH_AUTH_SOCK|SSH_AGENT_PID|GOOGLE_APPLICATION_CREDENTIALS|AZURE_\w+|ARM_CLIENT_\w+|OS_PASSWORD|KRB5CCNAME|GPG_AGENT_INFO",
    re.IGNORECASE,
)
# What a command in the build sandbox (mmdebstrap, chroot, Ansible) may inherit from Crust's
# environment; the caller adds what the command needs (CHROOT_ENV, ANSIBLE_*) on top. No
# CRUST_* variable: Crust reads its own settings (CRUST_STORE, CRUST_ROLES, CRUST_FAULT...) in
# its own process, and what a sandboxed command needs of them is passed with run(env=...).
SANDBOX_ENV = re.compile(
    r"PATH|HOME|USER|LOGNAME|SHELL|TERM|TZ|TMPDIR|LANG|LANGUAGE|LC_\w+|SOURCE_DATE_EPOCH"
    r"|(http|https|ftp|all|no)_proxy|(HTTP|HTTPS|FTP|ALL|NO)_PROXY"
)
# Variables that may hold a URL with a user:password part (children need the proxy itself).
PROXY_ENV = re.compile(r"(http|https|ftp|all|no)_proxy", re.IGNORECASE)


@dataclass(frozen=True)
class Secret:
    id: str
    source: str  # where it came from, for messages: "file PATH" or "environment variable NAME"
    value: bytes = field(repr=False)


_given: dict[str, Secret] = {}
_source_vars: set[str] = set()  # variables given as ID=env:NAME: no child process gets them
_lock = threading.Lock()


def parse_secret(text: str, environ: Mapping[str, str] | None = None) -> Secret:
    """One --secret argument, read now: ID=PATH (a regular file) or ID=env:VARIABLE."""
    environ = os.environ if environ is None else environ
    sid, sep, where = text.partition("=")
    shown = f"--secret {sid}{sep}{where}" if sep else f"--secret {text}"
    if not sep or not sid or not where:
        raise UserError(f"{shown}: expected {SYNTAX}", hint=f"e.g. {EXAMPLE}")
    if not ID_RE.fullmatch(sid):
        raise UserError(f"{shown}: {sid!r} is not a secret ID", hint="use 1-64 letters, digits, '_', '.' and '-', starting with a letter or digit")
    if where.startswith("env:"):
        name = where[len("env:") :]
        if not ENV_NAME_RE.fullmatch(name):
            raise UserError(f"{shown}: {name!r} is not an environment variable name", hint=f"write {sid}=env:NAME, e.g. {sid}=env:DEPLOY_TOKEN")
        if name not in environ:
            raise UserError(f"{shown}: the environment variable {name} is not set", hint=f"export {name}, or give the secret as a file: {sid}=PATH")
        value = environ[name].encode("utf-8", "surrogateescape")
        source = f"environment variable {name}"
        with _lock:  # from now on, before any child runs
            _source_vars.add(name)
    else:
        path = Path(where).expanduser()
        value = read_secret_file(path, shown)
        source = f"file {path}"
    if not value.strip():
        raise UserError(f"{shown}: the secret is empty", hint=f"check the {source.split(' ', 1)[0]} holds the secret")
    if len(value) > MAX_BYTES:
        raise UserError(f"{shown}: the secret is larger than {MAX_BYTES // 1024} KiB", hint="give a key or token, not a bundle of files")
    if len(value.strip()) < MIN_REDACTED:  # a value this short could not be told from ordinary words in the logs
        raise UserError(
            f"--secret {sid}: the secret is shorter than {MIN_REDACTED} characters, too short to redact from the logs",
            hint=f"use a secret of {MIN_REDACTED} characters or more",
        )
    return Secret(sid, source, value)


def read_secret_file(path: Path, shown: str) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        # Not the text given: a secret typed in place of its path would be shown on the terminal.
        sid = shown.removeprefix("--secret ").partition("=")[0]
        raise UserError(
            f"--secret {sid}: no such file (the path given is not shown: it may be the secret itself)",
            hint=f"give the path of the file that holds the secret: {sid}=PATH",
        ) from None
    except OSError as exc:
        raise UserError(f"{shown}: cannot read it: {exc.strerror or exc}", hint="give a readable file") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise UserError(f"{shown}: not a regular file", hint="give the path of the file that holds the secret")
    if st.st_size > MAX_BYTES:
        raise UserError(f"{shown}: the secret is larger than {MAX_BYTES // 1024} KiB", hint="give a key or token, not a bundle of files")
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"{shown}: cannot read it: {exc.strerror or exc}", hint="give a file this user can read") from None


def parse_secrets(args: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, Secret]:
    """Every --secret argument, by ID; an ID given twice is an error."""
    found: dict[str, Secret] = {}
    for text in args:
        secret = parse_secret(text, environ)
        if secret.id in found:
            raise UserError(f"--secret {secret.id}: given twice ({found[secret.id].source}, {secret.source})", hint="give each secret ID once")
        found[secret.id] = secret
    return found


def check_needed(needed: Mapping[str, Mapping[str, str]], given: Mapping[str, Secret]) -> None:
    """needed: appliance -> {secret ID: the role that needs it}. Every needed secret is given,
    and every given secret is needed by one of the appliances (an unused one is a typo)."""
    for appliance, ids in needed.items():
        for sid, role in sorted(ids.items()):
            if sid not in given:
                raise UserError(
                    f"{appliance}: role {role} needs the build secret {sid!r}",
                    hint=f"give it: ./build.py build {appliance} --secret {sid}=PATH (or {sid}=env:VARIABLE)",
                )
    used = {sid for ids in needed.values() for sid in ids}
    for sid in given:
        if sid not in used:
            known = ", ".join(sorted(used)) or "none"
            raise UserError(
                f"--secret {sid}: no role of {', '.join(needed) or 'these appliances'} uses this secret (they use: {known})",
                hint="remove it, or fix the ID (roles declare theirs with crust_secret in meta/argument_specs.yml)",
            )


def provide(secrets: Mapping[str, Secret]) -> None:
    """Make the secrets available to this process's builds, and redact them from now on."""
    with _lock:
        _given.update(secrets)
    for secret in secrets.values():
        register(secret.value)


def given(ids: Iterable[str]) -> dict[str, bytes]:
    """The content of each secret ID; a missing one is an error (checked before work starts)."""
    with _lock:
        missing = sorted(set(ids) - set(_given))
        if missing:
            raise UserError(f"build secret {missing[0]!r} was not given", hint=f"give it: --secret {missing[0]}=PATH")
        return {sid: _given[sid].value for sid in ids}


def find_in_tree(tree: Path, ids: Iterable[str]) -> list[tuple[str, str]]:
    """(secret ID, path in the tree) of every file that holds one of these given secrets (the
    secret, a line of it, or its base64 form): what a role copied into the image. GNU grep
    reads the fragments from its standard input, never from a file or its command line."""
    from crust.redact import fragments
    from crust.runner import run

    found: list[tuple[str, str]] = []
    for sid, value in sorted(given(ids).items()):
        parts = sorted(fragments(value))
        if not parts:
            continue
        out = run(["grep", "-rlZF", "--no-messages", "-f", "-", "--", str(tree)], capture=True, check=False, input_text="\n".join(parts) + "\n")
        prefix = str(tree).rstrip("/")
        found += [(sid, path[len(prefix) :]) for path in out.stdout.split("\0") if path.startswith(prefix + "/")]
    return found


def clear() -> None:
    """Forget the given secrets (the redaction registry and the hidden variables stay)."""
    with _lock:
        _given.clear()


def proxy_fragments(url: str) -> set[str]:
    """The password of a proxy URL (http://user:password@host:port), as written and decoded,
    and its user:password@ part (redacted whatever its length: it cannot be an ordinary word)."""
    try:
        split = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return set()
    userinfo, at, _host = split.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return set()
    raw = userinfo.partition(":")[2]
    if not raw:
        return set()
    found = {f"{userinfo}@", f":{raw}@"}
    found |= {p for p in (raw, urllib.parse.unquote(raw)) if len(p) >= MIN_REDACTED}
    return found


def register_environment(environ: Mapping[str, str] | None = None) -> None:
    """Redact the values of credential variables of Crust's own environment."""
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if CREDENTIAL_ENV.fullmatch(name) and len(value) >= MIN_REDACTED:
            register(value)
        elif PROXY_ENV.fullmatch(name):
            for url in value.split(","):  # no_proxy is a list; a proxy URL may carry a password
                add(proxy_fragments(url))


def child_env(environ: Mapping[str, str], sandboxed: bool) -> dict[str, str]:
    """The part of Crust's environment a child process inherits: never a credential variable
    nor a variable a --secret was read from (ID=env:NAME), and for commands in the build
    sandbox (they work on the tree) only SANDBOX_ENV's names."""
    with _lock:
        hidden = set(_source_vars)
    return {
        name: value
        for name, value in environ.items()
        if name not in hidden and not CREDENTIAL_ENV.fullmatch(name) and (not sandboxed or SANDBOX_ENV.fullmatch(name))
    }
