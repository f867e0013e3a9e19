"""The audit signing key (fhirhub.audit.signing) and the signed checkpoints made with it
(fhirhub.audit.checkpoints), on every backend."""

from __future__ import annotations

import base64
import hashlib
import stat
import threading
import uuid
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fhirhub.audit.checkpoints import (
    checkpoint_digest,
    decode_payload,
    make_checkpoint,
)
from fhirhub.audit.record import AuditRecord, entry_of
from fhirhub.audit.record import instant as now_instant
from fhirhub.audit.signing import (
    key_id,
    load_or_create_key,
    load_public_keys,
    sign,
    verify_signature,
)
from fhirhub.audit.verify import verify
from fhirhub.store import Store
from fhirhub.store.audit import Checkpoint

# -- the key ---------------------------------------------------------------------------------


def test_a_missing_key_is_created_owner_only_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "nested" / "audit.pem"
    key = load_or_create_key(path)
    assert isinstance(key, Ed25519PrivateKey)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["audit.pem"]  # no temporary file left


def test_an_existing_key_is_loaded_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    first = load_or_create_key(path)
    again = load_or_create_key(path)
    assert key_id(first.public_key()) == key_id(again.public_key())


def test_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    ids: list[str] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait(timeout=10)
        ids.append(key_id(load_or_create_key(path).public_key()))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert key_id(load_or_create_key(path).public_key()) == ids[0]


def test_a_file_that_is_not_an_ed25519_private_key_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    with pytest.raises(ValueError, match=r"garbage\.pem"):
        load_or_create_key(garbage)
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        load_or_create_key(ec_key)


def test_public_keys_load_from_public_or_private_pem_files(tmp_path: Path) -> None:
    private = load_or_create_key(tmp_path / "audit.pem")
    public_file = tmp_path / "audit.pub.pem"
    public_file.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    keys = load_public_keys([tmp_path / "audit.pem", public_file])
    assert [key_id(k) for k in keys] == [key_id(private.public_key())] * 2


def test_public_keys_refuse_a_file_that_holds_no_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match=r"bad\.pem"):
        load_public_keys([bad])


def test_key_id_is_the_first_16_hex_of_the_sha256_of_the_raw_public_key() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(public) == hashlib.sha256(raw).hexdigest()[:16]


# -- signatures -------------------------------------------------------------------------------


def test_a_signature_is_unpadded_base64url_and_verifies_with_its_key() -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign(key, b"payload")
    assert "=" not in signature and "+" not in signature and "/" not in signature
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64
    assert verify_signature([key.public_key()], key_id(key.public_key()), b"payload", signature)


def test_a_signature_does_not_verify_for_another_payload_key_or_altered_text() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    kid = key_id(key.public_key())
    signature = sign(key, b"payload")
    assert not verify_signature([key.public_key()], kid, b"payloaD", signature)
    assert not verify_signature([other.public_key()], kid, b"payload", signature)
    assert not verify_signature([other.public_key(), key.public_key()],
                                key_id(other.public_key()), b"payload", signature)
    assert not verify_signature([], kid, b"payload", signature)
    assert not verify_signature([key.public_key()], kid, b"payload", signature + "!!")
    assert not verify_signature([key.public_key()], kid, b"payload", "not base64 at all?")
    assert not verify_signature([key.public_key()], kid, b"payload", signature[:-4])


# -- checkpoints ------------------------------------------------------------------------------


def _append(store: Store, n: int) -> None:
    records = [AuditRecord(id=str(uuid.uuid4()), recorded=now_instant(), kind="rest",
                           interaction="read", outcome="0") for _ in range(n)]
    store.run([], lambda tx: tx.append_audit([entry_of(r) for r in records]))


def _all(store: Store) -> list[Checkpoint]:
    return store.audit_checkpoints(0, 1000)


def test_a_checkpoint_signs_every_chain_head_and_links_to_the_one_before(
        store: Store, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit.pem")
    _append(store, 3)
    first = make_checkpoint(store, key, "2026-11-24T10:00:00.000000Z")
    _append(store, 2)
    second = make_checkpoint(store, key, "2026-11-24T10:01:00.000000Z")
    assert [c.seq for c in _all(store)] == [first.seq, second.seq] and first.seq < second.seq
    payload = decode_payload(second.payload)
    assert payload.created == second.created == "2026-11-24T10:01:00.000000Z"
    assert list(payload.heads) == sorted(store.audit_heads(), key=lambda h: h.chain)
    assert payload.previous == checkpoint_digest(first)
    assert decode_payload(first.payload).previous is None
    assert payload.key == key_id(key.public_key())
    assert verify_signature([key.public_key()], payload.key, second.payload, second.signature)
    assert orjson.loads(second.payload).keys() == {"created", "heads", "previous", "key"}
    assert second.payload == orjson.dumps(orjson.loads(second.payload),
                                          option=orjson.OPT_SORT_KEYS)


def test_no_checkpoint_is_written_while_no_chain_moved_unless_forced(
        store: Store, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit.pem")
    first = make_checkpoint(store, key, now_instant())  # the first one, even of an empty log
    assert make_checkpoint(store, key, now_instant()) == first
    assert len(_all(store)) == 1
    _append(store, 1)
    moved = make_checkpoint(store, key, now_instant())
    assert moved.seq > first.seq
    forced = make_checkpoint(store, key, now_instant(), force=True)
    assert forced.seq > moved.seq and len(_all(store)) == 3


def test_checkpoints_signed_concurrently_still_form_one_chain(
        store: Store, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit.pem")
    _append(store, 2)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def sign_one() -> None:
        try:
            start.wait(timeout=10)
            make_checkpoint(store, key, now_instant(), force=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sign_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    checkpoints = _all(store)
    assert len(checkpoints) == 6
    previous = [decode_payload(c.payload).previous for c in checkpoints]
    assert previous == [None, *(checkpoint_digest(c) for c in checkpoints[:-1])]
    report = verify(store, [key.public_key()])
    assert report.ok and report.checkpoints == 6
