"""The Ed25519 key that signs the audit log's checkpoints, and checking those signatures.

The hash chains make the log tamper-evident only against someone who cannot recompute
them; anyone with write access to the database can. A signature by a key kept away from
the database is what they cannot forge: :mod:`fhirhub.audit.checkpoints` signs the
chains' heads every so often, and :mod:`fhirhub.audit.verify` checks them with the
public half. Keys are identified by :func:`key_id`, so that checkpoints signed before a
key rotation still verify when the old public key is given too.

All cryptography is the ``cryptography`` package's; this module only stores keys
carefully (owner-only, created atomically so that two processes starting at once agree
on one key) and encodes signatures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE_MODE = 0o600


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The private key in the PEM file ``path``, created (owner-only) when missing.

    Raises OSError when the file cannot be read or written, ValueError when it does not
    hold an unencrypted Ed25519 private key."""
    if not path.exists():
        create_key_file(path, Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return _private_key(path.read_bytes(), path)


def create_key_file(path: Path, pem: bytes) -> None:
    """Write a new key to a private temporary file, then link it into place: the link
    fails when another process got there first, and then its key is the one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), KEY_FILE_MODE)  # whatever the umask
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _private_key(data: bytes, path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys in ``paths``: PEM public keys, or private keys (their
    public half is taken). ValueError names the first file that holds neither."""
    return [_public_key(path.read_bytes(), path) for path in paths]


def _public_key(data: bytes, path: Path) -> Ed25519PublicKey:
    if b"PRIVATE KEY-----" in data:
        return _private_key(data, path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path} is not a PEM public or private key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name for a key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    return _id_of(public_key)


def _id_of(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_bytes(public_key)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, payload: bytes) -> str:
    """The signature of ``payload``, base64url without padding."""
    return _encode(key.sign(payload))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(signature: str) -> bytes | None:
    """The bytes of a signature :func:`sign` wrote; None for any other text (the decoder
    alone would skip stray characters, and an altered signature must not verify)."""
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw if _encode(raw) == signature else None


def verify_signature(public_keys: Iterable[Ed25519PublicKey], key_id: str, payload: bytes,
                     signature: str) -> bool:
    """Whether ``signature`` is a signature of ``payload`` by the key named ``key_id``,
    one of ``public_keys``. False when no such key is given or the signature is not in
    the form :func:`sign` writes."""
    raw = _decode(signature)
    if raw is None:
        return False
    for public_key in public_keys:
        if _id_of(public_key) != key_id:
            continue
        try:
            public_key.verify(raw, payload)
        except InvalidSignature:
            continue
        return True
    return False


__all__ = ["create_key_file", "key_id", "load_or_create_key", "load_public_keys",
           "public_bytes", "sign", "verify_signature"]
