"""Checking the audit log: is every record still there, as written, in its place?

Three things are checked, each catching what the others cannot:

- **The hash chains.** Positions run from 1 without a gap (a gap is a removed record);
  each record links to the digest of the one before it and its own digest covers its
  bytes and position (an edited, inserted or moved record breaks a link); the columns
  searches use are derived from the record again (an edited column is tampering too);
  the chain's head names its last record (a truncated tail).
- **The signed checkpoints.** Each signature verifies with one of the public keys given,
  and each checkpoint names the digest of the one before it (a removed or inserted
  checkpoint).
- **The chains against the checkpoints.** Whoever can write to the database can
  recompute a chain after editing it, and rewind its head after truncating it; they
  cannot re-sign. Every position a checkpoint signed must still hold the digest it
  signed, so a rewrite up to the last checkpoint is evident. Records after it are
  reported as a warning: they are not yet covered by a signature.

The walk streams: each chain is read a page at a time, advanced as far as the next
checkpoint needs, so memory stays bounded however long the log. Each chain's first
problem is reported (with later failures of the same chain counted), since one tampering
usually breaks every link after it; the walk re-anchors on the stored digests so that
the rest of the chain is still checked against the checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fhirhub.audit.checkpoints import CheckpointPayload, checkpoint_digest, decode_payload
from fhirhub.audit.record import AuditRecord, entry_of
from fhirhub.audit.signing import key_id, verify_signature
from fhirhub.store.audit import GENESIS, PG_CHAINS, AuditRow, ChainHead, Checkpoint, link_hash
from fhirhub.store.base import Reader

PAGE = 1000
PROGRESS_EVERY = 1000
MAX_CHECKPOINT_PROBLEMS = 100  # listed; any beyond are counted in one more problem

CHANGED, REMOVED, INSERTED, UNREADABLE, HEAD, CHECKPOINT = (
    "changed", "removed", "inserted", "unreadable", "head", "checkpoint")
NOT_COVERED = "records after the last checkpoint are not yet covered by a signature"


@dataclass(frozen=True, slots=True)
class Problem:
    """One sign of tampering. ``chain`` and ``chain_seq`` are None for a problem of a
    checkpoint as a whole; ``record_id`` is None when there is no record to name (it was
    removed)."""

    chain: int | None
    chain_seq: int | None
    record_id: str | None
    kind: str  # changed, removed, inserted, unreadable, head or checkpoint
    message: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool  # no problem (warnings do not count)
    records: int
    chains: int
    checkpoints: int
    problems: list[Problem]
    warnings: list[str]


def verify(store: Reader, public_keys: Sequence[Ed25519PublicKey], *,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every chain of the audit log and every signed checkpoint (see the module's
    docstring). ``progress(n)`` is called every 1000 records with how many were checked."""
    counter = _Counter(progress)
    # Every chain a backend may have is walked, not only those with a head: removing a
    # head must not hide its chain.
    numbers = {h.chain for h in store.audit_heads()} | set(range(PG_CHAINS))
    chains = {n: _Chain(store, n, counter) for n in sorted(numbers)}
    checks = _Checkpoints(store, list(public_keys), chains)
    checks.run()
    heads = _finish_chains(store, chains)
    chains = {n: w for n, w in chains.items() if n in heads or w.last_seq or w.problem}
    problems = [w.first_problem() for w in chains.values() if w.problem is not None]
    problems += checks.problems()
    warnings = _coverage_warnings(chains.values(), checks.count)
    return VerifyReport(ok=not problems, records=counter.n, chains=len(chains),
                        checkpoints=checks.count, problems=problems, warnings=warnings)


class _Counter:
    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.n = 0
        self._progress = progress

    def tick(self) -> None:
        self.n += 1
        if self._progress is not None and self.n % PROGRESS_EVERY == 0:
            self._progress(self.n)


# -- one chain ---------------------------------------------------------------------------------


