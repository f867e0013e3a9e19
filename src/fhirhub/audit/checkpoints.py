"""Signed checkpoints: every so often, a signature over every audit chain's head.

A hash chain alone proves nothing to someone who can rewrite the database: they can
recompute it. A checkpoint records each chain's last position and digest, signed with a
key kept away from the database (:mod:`fhirhub.audit.signing`); a later rewrite of any
record up to that position no longer matches a digest the attacker cannot re-sign.
Checkpoints form a chain of their own (each names the digest of the one before it), so
removing or inserting one is evident too.

Several server processes sign checkpoints. Reading the last checkpoint and adding the
next happen in one transaction holding :data:`LOCK_KEY` (PostgreSQL's advisory lock;
SQLite's write lock covers it), so two processes never both build on the same one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fhirhub.audit.signing import key_id, sign
from fhirhub.store.audit import ChainHead, Checkpoint
from fhirhub.store.base import Store, Transaction

LOCK_KEY = "fhirhub.audit.checkpoint"


@dataclass(frozen=True, slots=True)
class CheckpointPayload:
    """What a checkpoint signs."""

    created: str
    heads: tuple[ChainHead, ...]
    previous: str | None  # checkpoint_digest of the checkpoint before it; None for the first
    key: str  # the signing key's key_id


def checkpoint_digest(checkpoint: Checkpoint) -> str:
    """What the next checkpoint names as its previous one: the SHA-256 of this one's
    payload followed by its signature."""
    return hashlib.sha256(checkpoint.payload + checkpoint.signature.encode("ascii")).hexdigest()


def encode_payload(payload: CheckpointPayload) -> bytes:
    """Canonical JSON (sorted keys, no whitespace)."""
    return orjson.dumps({
        "created": payload.created,
        "heads": [[h.chain, h.chain_seq, h.hash] for h in payload.heads],
        "previous": payload.previous,
        "key": payload.key,
    }, option=orjson.OPT_SORT_KEYS)


def decode_payload(raw: bytes) -> CheckpointPayload:
    """The payload ``raw`` holds; ValueError when it is not one."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"created", "heads", "previous", "key"}:
        raise ValueError("not a checkpoint payload")
    created, heads, previous, key = data["created"], data["heads"], data["previous"], data["key"]
    if (not isinstance(created, str) or not isinstance(key, str) or not isinstance(heads, list)
            or not (previous is None or isinstance(previous, str))):
        raise ValueError("not a checkpoint payload")
    return CheckpointPayload(created, tuple(_head(h) for h in heads), previous, key)


def _head(value: Any) -> ChainHead:
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[2], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])):
        raise ValueError(f"not a chain head: {value!r}")
    return ChainHead(value[0], value[1], value[2])


def make_checkpoint(store: Store, key: Ed25519PrivateKey, now: str, *,
                    force: bool = False) -> Checkpoint:
    """Sign and keep a checkpoint of every chain's head as of ``now`` (a FHIR instant);
    return it. When no chain has moved since the last checkpoint, keep nothing and return
    that one instead, unless ``force``."""
    return store.run([LOCK_KEY], lambda tx: _checkpoint(tx, key, now, force))


def _checkpoint(tx: Transaction, key: Ed25519PrivateKey, now: str, force: bool) -> Checkpoint:
    last = tx.audit_last_checkpoint()
    heads = tuple(sorted(tx.audit_heads(), key=lambda h: h.chain))
    if last is not None and not force and _heads_of(last) == heads:
        return last
    payload = encode_payload(CheckpointPayload(
        created=now, heads=heads, previous=None if last is None else checkpoint_digest(last),
        key=key_id(key.public_key())))
    checkpoint = Checkpoint(seq=0, created=now, payload=payload, signature=sign(key, payload))
    tx.add_checkpoint(checkpoint)
    stored = tx.audit_last_checkpoint()  # the same, with the place the store gave it
    return stored if stored is not None and stored.payload == payload else checkpoint


def _heads_of(checkpoint: Checkpoint) -> tuple[ChainHead, ...] | None:
    try:
        return decode_payload(checkpoint.payload).heads
    except ValueError:
        return None  # unreadable: sign a fresh one over it (verify will report it)


__all__ = ["LOCK_KEY", "CheckpointPayload", "checkpoint_digest", "decode_payload",
           "encode_payload", "make_checkpoint"]
