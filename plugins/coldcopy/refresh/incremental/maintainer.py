"""Applying a summary's pending changes, rebuilding it, verifying it (see the package's docstring)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.summaries import SUMMARIES

log = logging.getLogger(__name__)

_PENDING = ("(SELECT * FROM coldcopy_ops.{} WHERE txid >= pg_snapshot_xmin(%(since)s::pg_snapshot) "
            "AND NOT pg_visible_in_snapshot(txid, %(since)s::pg_snapshot))")
_IDENTITY = (
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
    "THEN (SELECT system_identifier::text FROM pg_control_system()) ELSE '?' END || ':' || "
    "(SELECT oid::text FROM pg_database WHERE datname = current_database())")


# An apply recomputing more than this share of a summary's groups rebuilds it instead: one pass over the
# definition costs less than that many filtered ones (bench/incremental.py's mixed changes).
REBUILD_SHARE = 0.25


class SummaryBusy(RuntimeError):
    """Another session is applying this summary."""


@dataclass
class Verified:
    summary: str
    rows: int
    missing: int  # rows of the definition the summary lacked
    extra: int  # rows of the summary the definition lacks
    repaired: bool
    duration_ms: int

    @property
    def equal(self) -> bool:
        return self.missing == 0 and self.extra == 0


@dataclass
class Applied:
    summary: str
    mode: str  # incremental | rebuild
    reason: str
    groups: int  # groups recomputed (incremental) or rows written (rebuild)
    snapshot: str
    verified: Verified | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class SummaryMaintainer:
    """Maintains the summary ``name`` (one of :data:`SUMMARIES`) on the autocommit connection ``conn``.

    One session applies a summary at a time (its row of ``coldcopy_ops.ivm_apply_locks`` locked for the
    transaction, which only the ops role may lock; a second one fails with :class:`SummaryBusy` at once rather
    than queue). Each apply is one REPEATABLE READ transaction under
    ``lock_timeout`` with retries: it takes row locks on the groups it replaces only (ROW EXCLUSIVE on the
    summary, which no reader's lock conflicts with).
    """

    def __init__(self, conn: psycopg.Connection, name: str, *, lock_retry: LockRetryPolicy = LockRetryPolicy(),
                 statement_timeout: str = "30min") -> None:
        if name not in SUMMARIES:
            raise ValueError(f"{name}: not an incrementally maintained summary (those: {', '.join(SUMMARIES)})")
        self.conn, self.summary = conn, SUMMARIES[name]
        self.lock_retry, self.statement_timeout = lock_retry, statement_timeout
        self.table = sql.Identifier(self.summary.schema, self.summary.table)
        self.definition = sql.Identifier(self.summary.schema, f"{self.summary.table}_definition")

    # -- facts -------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Checksum of what the summary is computed by: the definition as the database holds it, and the key query."""
        definition = self.conn.execute("SELECT pg_get_viewdef(%s::regclass)", (self.summary.definition,)).fetchone()[0]
        return hashlib.sha256((definition + "\0" + self.summary.keys_sql()).encode()).hexdigest()

    def uncaptured_sources(self) -> list[str]:
        """Tables the definition reads that the summary captures no change of (a migration added one)."""
        rows = self.conn.execute(
            "SELECT DISTINCT d.refobjid::regclass::text FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid "
            "AND d.classid = 'pg_rewrite'::regclass JOIN pg_class c ON c.oid = d.refobjid "
            "WHERE r.ev_class = %s::regclass AND c.relkind IN ('r', 'p', 'v', 'm') AND d.refobjid <> r.ev_class",
            (self.summary.definition,)).fetchall()
        declared = {self.conn.execute("SELECT %s::regclass::text", (s,)).fetchone()[0] for s in self.summary.sources}
        return sorted({r for (r,) in rows} - declared)

    def state(self) -> dict | None:
        row = self.conn.execute(
            "SELECT watermark::text, clock_at, definition_sha, db_identity, rebuilt_at, applied_at "
            "FROM coldcopy_ops.ivm_state WHERE summary = %s", (self.summary.name,)).fetchone()
        names = ("watermark", "clock_at", "definition_sha", "db_identity", "rebuilt_at", "applied_at")
        return dict(zip(names, row, strict=True)) if row else None

    def _rebuild_reason(self, state: dict | None, force: bool, fingerprint: str, identity: str) -> str | None:
        if force:
            return "forced"
        if due := capture.due(self.conn, self.summary.name):
            return f"changes went uncaptured: {due}"
        if state is None:
            return "no state on record: first build, or a source's capture was (re)installed"
        if state["definition_sha"] != fingerprint:
            return "its definition changed since it was built (a migration)"
        if state["db_identity"] != identity:
            return "its state was recorded in another cluster or database (a restore)"
        uncaptured = self.uncaptured_sources()
        if uncaptured:
            return (f"its definition reads {', '.join(uncaptured)}, whose changes nothing captures: rebuilt on "
                    "every refresh until coldcopy.refresh.incremental.summaries declares it")
        return None

    # -- apply -------------------------------------------------------------------------------------------

    def apply(self, *, force: bool = False, before_commit: Callable[[], None] | None = None,
              verify: Callable[[], Verified] | None = None) -> Applied:
        """Bring the summary up to the current snapshot; ``verify`` runs in the same transaction after it."""
        capture.ensure(self.conn, self.summary, self.lock_retry)

        def work():
            # A row lock: safe through a transaction pooler, gone with the transaction however it ends, and
            # (unlike an advisory lock's key) out of reach of any login without UPDATE on the table.
            if not self.conn.execute("SELECT 1 FROM coldcopy_ops.ivm_apply_locks WHERE summary = %s FOR UPDATE "
                                     "SKIP LOCKED", (self.summary.name,)).fetchone():
                raise SummaryBusy(f"{self.summary.name}: another session is applying it")
            applied = self._apply(force)
            if verify is not None:
                applied.verified = verify()
            if before_commit is not None:
                before_commit()
            return applied

        try:
            return under_lock_timeout(self.conn, work, self.lock_retry, what=f"apply of {self.summary.name}",
                                      statement_timeout=self.statement_timeout, isolation="repeatable read")
        except psycopg.errors.SerializationFailure as error:
            # Our snapshot predates the commit of an apply that held the lock a moment before: it applied.
            raise SummaryBusy(f"{self.summary.name}: another session applied it meanwhile ({error})") from error

    def _apply(self, force: bool) -> Applied:
        conn = self.conn
        conn.execute("SET LOCAL TimeZone = 'UTC'")  # the definition's day windows start at a UTC midnight
        snapshot = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        state, fingerprint = self.state(), self.fingerprint()
        identity = conn.execute(_IDENTITY).fetchone()[0]
        reason = self._rebuild_reason(state, force, fingerprint, identity)
        if state is not None and state["db_identity"] != identity:
            self._forget_foreign_state()
        groups = self._apply_changes(state) if reason is None else None
        if groups is None:
            reason = reason or f"more than {REBUILD_SHARE:.0%} of its groups changed: a rebuild costs less"
            conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS SELECT * FROM {}").format(
                self.definition))
            groups = self.replace_with_truth()[0]
            conn.execute("DROP TABLE ivm_truth")
            conn.execute("DELETE FROM coldcopy_ops.ivm_rebuild_due WHERE summary = %s", (self.summary.name,))
            applied = Applied(self.summary.name, "rebuild", reason, groups, snapshot)
        else:
            applied = Applied(self.summary.name, "incremental",
                              f"{groups} group(s) changed since the apply at {state['applied_at'].isoformat()}",
                              groups, snapshot)
        conn.execute(
            "INSERT INTO coldcopy_ops.ivm_state AS s (summary, watermark, clock_at, definition_sha, db_identity, "
            "rebuilt_at, applied_at, groups_applied) VALUES (%(s)s, %(w)s::pg_snapshot, now(), %(f)s, %(i)s, "
            "now(), clock_timestamp(), %(g)s) ON CONFLICT (summary) DO UPDATE SET "
            "watermark = EXCLUDED.watermark, clock_at = EXCLUDED.clock_at, definition_sha = EXCLUDED.definition_sha, "
            "db_identity = EXCLUDED.db_identity, "
            "rebuilt_at = CASE WHEN %(rebuilt)s THEN EXCLUDED.rebuilt_at ELSE s.rebuilt_at END, "
            "applied_at = EXCLUDED.applied_at, groups_applied = EXCLUDED.groups_applied",
            {"s": self.summary.name, "w": snapshot, "f": fingerprint, "i": identity,
             "rebuilt": applied.mode == "rebuild", "g": groups})
        return applied

    def replace_with_truth(self) -> tuple[int, int]:
        """Make the summary equal ``ivm_truth`` (the definition, materialized in this transaction) writing only
        what differs, as ``REFRESH … CONCURRENTLY`` does: delete the summary's rows that are not in it (by
        key), insert its rows that are not in the summary. Returns ``(rows of the definition, rows written)``.
        No lock a reader waits on (never TRUNCATE)."""
        conn, columns = self.conn, [sql.Identifier(k) for k in self.summary.key]
        same = sql.SQL(" AND ").join(sql.SQL("t.{0} = d.{0}").format(c) for c in columns)
        deleted = conn.execute(sql.SQL(
            "DELETE FROM {s} t USING (SELECT {k} FROM (TABLE {s} EXCEPT ALL TABLE ivm_truth) x) d WHERE {same}").format(
            s=self.table, k=sql.SQL(", ").join(columns), same=same)).rowcount
        inserted = conn.execute(sql.SQL("INSERT INTO {s} SELECT * FROM (TABLE ivm_truth EXCEPT ALL TABLE {s}) x")
                                .format(s=self.table)).rowcount
        if deleted + inserted:
            conn.execute(sql.SQL("ANALYZE {}").format(self.table))
        return conn.execute("SELECT count(*) FROM ivm_truth").fetchone()[0], deleted + inserted

    def _forget_foreign_state(self) -> None:
        """The state came from another cluster or database (a restore): every summary's watermark and every
        captured key came with it, in transaction ids that mean nothing here. All go (what this database's own
        writers captured since our snapshot stays); every summary rebuilds. Erased subjects' ids go with them."""
        from coldcopy.refresh.incremental.summaries import CAPTURES

        self.conn.execute("DELETE FROM coldcopy_ops.ivm_state WHERE summary <> %s", (self.summary.name,))
        for c in CAPTURES.values():
            self.conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("coldcopy_ops", c.delta)))

    def _rows_estimate(self) -> float:
        """The planner's row count of the summary (its exact count if it was never analyzed)."""
        estimate = self.conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                                     (self.summary.name,)).fetchone()[0]
        return estimate if estimate >= 0 else self.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(self.table)).fetchone()[0]

    def _apply_changes(self, state: dict) -> int | None:
        """Replace the changed groups; returns how many, or None when so many changed that a rebuild is cheaper."""
        conn, key = self.conn, self.summary.key
        pending = {c.table.split(".")[1]: sql.SQL(_PENDING.format(c.delta)) for c in self.summary.captures()}
        keys = sql.SQL(self.summary.keys_sql()).format(previous_clock=sql.SQL("%(previous_clock)s::timestamptz"),
                                                       **pending)
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_keys ON COMMIT DROP AS {}").format(keys),
                     {"since": state["watermark"], "previous_clock": state["clock_at"]})
        groups = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        if groups == 0:
            return 0
        conn.execute("ANALYZE ivm_keys")
        if groups > REBUILD_SHARE * self._rows_estimate():
            conn.execute("DROP TABLE ivm_keys")
            return None  # most groups changed: recomputing them one by one costs more than the whole definition
        columns = [sql.Identifier(k) for k in key]
        same = sql.SQL(" AND ").join(sql.SQL("{0}.{1} = k.{1}").format(sql.Identifier("t"), c) for c in columns)
        conn.execute(sql.SQL("DELETE FROM {} t USING ivm_keys k WHERE {}").format(self.table, same))
        # Each key column as an array the planner pushes into the definition (to the base tables' indexes);
        # the EXISTS keeps exactly the changed groups of that superset.
        narrowed = sql.SQL(" AND ").join(
            sql.SQL("t.{0} = ANY(ARRAY(SELECT DISTINCT k.{0} FROM ivm_keys k))").format(c) for c in columns)
        conn.execute(sql.SQL("INSERT INTO {} SELECT t.* FROM {} t WHERE {} AND EXISTS "
                             "(SELECT 1 FROM ivm_keys k WHERE {})").format(self.table, self.definition, narrowed, same))
        conn.execute("DROP TABLE ivm_keys")
        return groups

    def prune(self) -> int:
        """Delete the captured keys every summary reading their source has applied; returns how many."""
        deleted = 0
        for c in self.summary.captures():
            readers = [s.name for s in SUMMARIES.values() if c.table in s.sources]
            row = self.conn.execute(
                "SELECT count(*) = %s, min(pg_snapshot_xmin(watermark)) FROM coldcopy_ops.ivm_state "
                "WHERE summary = ANY(%s) AND db_identity = (" + _IDENTITY + ")", (len(readers), readers)).fetchone()
            if row[0] and row[1] is not None:
                # Every key each reader's watermark sees: those before the oldest xmin, and those committed
                # before a watermark that a transaction still running elsewhere in the cluster (any database)
                # held below its xmin (an erased person's keys stayed until it ended).
                deleted += self.conn.execute(sql.SQL(
                    "DELETE FROM {} d WHERE d.txid < %s OR NOT EXISTS (SELECT FROM coldcopy_ops.ivm_state s "
                    "WHERE s.summary = ANY(%s) AND NOT pg_visible_in_snapshot(d.txid, s.watermark))").format(
                    sql.Identifier("coldcopy_ops", c.delta)), (row[1], readers)).rowcount
        return deleted

    # -- verify ------------------------------------------------------------------------------------------

    def verify(self, *, repair: bool = True) -> Verified:
        """Apply, then compare the summary with its definition on the same snapshot and clock (EXCEPT ALL both
        ways); a difference is repaired in that transaction when ``repair``. Recorded in ivm_verifications."""
        started = time.monotonic()

        def compare() -> Verified:
            conn = self.conn
            conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS SELECT * FROM {}").format(
                self.definition))
            missing = conn.execute(sql.SQL("SELECT count(*) FROM (TABLE ivm_truth EXCEPT ALL TABLE {}) d").format(
                self.table)).fetchone()[0]
            extra = conn.execute(sql.SQL("SELECT count(*) FROM (TABLE {} EXCEPT ALL TABLE ivm_truth) d").format(
                self.table)).fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM ivm_truth").fetchone()[0]
            repaired = bool((missing or extra) and repair)
            if repaired:
                self.replace_with_truth()
            conn.execute("DROP TABLE ivm_truth")
            result = Verified(self.summary.name, rows, missing, extra, repaired,
                              int((time.monotonic() - started) * 1000))
            conn.execute("INSERT INTO coldcopy_ops.ivm_verifications (summary, duration_ms, summary_rows, "
                         "missing_rows, extra_rows, repaired) VALUES (%s, %s, %s, %s, %s, %s)",
                         (result.summary, result.duration_ms, rows, missing, extra, repaired))
            return result

        return self.apply(verify=compare).verified
