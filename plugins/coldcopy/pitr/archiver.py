"""Draining the slot into the bucket: whole committed transactions → one gzip'd, gpg-encrypted JSON-lines
segment → uploaded → read back, bound to its signed manifest → only then the slot advances.

The slot is read with ``pg_logical_slot_peek_binary_changes`` (the SQL interface: a plain connection with the
``REPLICATION`` attribute, no replication protocol) and moved with ``pg_replication_slot_advance`` once the
segment is safe, so a crash anywhere in between loses nothing: the next drain peeks the same changes again.
A segment whose manifest is in the bucket but whose slot advance was lost (the task killed in between) is
recognised by its ``end_lsn`` and the slot is moved to it, so nothing is archived twice. See docs/pitr.md.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import psycopg

from coldcopy import change_slot as budget
from coldcopy import kill_targets, manifests, ops_schema
from coldcopy.crypto import gpg_symmetric
from coldcopy.object_store import Bucket
from coldcopy.pitr import chain as chains
from coldcopy.pitr.pgoutput import Decoder, lsn_int, lsn_text
from coldcopy.pitr.setup import PUBLICATION, SLOT, Setup

log = logging.getLogger(__name__)

MAX_CHANGES = 200_000  # per peek; whole transactions, so a segment can hold more
SEGMENT_FORMAT = "JSON lines, one committed transaction per line (pgoutput v1, values as text) | gzip | OpenPGP AES256"


@dataclass
class Drained:
    seq: int | None  # the segment written, None when nothing was to archive
    transactions: int
    changes: int
    end_lsn: str | None
    lag_s: float | None  # now − the oldest commit this drain archived (the recovery point's age when it began)
    lags_s: list[float] = field(default_factory=list)  # per transaction: verified and confirmed − committed


class ChangeArchiver:
    """Keeps ``slot`` drained into ``bucket``'s current chain.

    :param dsn: a direct connection (not the transaction pooler) as a role with ``REPLICATION``.
    """

    def __init__(self, dsn: str, bucket: Bucket, passphrase: str, *, keyring: manifests.Keyring,
                 slot: str = SLOT, publication: str = PUBLICATION, max_changes: int = MAX_CHANGES) -> None:
        self.dsn, self.bucket, self.passphrase, self.keyring = dsn, bucket, passphrase, keyring
        self.slot, self.publication, self.max_changes = slot, publication, max_changes
        self.tip_every_s, self._tip_written = 20.0, float("-inf")
        self._chain: chains.Chain | None = None
        self._seen: dict[str, tuple] = {}  # the chain's documents as last read or written (see current_chain)

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=True)
        kill_targets.track_connection(conn)
        return conn

    # the chain ---------------------------------------------------------------------------------------------

    def current_chain(self, conn) -> chains.Chain:
        """The chain the slot feeds; started (its head written) when the slot was just created.

        Read from the bucket and checked whole when its signed documents change; otherwise the archiver keeps
        it (the slot admits one reader, so the segments appended are its own): a drain lists the chain's
        documents (their ETag and size) instead of fetching every manifest again, and still sees one deleted,
        added or replaced."""
        confirmed = self._confirmed(conn)
        if confirmed is None:
            ops_schema.ensure(conn, "change_archive")
            Setup(conn, publication=self.publication, slot=self.slot).apply()
            self._chain = self.start_chain(conn)
        elif self._chain is not None and self._documents(self._chain.name) != self._seen:
            self._chain = None  # changed behind our back: read and check it whole again
        if self._chain is None:
            ops_schema.ensure(conn, "change_archive")
            refused: dict[str, str] = {}
            for name in reversed(chains.list_chains(self.bucket)):
                seen = self._documents(name)  # listed before reading: a change in between shows next drain
                # A head planted by a bucket writer without the key is skipped and named, never a stop to archiving.
                chain = chains.load_trusted(self.bucket, name, self.keyring, refused)
                if chain is not None and chain.head["slot"] == self.slot \
                        and chain.head["database"] == conn.info.dbname and chain.start_lsn <= lsn_int(confirmed):
                    self._chain, self._seen = chain, seen
                    break
            else:
                self._chain = self.start_chain(conn)  # a slot made by hand: its chain starts where it stands
            if self._chain.problems or self._chain.break_after() is not None:
                broken, self._chain = self._chain, None
                raise chains.ChainError(f"chain {broken.name} is broken ({'; '.join(broken.problems) or 'a gap'}): "
                                        "refusing to extend it; drop the slot so the next backup starts a new one")
        return self._chain

    def _documents(self, chain: str) -> dict[str, tuple]:
        """``{key: (ETag, size)}`` of the chain's signed documents (its head, the segment manifests, the
        retention record), from one listing; the tip changes every drain and is left out."""
        return {o["Key"]: (o["ETag"], o["Size"]) for o in self.bucket.list_objects(f"{chains.PREFIX}/{chain}/")
                if o["Key"].endswith(".json") and not o["Key"].endswith("/tip.json")}

    def start_chain(self, conn) -> chains.Chain:
        start = self._confirmed(conn)
        now = datetime.now(UTC)
        head = {"chain": now.strftime("%Y%m%dT%H%M%S%fZ"), "database": conn.info.dbname, "slot": self.slot,
                "publication": self.publication, "start_lsn": start, "created_at": now.isoformat()}
        key = chains.chain_key(head["chain"])
        self.bucket.put(key, manifests.dump(head, self.keyring, type="chain"), "application/json")
        log.info("change archive: chain %s starts at %s", head["chain"], start)
        self._seen = self._documents(head["chain"])
        return chains.load_chain(self.bucket, head["chain"], self.keyring)

    # draining ----------------------------------------------------------------------------------------------

    def drain_once(self) -> Drained:
        """Archive everything the slot holds now (up to ``max_changes`` rows of output, whole transactions)."""
        with self.connect() as conn:
            self.refuse_lost_slot(conn)
            created = self._confirmed(conn) is None
            chain = self.current_chain(conn)
            if not created:
                self.check_anchor(conn, chain)
            confirmed = lsn_int(self._confirmed(conn))
            tip = chain.tip
            if tip and lsn_int(tip["end_lsn"]) > confirmed:  # archived, but the advance was lost: finish it
                self._advance(conn, tip["end_lsn"])
                confirmed = lsn_int(tip["end_lsn"])
            # Everything flushed before the peek is in its output (the peek reads to the flush position at its
            # start): when the output is whole, the slot may move there even if nothing in it was ours, so a quiet
            # database (or one busy only outside the publication) does not keep WAL for the slot.
            flushed, peeked_at = conn.execute("SELECT pg_current_wal_flush_lsn()::text, clock_timestamp()").fetchone()
            rows = conn.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, 'proto_version', '1', "
                "'publication_names', %s, 'messages', 'true')",
                (self.slot, self.max_changes, self.publication)).fetchall()
            decoder, transactions = Decoder(), []
            for (data,) in rows:
                if (done := decoder.feed(data)) is not None and done.end_lsn > confirmed:
                    transactions.append(done)
            whole = len(rows) < self.max_changes  # everything committed before peeked_at was returned
            kept = [t for t in transactions if t.changes]
            end_lsn = transactions[-1].end_lsn if transactions else confirmed
            if whole:
                end_lsn = max(end_lsn, lsn_int(flushed))
            manifest, lag = tip, None
            if kept:
                manifest = self._write_segment(chain, tip, lsn_text(confirmed), lsn_text(kept[-1].end_lsn), kept)
                lag = (datetime.now(UTC) - kept[0].commit_time).total_seconds()
            if end_lsn > confirmed:
                self._advance(conn, lsn_text(end_lsn))
            self._progress(conn, chain.name, manifest, lsn_text(end_lsn),
                           peeked_at if whole else kept[-1].commit_time if kept else None, lag=lag, force=bool(kept))
            if not kept:
                return Drained(None, 0, 0, lsn_text(end_lsn), None)
            log.info("segment %d: %d transactions, %d changes, %s..%s, %d bytes", manifest["seq"],
                     manifest["transactions"], manifest["changes"], manifest["start_lsn"], manifest["end_lsn"],
                     manifest["byte_size"])
            done_at = datetime.now(UTC)
            return Drained(manifest["seq"], manifest["transactions"], manifest["changes"], lsn_text(end_lsn), lag,
                           [(done_at - t.commit_time).total_seconds() for t in kept])

    def refuse_lost_slot(self, conn) -> None:
        """A slot the server invalidated gives no more changes, ever: the chain is marked broken (db_health
        breaches) and the drain fails for good at once, naming what to do."""
        state = budget.slot_state(conn, self.slot)
        if reason := budget.lost_reason(state):
            budget.mark_broken(conn, state, reason)
            raise chains.ChainError(
                f"{reason}; every commit up to {state['drained_at']} is archived, the ones after are gone from the "
                "archive: take a base backup now, then drop the slot (change_archive_setup starts a new chain), "
                "and keep the archive drained well within max_slot_wal_keep_size")

    def check_anchor(self, conn, chain: chains.Chain) -> None:
        """Refuse to extend ``chain`` unless the bucket holds at least what the database recorded as archived
        (``coldcopy_ops.change_archive``: chain, newest segment and its hash). Someone who can only delete
        objects could otherwise remove the newest segment, its manifest and the tip: the slot has moved past
        those transactions, the next drain reused the number, linked to the segment before, and the chain
        looked whole without them; deleting a whole newest chain made the archiver fall back to an older one
        and extend it across the gap. The refusal is recorded for db_health and raised (the task alerts)."""
        problem = chain.anchor_gap(chains.recorded_anchor(conn, self.slot), newest_for_slot=self.slot)
        if problem is None:
            return
        conn.execute("UPDATE coldcopy_ops.change_archive SET anchor_problem = %s, anchor_problem_at = now() "
                     "WHERE slot = %s", (problem, self.slot))
        self._chain = None
        raise chains.ChainError(f"refusing to extend the change archive: {problem}; the transactions in the gap "
                                "are no longer in the slot: take a base backup now, then drop the slot "
                                "(change_archive_setup starts a new chain)")

    def _progress(self, conn, chain: str, tip: dict | None, end_lsn: str, drained_at: datetime, *,
                  lag: float | None = None, force: bool = False) -> None:
        """Record that every commit before ``drained_at`` is in a verified segment: in the database (what
        db_health reads for the lag) and, signed, in the bucket (at most every ``tip_every_s``: without it a
        quiet hour would look like an archive that stopped)."""
        seq = tip["seq"] if tip else 0
        if drained_at is None:
            return
        digest = chains.segment_hash(tip) if tip else None
        conn.execute(
            "INSERT INTO coldcopy_ops.change_archive (slot, chain, seq, end_lsn, drained_at, last_lag_s, "
            "segment_hash) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (slot) DO UPDATE SET "
            "chain = EXCLUDED.chain, seq = EXCLUDED.seq, end_lsn = EXCLUDED.end_lsn, drained_at = EXCLUDED.drained_at, "
            "segment_hash = EXCLUDED.segment_hash, anchor_problem = NULL, anchor_problem_at = NULL, "
            "last_lag_s = coalesce(EXCLUDED.last_lag_s, change_archive.last_lag_s), updated_at = now(), "
            "broken_at = CASE WHEN change_archive.chain = EXCLUDED.chain THEN change_archive.broken_at END, "
            "broken_reason = CASE WHEN change_archive.chain = EXCLUDED.chain THEN change_archive.broken_reason END",
            (self.slot, chain, seq, end_lsn, drained_at, lag, digest))
        if not force and time.monotonic() - self._tip_written < self.tip_every_s:
            return
        document = {"chain": chain, "seq": tip["seq"] if tip else 0, "segment_hash": digest, "end_lsn": end_lsn,
                    "drained_at": drained_at.astimezone(UTC).isoformat()}
        self.bucket.put(f"{chains.PREFIX}/{chain}/tip.json", manifests.dump(document, self.keyring, type="tip"),
                        "application/json")
        self._tip_written = time.monotonic()

    def _confirmed(self, conn) -> str | None:
        """Where the slot stands (``None``: there is no slot)."""
        row = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (self.slot,)).fetchone()
        return row[0] if row else None

    def _advance(self, conn, lsn: str) -> None:
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, lsn))

    def _write_segment(self, chain: chains.Chain, tip: dict | None, start_lsn: str, end_lsn: str,
                       transactions) -> dict:
        seq = tip["seq"] + 1 if tip else 1
        key = chains.segment_key(chain.name, seq)
        documents = [t.as_json() for t in transactions]
        body = gpg_symmetric(gzip.compress(b"\n".join(map(msgspec.json.encode, documents)), compresslevel=6),
                             self.passphrase, "--compress-algo", "none")
        counts = chains.count_changes(documents)
        manifest = {
            "chain": chain.name, "seq": seq, "prev_hash": chains.segment_hash(tip) if tip else None,
            "start_lsn": start_lsn, "end_lsn": end_lsn,
            "first_commit": documents[0]["commit_time"], "last_commit": documents[-1]["commit_time"],
            "transactions": len(documents), "changes": sum(sum(c.values()) for c in counts.values()),
            "tables": counts, "object_key": key, "byte_size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(), "format": SEGMENT_FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.bucket.put(key, body, "application/pgp-encrypted")
        signed = manifests.dump(manifest, self.keyring, type="segment")
        stored = manifests.load(signed, self.keyring, where=key, type="segment")  # what the chain will hold
        # read back before the manifest makes it part of the chain (and before the slot lets the WAL go)
        chains.read_segment(self.bucket, stored, self.passphrase)
        self.bucket.put(chains.manifest_key(key), signed, "application/json")
        chain.segments.append(stored)
        written = self.bucket.client.head_object(Bucket=self.bucket.name, Key=chains.manifest_key(key))
        self._seen[chains.manifest_key(key)] = (written["ETag"], written["ContentLength"])
        return stored

    def run(self, *, until: float, every_s: float = 5.0, sleep=time.sleep) -> list[Drained]:
        """Drain every ``every_s`` seconds until the monotonic time ``until`` (one Airflow task's hour)."""
        done = []
        while True:
            drained = self.drain_once()
            if drained.seq is not None:
                done.append(drained)
            if time.monotonic() + every_s >= until:
                return done
            if drained.transactions == 0 or drained.changes < self.max_changes:
                sleep(every_s)