class _Chain:
    """A walk along one chain, a page at a time, checking each record as it passes."""

    def __init__(self, store: Reader, chain: int, counter: _Counter) -> None:
        self.store = store
        self.chain = chain
        self._counter = counter
        self._page: deque[AuditRow] = deque()
        self._fetched = 0  # the last position read from the store
        self.last_seq = 0  # the last position checked
        self.last_hash = GENESIS  # its stored digest: the next record links to it
        self.last_id: str | None = None
        self.problem: Problem | None = None
        self.further = 0  # failures after the first
        self.claim: tuple[int, str] | None = None  # the last (position, digest) signed
        self.checkpoint_problem = False

    @property
    def covered(self) -> int:
        """The last position a checkpoint with a good signature signed."""
        return 0 if self.claim is None else self.claim[0]

    def advance_to(self, seq: int) -> None:
        """Check records up to position ``seq`` (or the end of the chain)."""
        while self.last_seq < seq and self._step():
            pass

    def drain(self) -> bool:
        """Check every record left; whether there was any."""
        moved = False
        while self._step():
            moved = True
        return moved

    def report(self, kind: str, seq: int, record_id: str | None, message: str) -> None:
        if self.problem is None:
            self.problem = Problem(self.chain, seq, record_id, kind, message)
        else:
            self.further += 1

    def first_problem(self) -> Problem:
        assert self.problem is not None
        if not self.further:
            return self.problem
        return dataclasses.replace(self.problem, message=(
            f"{self.problem.message} (and {self.further} later failure(s) in this chain)"))

    def _step(self) -> bool:
        if not self._page:
            self._page.extend(self.store.audit_chain(self.chain, self._fetched, PAGE))
            if not self._page:
                return False
        row = self._page.popleft()
        self._fetched = row.chain_seq
        self._check(row)
        return True

    def _check(self, row: AuditRow) -> None:
        self._counter.tick()
        expected_prev = self.last_hash
        if row.chain_seq != self.last_seq + 1:
            self.report(REMOVED, self.last_seq + 1, None, _gap_message(self.last_seq, row))
            expected_prev = row.prev_hash  # the broken link is this same removal
        finding = _link_problem(row, expected_prev) or _content_problem(row)
        if finding is not None:
            self.report(finding[0], row.chain_seq, row.id, finding[1])
        self.last_seq, self.last_hash, self.last_id = row.chain_seq, row.hash, row.id


def _gap_message(last_seq: int, row: AuditRow) -> str:
    first, last = last_seq + 1, row.chain_seq - 1
    where = f"position {first}" if first == last else f"positions {first} to {last}"
    return (f"the record(s) at {where} are missing (removed): record {row.id} at position "
            f"{row.chain_seq} follows position {last_seq}")


def _link_problem(row: AuditRow, expected_prev: str) -> tuple[str, str] | None:
    """Whether ``row`` still links to the record before it (whose digest is
    ``expected_prev``), and if not, the likeliest explanation."""
    c, s, rec, rid = row.chain, row.chain_seq, row.record, row.id
    own = link_hash(row.prev_hash, c, s, rec)
    if row.prev_hash == expected_prev:
        if own == row.hash:
            return None
        return CHANGED, (f"record {rid} at position {s} was changed: its content no longer "
                         "matches its digest")
    if own == row.hash:
        return INSERTED, (f"record {rid} at position {s} does not follow the record before "
                          "it: it was inserted, or the record before it was replaced")
    if link_hash(expected_prev, c, s, rec) == row.hash:
        return CHANGED, (f"record {rid} at position {s} was changed: its link to the record "
                         "before it was altered")
    if s > 1 and link_hash(row.prev_hash, c, s - 1, rec) == row.hash:
        return INSERTED, (f"record {rid} at position {s} was written at position {s - 1}: a "
                          "record was inserted before it")
    if link_hash(row.prev_hash, c, s + 1, rec) == row.hash:
        return REMOVED, (f"record {rid} at position {s} was written at position {s + 1}: a "
                         "record before it was removed and the rest renumbered")
    return CHANGED, (f"record {rid} at position {s} was changed: neither its content nor "
                     "its link matches its digest")


def _content_problem(row: AuditRow) -> tuple[str, str] | None:
    """Whether the record parses and the columns kept beside it are derived from it."""
    try:
        entry = entry_of(AuditRecord.from_json(row.record), row.record)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return UNREADABLE, (f"record {row.id} at position {row.chain_seq} is not a readable "
                            f"audit record: {exc}")
    differ = [name for name, derived, stored in (
        ("id", entry.id, row.id), ("recorded", entry.recorded, row.recorded),
        ("interaction", entry.interaction, row.interaction), ("outcome", entry.outcome, row.outcome),
        ("request_id", entry.request_id, row.request_id),
        ("correlation_id", entry.correlation_id, row.correlation_id),
        ("client", entry.client, row.client), ("user", entry.user, row.user),
        ("refs", entry.refs, row.refs)) if derived != stored]
    if not differ:
        return None
    return CHANGED, (f"record {row.id} at position {row.chain_seq} was changed: its stored "
                     f"{', '.join(differ)} {'does' if len(differ) == 1 else 'do'} not match "
                     "the record")


