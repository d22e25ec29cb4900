"""The erasure ledger: a chain written before the first delete, mirrored signed to the bucket."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from coldcopy import job_locks, manifests, markers
from coldcopy.gdpr.subjects import LEDGER_PREFIX, Subject
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import Bucket

log = logging.getLogger(__name__)


@dataclass
class Ledger:
    """The bucket's erasure ledger: valid entries in sequence order, and what was wrong with the rest."""

    entries: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def ledger_entry(seq: int, prev_hash: str | None, request_id, workspace_id, subject_hash: str, id_hashes: list[str],
                 erased_at: datetime) -> dict:
    """One link of the erasure ledger's chain (only one-way keys: no personal data)."""
    return {"seq": seq, "prev_hash": prev_hash, "request_id": str(request_id), "workspace_id": str(workspace_id),
            "subject_hash": subject_hash, "id_hashes": sorted(id_hashes), "erased_at": erased_at.isoformat()}


def entry_hash(entry: dict) -> str:
    """The hash the next entry carries: of the entry's fields (not its signature or type)."""
    fields = {k: entry[k] for k in ("seq", "prev_hash", "request_id", "workspace_id", "subject_hash", "id_hashes",
                                    "erased_at")}
    fields["id_hashes"] = sorted(fields["id_hashes"])
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class LedgerBook:
    """The erasure ledger: a chain written before the first delete, mirrored signed to the bucket."""

    def __init__(self, conn: psycopg.Connection, keyring: manifests.Keyring | None,
                 lock_retry: LockRetryPolicy) -> None:
        self.conn, self.keyring, self.lock_retry = conn, keyring, lock_retry

    def record_intent(self, request_id: str, subject: Subject, id_hashes: list[str]) -> None:
        """The ledger entry of an erasure about to start: next in the chain (sequence number, previous entry's
        hash), committed before any row is deleted. A retried erasure keeps its entry, adding ids found since."""

        def write() -> None:
            job_locks.xact_lock(self.conn, "coldcopy erasure ledger")  # no other login can take it (job_locks)
            row = self.conn.execute("SELECT seq, id_hashes FROM coldcopy_ops.erasure_ledger WHERE request_id = %s",
                                    (request_id,)).fetchone()
            if row is not None and row[0] is not None and set(id_hashes) <= set(row[1]):
                return
            if row is not None and row[0] is not None:  # more ids since: a new entry carries the union
                id_hashes[:] = sorted(set(row[1]) | set(id_hashes))
            seq, prev = self.conn.execute(
                "SELECT coalesce(max(seq), 0) + 1, (SELECT entry_hash FROM coldcopy_ops.erasure_ledger "
                "WHERE seq = (SELECT max(seq) FROM coldcopy_ops.erasure_ledger)) FROM coldcopy_ops.erasure_ledger"
            ).fetchone()
            erased_at = self.conn.execute("SELECT now()").fetchone()[0]
            entry = ledger_entry(seq, prev, request_id, subject.workspace_id, subject.subject_hash, id_hashes,
                                 erased_at)
            markers.emit(self.conn, "erasure", seq=seq, request_id=str(request_id))  # one-way keys only
            self.conn.execute(
                "INSERT INTO coldcopy_ops.erasure_ledger (request_id, workspace_id, subject_hash, id_hashes, "
                "erased_at, seq, prev_hash, entry_hash, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'intent') "
                "ON CONFLICT (request_id) DO UPDATE SET id_hashes = EXCLUDED.id_hashes, erased_at = "
                "EXCLUDED.erased_at, seq = EXCLUDED.seq, prev_hash = EXCLUDED.prev_hash, "
                "entry_hash = EXCLUDED.entry_hash, state = 'intent', published_key = NULL",
                (request_id, subject.workspace_id, subject.subject_hash, id_hashes, erased_at, seq, prev,
                 entry_hash(entry)))

        under_lock_timeout(self.conn, write, self.lock_retry, what=f"ledger entry of request {request_id}")

    def publish_ledger(self, request_id: str, bucket: Bucket) -> str:
        """Mirror one ledger entry, signed, to ``gdpr/erasures/<seq>.json`` in the bucket; returns its key."""
        row = self.conn.execute(
            "SELECT seq, prev_hash, request_id::text, workspace_id::text, subject_hash, id_hashes, erased_at "
            "FROM coldcopy_ops.erasure_ledger WHERE request_id = %s", (request_id,)).fetchone()
        entry = ledger_entry(*row)
        key = f"{LEDGER_PREFIX}/{row[0]:012d}.json"
        bucket.put(key, manifests.dump(entry, self.keyring, type="ledger"), "application/json")
        self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET published_key = %s WHERE request_id = %s",
                          (key, request_id))
        return key

    def ledger_from_bucket(self, bucket: Bucket, since: datetime | None = None) -> Ledger:
        """The bucket's ledger: every valid entry erased at or after ``since``, and what is wrong with the rest.

        A junk or forged object, a gap in the sequence, or an entry whose ``prev_hash`` is not its
        predecessor's hash is reported in :attr:`Ledger.problems` (the caller alerts), never fatal: every
        valid entry is still applied — a restore must not keep erased people because one object is bad.
        """
        ledger = Ledger()
        for key in bucket.list_keys(f"{LEDGER_PREFIX}/"):
            try:
                raw = bucket.get(key)
                entry = manifests.load(raw, self.keyring, where=f"{bucket.uri}/{key}", type="ledger")
                if key != f"{LEDGER_PREFIX}/{entry['seq']:012d}.json":
                    raise manifests.ManifestRejected(f"{bucket.uri}/{key}: entry {entry['seq']} stored under "
                                                     "another number")
            except (manifests.ManifestRejected, KeyError, TypeError, ValueError) as error:
                ledger.problems.append(str(error))
                continue
            ledger.entries.append(entry)
        ledger.entries.sort(key=lambda e: e["seq"])
        previous = None
        for entry in ledger.entries:
            expected = 1 if previous is None else previous["seq"] + 1
            if entry["seq"] != expected:
                ledger.problems.append(f"ledger entries {expected}..{entry['seq'] - 1} are missing from the bucket")
            elif previous is not None and entry["prev_hash"] != entry_hash(previous):
                ledger.problems.append(f"ledger entry {entry['seq']} does not follow entry {previous['seq']} "
                                       "(its prev_hash differs: reordered or replaced)")
            previous = entry
        if since is not None:
            ledger.entries = [e for e in ledger.entries if datetime.fromisoformat(e["erased_at"]) >= since]
        return ledger

    def check_ledger(self, bucket: Bucket) -> list[str]:
        """Cross-check the database's ledger with the bucket's: an entry the bucket lacks is published again
        (the database's copy is the original), and every disagreement is returned for an alert."""
        for request_id, workspace_id, subject_hash, id_hashes in self.conn.execute(
                "SELECT request_id::text, workspace_id::text, subject_hash, id_hashes FROM coldcopy_ops.erasure_ledger "
                "WHERE seq IS NULL ORDER BY erased_at").fetchall():  # made before the chain: appended to it
            self.record_intent(request_id, Subject(workspace_id, subject_hash), list(id_hashes))
            self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET state = 'done' WHERE request_id = %s",
                              (request_id,))
        bucket_ledger = self.ledger_from_bucket(bucket)
        problems = list(bucket_ledger.problems)
        in_bucket = {e["seq"]: entry_hash(e) for e in bucket_ledger.entries}
        for seq, request_id, hashed in self.conn.execute(
                "SELECT seq, request_id::text, entry_hash FROM coldcopy_ops.erasure_ledger WHERE seq IS NOT NULL "
                "ORDER BY seq").fetchall():
            if seq not in in_bucket:
                self.publish_ledger(request_id, bucket)
                problems.append(f"ledger entry {seq} was missing from the bucket; published again")
            elif in_bucket[seq] != hashed:
                problems.append(f"ledger entry {seq} in the bucket differs from the database's")
        return problems
