"""Crust's policy on a kickstart's accounts: root's password, users, their SSH keys.

Passwords are hashes of a strong scheme (no MD5-crypt or DES), plain text only when the
appliance allows it; names and paths are plain (they become files in the tree).
"""

from __future__ import annotations

import re
from typing import Any

from crust.define.kickstart.model import KickstartProblem, SshKey, User
from crust.define.settings import IMAGE_PATH_RE

# sha256crypt, sha512crypt, yescrypt, gost-yescrypt, bcrypt, scrypt; not MD5-crypt ($1$) nor DES
CRYPT_RE = re.compile(r"^\$(5|6|y|gy|2[abxy]?|7)\$[./A-Za-z0-9$=,]+$")
WEAK_CRYPT_RE = re.compile(r"^(\$1\$|[./A-Za-z0-9]{13}$)")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # user and group names
# An absolute path: no empty, "." or ".." component (host-side writes resolve paths in the
# tree, but a path that means nothing odd is easier to trust).
ABSOLUTE_PATH_RE = IMAGE_PATH_RE


def _check_hash(value: str, what: str, line: int) -> str:
    if WEAK_CRYPT_RE.match(value):
        raise KickstartProblem(
            line, f"{what}: MD5-crypt and DES password hashes are refused (cracked in minutes)", "generate one with `openssl passwd -6`"
        )
    if not CRYPT_RE.match(value):
        raise KickstartProblem(line, f"{what}: --iscrypted value is not a crypt(3) hash", "generate one with `openssl passwd -6`")
    return value


def _hash_plaintext(value: str) -> str:
    """SHA-512 crypt of a plain-text password (only when plain text is explicitly allowed)."""
    from crust.runner import run  # as every command: no credential of Crust's environment reaches it

    return run(["openssl", "passwd", "-6", "-stdin"], capture=True, input_text=value).stdout.strip()


def check_rootpw(handler: Any, allow: bool) -> str:
    rp = handler.rootpw
    if not rp.seen or rp.lock:
        if rp.seen and rp.password and not rp.isCrypted and not allow:
            raise KickstartProblem(rp.lineno, "rootpw: a plain-text password is refused", "use --iscrypted or --lock")
        return ""
    if not rp.password:
        return ""
    if rp.isCrypted:
        return _check_hash(rp.password, "rootpw", rp.lineno)
    if not allow:
        raise KickstartProblem(
            rp.lineno,
            "rootpw: a plain-text password is refused",
            "use --iscrypted with a hash, or --lock; or set security.allow_plaintext_passwords = true",
        )
    return _hash_plaintext(rp.password)


def check_users(handler: Any, allow: bool) -> tuple[User, ...]:
    users = []
    for u in handler.user.userList:
        password = ""
        if u.password and not u.lock:
            if u.isCrypted:
                password = _check_hash(u.password, f"user {u.name}", u.lineno)
            elif not allow:
                raise KickstartProblem(
                    u.lineno,
                    f"user {u.name}: a plain-text password is refused",
                    "use --iscrypted with a hash, or --lock; or set security.allow_plaintext_passwords = true",
                )
            else:
                password = _hash_plaintext(u.password)
        if not NAME_RE.fullmatch(u.name):
            raise KickstartProblem(u.lineno, f"user {u.name!r} is not a valid user name", "use lower-case letters, digits, '_' and '-'")
        for option, value in (("--homedir", u.homedir), ("--shell", u.shell)):
            if value and not ABSOLUTE_PATH_RE.fullmatch(value):
                raise KickstartProblem(
                    u.lineno, f"user {u.name} {option} {value!r} is not a plain absolute path", "write e.g. /home/NAME (no '..', no spaces)"
                )
        for group in (g for g in u.groups if g):
            if not NAME_RE.fullmatch(group):
                raise KickstartProblem(
                    u.lineno, f"user {u.name} --groups: {group!r} is not a valid group name", "use lower-case letters, digits, '_' and '-'"
                )
        if u.gecos and any(c in u.gecos for c in ":\n\r\x00"):
            raise KickstartProblem(u.lineno, f"user {u.name} --gecos must not contain ':'", "remove it")
        users.append(
            User(
                name=u.name,
                groups=tuple(g for g in u.groups if g),
                password_hash=password,
                shell=u.shell or "/bin/bash",
                homedir=u.homedir or f"/home/{u.name}",
                uid=u.uid,
                gecos=u.gecos or "",
            )
        )
    return tuple(users)


def check_sshkeys(handler: Any) -> tuple[SshKey, ...]:
    known = {"root"} | {u.name for u in handler.user.userList}
    keys = []
    for k in handler.sshkey.sshUserList:
        if k.username not in known:
            raise KickstartProblem(k.lineno, f"sshkey for unknown user {k.username!r}", "add a `user --name=...` line first")
        if not re.match(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$", k.key.strip()):
            raise KickstartProblem(k.lineno, "sshkey is not an OpenSSH public key line", "paste the contents of a .pub file")
        keys.append(SshKey(k.username, k.key.strip()))
    return tuple(keys)