def _finish_chains(store: Reader, chains: dict[int, _Chain]) -> dict[int, ChainHead]:
    """Check the rest of every chain, then its head; the heads. Records appended while
    the walk went on move heads beyond it: the walk follows them until it has caught up."""
    for walk in chains.values():
        walk.drain()
    heads = _heads(store)
    behind = _behind(chains.values(), heads)
    while behind:
        moved = [w.drain() for w in behind]
        if not any(moved):
            break
        heads = _heads(store)
        behind = _behind(behind, heads)
    for walk in chains.values():
        _check_head(walk, heads.get(walk.chain))
    return heads


def _behind(chains: Iterable[_Chain], heads: dict[int, ChainHead]) -> list[_Chain]:
    return [w for w in chains if w.chain in heads and heads[w.chain].chain_seq > w.last_seq]


def _heads(store: Reader) -> dict[int, ChainHead]:
    return {h.chain: h for h in store.audit_heads()}


def _check_head(walk: _Chain, head: ChainHead | None) -> None:
    last, last_id = walk.last_seq, walk.last_id
    if head is None:
        if last:
            walk.report(HEAD, last, last_id, (
                "the chain's head is gone from audit_chain, but the chain has records up to "
                f"position {last} (record {last_id})"))
    elif head.chain_seq > last:
        ends = "has no record" if last_id is None else f"ends with record {last_id} at position {last}"
        walk.report(HEAD, last + 1, None, (
            f"the chain's head is at position {head.chain_seq} but the chain {ends}: the "
            "records after it were removed"))
    elif head.chain_seq < last:
        walk.report(HEAD, head.chain_seq + 1, None, (
            f"the chain's head is at position {head.chain_seq} but records go on to position "
            f"{last} (record {last_id}): records were added behind the server's back, or "
            "the head was rewound"))
    elif head.hash != walk.last_hash:
        walk.report(HEAD, last, last_id, (
            f"the chain's head digest does not match its last record, {last_id} at position "
            f"{last}"))


# -- the checkpoints ---------------------------------------------------------------------------


