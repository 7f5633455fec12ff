"""Ed25519 keys of the shared cache (the `cryptography` library): make, load, sign, verify.

A private key is a PKCS#8 PEM file, mode 0600 (a key others can read is refused, as ssh does);
its public half is KEYFILE.pub, one OpenSSH line (``ssh-ed25519 AAAA... crust-cache``), the
form a CI secret or a review diff shows best. A key's id is ``ed25519:`` and the first 16 hex
digits of the sha256 of its raw 32 bytes: entries name the key that signed them by it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crust.errors import UserError

COMMENT = b"crust-cache"


@dataclass(frozen=True)
class Signer:
    key_id: str
    private: Ed25519PrivateKey

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode("ascii")


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public: Ed25519PublicKey


class BadSignature(Exception):
    """An entry's signature is missing, by a key not trusted, or does not match its manifest."""


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def generate_key(path: Path) -> Signer:
    """A new key pair: PATH (private, 0600, never overwritten) and PATH.pub."""
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists() or existing.is_symlink():
            raise UserError(f"{existing} exists", hint="give a new file name (a key is never overwritten)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UserError(f"{path}: cannot create: {exc.strerror}", hint="give a writable place for the key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)  # whatever the umask
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public_path.write_bytes(line + b" " + COMMENT + b"\n")
    return Signer(key_id_of(private.public_key()), private)


def load_signer(path: Path) -> Signer:
    """The private key of KEYFILE; refused when others can read it or it is not Ed25519."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cache key {path}: cannot read: {exc.strerror}", hint="give the private key file ./build.py cache keygen made") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"cache key {path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it", hint=f"chmod 600 {path}")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        private = None
    if not isinstance(private, Ed25519PrivateKey):
        raise UserError(f"cache key {path}: not an unencrypted Ed25519 private key (PEM)", hint="make one with ./build.py cache keygen KEYFILE")
    return Signer(key_id_of(private.public_key()), private)


def load_trusted(path: Path) -> TrustedKey:
    """A public key: an OpenSSH line (KEYFILE.pub) or a PEM public key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"trusted key {path}: cannot read: {exc.strerror}", hint="give a KEYFILE.pub that ./build.py cache keygen made") from None
    public: object = None
    try:
        public = serialization.load_pem_public_key(data) if data.lstrip().startswith(b"-----") else serialization.load_ssh_public_key(data.strip())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        public = None
    if not isinstance(public, Ed25519PublicKey):
        raise UserError(f"trusted key {path}: not an Ed25519 public key", hint="give a KEYFILE.pub that ./build.py cache keygen made")
    return TrustedKey(key_id_of(public), public)


def verify(trusted: dict[str, TrustedKey], key_id: str, signature: str, data: bytes) -> None:
    """Raise BadSignature unless a trusted key of that id signed data."""
    key = trusted.get(key_id)
    if key is None:
        raise BadSignature(f"signed by a key this builder does not trust ({key_id or 'none named'})")
    try:
        key.public.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature(f"its signature does not match its manifest (key {key_id})") from exc