class _Checkpoints:
    """The signed checkpoints, oldest first: each one's signature and link to the one
    before it, and every position it signed against the chains."""

    def __init__(self, store: Reader, public_keys: list[Ed25519PublicKey],
                 chains: dict[int, _Chain]) -> None:
        self.store = store
        self.keys = public_keys
        self.key_ids = {key_id(k) for k in public_keys}
        self.chains = chains
        self.count = 0
        self._problems: list[Problem] = []
        self._unlisted = 0
        self._unknown_chains: set[int] = set()

    def run(self) -> None:
        previous: Checkpoint | None = None
        for cp in _all_checkpoints(self.store):
            self.count += 1
            self._check(cp, previous)
            previous = cp

    def problems(self) -> list[Problem]:
        if not self._unlisted:
            return list(self._problems)
        return [*self._problems, Problem(None, None, None, CHECKPOINT, (
            f"and {self._unlisted} more checkpoint problem(s)"))]

    def _report(self, message: str, chain: int | None = None, seq: int | None = None,
                record_id: str | None = None) -> None:
        if len(self._problems) < MAX_CHECKPOINT_PROBLEMS:
            self._problems.append(Problem(chain, seq, record_id, CHECKPOINT, message))
        else:
            self._unlisted += 1

    def _check(self, cp: Checkpoint, previous: Checkpoint | None) -> None:
        try:
            payload = decode_payload(cp.payload)
        except ValueError as exc:
            self._report(f"checkpoint {cp.seq} is unreadable: {exc}")
            return
        if payload.created != cp.created:
            self._report(f"checkpoint {cp.seq} says it was created at {payload.created} but is "
                         f"stored as created at {cp.created}")
        self._check_link(cp, payload, previous)
        if self._check_signature(cp, payload):
            for head in payload.heads:
                self._check_claim(cp, head)

    def _check_link(self, cp: Checkpoint, payload: CheckpointPayload,
                    previous: Checkpoint | None) -> None:
        expected = None if previous is None else checkpoint_digest(previous)
        if payload.previous == expected:
            return
        if previous is None:
            self._report(f"checkpoint {cp.seq} names a checkpoint before it, but none is left: "
                         "earlier checkpoints were removed")
        else:
            self._report(f"checkpoint {cp.seq} does not follow checkpoint {previous.seq}: a "
                         "checkpoint between them was removed or inserted, or one of them altered")

    def _check_signature(self, cp: Checkpoint, payload: CheckpointPayload) -> bool:
        if verify_signature(self.keys, payload.key, cp.payload, cp.signature):
            return True
        if payload.key not in self.key_ids:
            self._report(f"checkpoint {cp.seq} is signed with key {payload.key}, which is not "
                         "among the public keys given")
        else:
            self._report(f"checkpoint {cp.seq}'s signature does not verify with key "
                         f"{payload.key}: the checkpoint was altered")
        return False

    def _check_claim(self, cp: Checkpoint, head: ChainHead) -> None:
        """Does position ``head.chain_seq`` of its chain still hold the digest signed?"""
        walk = self.chains.get(head.chain)
        if walk is None:
            if head.chain not in self._unknown_chains:
                self._unknown_chains.add(head.chain)
                self._report(f"checkpoint {cp.seq} signed chain {head.chain}, which is gone",
                             head.chain, head.chain_seq)
            return
        seq, digest = head.chain_seq, head.hash
        if walk.claim is not None and seq <= walk.claim[0]:
            self._check_repeat(cp, walk, head)
            return
        walk.claim = (seq, digest)
        if seq == 0:
            if digest != GENESIS:
                self._mismatch(cp, walk, head, f"checkpoint {cp.seq} signed chain {head.chain} "
                               "as empty with a digest other than the genesis one")
            return
        walk.advance_to(seq)
        if walk.last_seq != seq:
            self._mismatch(cp, walk, head, (
                f"checkpoint {cp.seq} signed chain {head.chain} up to position {seq}, which is "
                "gone: the chain was truncated or its records removed"))
        elif walk.last_hash != digest:
            self._mismatch(cp, walk, head, (
                f"checkpoint {cp.seq} signed record {walk.last_id} at chain {head.chain} "
                f"position {seq} with digest {digest[:16]}…, but it now has "
                f"{walk.last_hash[:16]}…: it or a record before it was rewritten"), walk.last_id)

    def _check_repeat(self, cp: Checkpoint, walk: _Chain, head: ChainHead) -> None:
        """A head no later than one already signed: legitimately the same one again."""
        assert walk.claim is not None
        if (head.chain_seq, head.hash) == walk.claim:
            return
        if head.chain_seq < walk.claim[0]:
            message = (f"checkpoint {cp.seq} signed chain {head.chain} at position "
                       f"{head.chain_seq}, behind position {walk.claim[0]} signed before it")
        else:
            message = (f"checkpoint {cp.seq} signed another digest for chain {head.chain} "
                       f"position {head.chain_seq} than an earlier checkpoint did")
        self._mismatch(cp, walk, head, message)

    def _mismatch(self, cp: Checkpoint, walk: _Chain, head: ChainHead, message: str,
                  record_id: str | None = None) -> None:
        """Only a chain's first disagreement with the checkpoints is listed: once a chain
        was rewritten, every later checkpoint disagrees with it too."""
        if walk.checkpoint_problem:
            return
        walk.checkpoint_problem = True
        self._report(message, head.chain, head.chain_seq, record_id)


def _all_checkpoints(store: Reader) -> Iterator[Checkpoint]:
    after = 0
    while True:
        page = store.audit_checkpoints(after, PAGE)
        if not page:
            return
        yield from page
        after = page[-1].seq


def _coverage_warnings(chains: Iterable[_Chain], checkpoints: int) -> list[str]:
    uncovered = [(w.chain, w.last_seq - w.covered) for w in chains if w.last_seq > w.covered]
    if not uncovered:
        return []
    count = sum(n for _, n in uncovered)
    names = ", ".join(str(c) for c, _ in uncovered)
    if checkpoints == 0:
        return [f"{count} record(s) in chain(s) {names} and no checkpoint signed yet: "
                f"{NOT_COVERED}"]
    return [f"{count} record(s) in chain(s) {names}: {NOT_COVERED}"]


__all__ = ["CHANGED", "CHECKPOINT", "HEAD", "INSERTED", "NOT_COVERED", "REMOVED", "UNREADABLE",
           "Problem", "VerifyReport", "verify"]
