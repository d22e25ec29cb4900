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
from coldcopy.refresh.incremental.aggregates import AGGREGATES
from coldcopy.refresh.incremental.appliers import applier_for
from coldcopy.refresh.incremental.delta import Inconsistent
from coldcopy.refresh.incremental.groups import GroupApplier
from coldcopy.refresh.incremental.replacement import replace_from
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.refresh.incremental.verification import Verified, compare

log = logging.getLogger(__name__)

_IDENTITY = (
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
    "THEN (SELECT system_identifier::text FROM pg_control_system()) ELSE '?' END || ':' || "
    "(SELECT oid::text FROM pg_database WHERE datname = current_database())")


# An apply recomputing more than this share of a summary's groups rebuilds it instead: one pass over the
# definition costs less than that many filtered ones (bench/incremental.py's mixed changes).
REBUILD_SHARE = 0.25
# A delta apply with more captured rows than this share of email_events' rows builds the state again instead:
# at about 90 µs per captured row for the five summaries, a full pass costs less past a tenth of the table
# (bench/incremental.py, mixed 10 % at scale 8: 3.2 s applied vs 3.0 s in full).
DELTA_REBUILD_SHARE = 0.1


class SummaryBusy(RuntimeError):
    """Another session is applying this summary."""


@dataclass
class Applied:
    summary: str
    mode: str  # incremental | rebuild
    reason: str
    groups: int  # groups recomputed or whose state moved (incremental), or rows written (rebuild)
    snapshot: str
    method: str = "groups"  # delta: the aggregate state's signed deltas; groups: changed groups recomputed
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
        self.aggregate = AGGREGATES.get(name)

    # -- facts -------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Checksum of what the summary is computed by: the definition as the database holds it, and the key query."""
        definition = self.conn.execute("SELECT pg_get_viewdef(%s::regclass)", (self.summary.definition,)).fetchone()[0]
        return hashlib.sha256((definition + "\0" + self.summary.keys_sql() + "\0" + repr(self.aggregate)).encode()
                              ).hexdigest()

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
            "SELECT watermark::text, clock_at, definition_sha, db_identity, rebuilt_at, applied_at, method "
            "FROM coldcopy_ops.ivm_state WHERE summary = %s", (self.summary.name,)).fetchone()
        names = ("watermark", "clock_at", "definition_sha", "db_identity", "rebuilt_at", "applied_at", "method")
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
        method = state["method"] if state is not None and reason is None else "groups"
        groups = None
        if reason is None:
            try:
                groups = (self._apply_deltas(state) if method == "delta"
                          else GroupApplier(conn, self.summary, REBUILD_SHARE).apply(state))
            except Inconsistent as error:
                reason = f"{error}: rebuilt"
        if groups is None:
            reason = reason or (f"more than {DELTA_REBUILD_SHARE:.0%} of its source rows" if method == "delta" else
                                f"more than {REBUILD_SHARE:.0%} of its groups") + " changed: a rebuild costs less"
            method = self._rebuild(trusted=state is not None and state["method"] == "delta"
                                   and state["definition_sha"] == fingerprint and state["db_identity"] == identity)
            groups = self.replace_with_truth()[0]
            conn.execute("DROP TABLE ivm_truth")
            conn.execute("DELETE FROM coldcopy_ops.ivm_rebuild_due WHERE summary = %s", (self.summary.name,))
            applied = Applied(self.summary.name, "rebuild", reason, groups, snapshot, method)
        else:
            applied = Applied(self.summary.name, "incremental",
                              f"{groups} group(s) changed since the apply at {state['applied_at'].isoformat()}",
                              groups, snapshot, method)
        conn.execute(
            "INSERT INTO coldcopy_ops.ivm_state AS s (summary, watermark, clock_at, definition_sha, db_identity, "
            "rebuilt_at, applied_at, groups_applied, method) VALUES (%(s)s, %(w)s::pg_snapshot, now(), %(f)s, "
            "%(i)s, now(), clock_timestamp(), %(g)s, %(m)s) ON CONFLICT (summary) DO UPDATE SET "
            "watermark = EXCLUDED.watermark, clock_at = EXCLUDED.clock_at, definition_sha = EXCLUDED.definition_sha, "
            "db_identity = EXCLUDED.db_identity, method = EXCLUDED.method, "
            "rebuilt_at = CASE WHEN %(rebuilt)s THEN EXCLUDED.rebuilt_at ELSE s.rebuilt_at END, "
            "applied_at = EXCLUDED.applied_at, groups_applied = EXCLUDED.groups_applied",
            {"s": self.summary.name, "w": snapshot, "f": fingerprint, "i": identity,
             "rebuilt": applied.mode == "rebuild", "g": groups, "m": applied.method})
        return applied

    def _rebuild(self, *, trusted: bool) -> str:
        """``ivm_truth`` (temp): the summary as a rebuild makes it; returns the method of its next applies. A summary
        with an aggregate state is rebuilt from it, once proven equal to the definition (on its first build, and
        when its definition, its aggregate or its database changed); else from the definition."""
        conn = self.conn
        if self.aggregate is not None:
            try:
                applier_for(conn, self.aggregate).build_truth()
            except ValueError as error:  # the summary's columns are not the aggregate's any more
                log.warning("%s: %s; maintained by groups until coldcopy.refresh.incremental.aggregates says how",
                            self.summary.name, error)
            else:
                if trusted or self._truth_is_the_definition():
                    return "delta"
                log.warning("%s: its aggregate state does not give the definition's rows (a migration changed the "
                            "definition): maintained by groups until coldcopy.refresh.incremental.aggregates "
                            "restates it", self.summary.name)
                conn.execute("DROP TABLE ivm_truth")
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS SELECT * FROM {}").format(self.definition))
        return "groups"

    def _truth_is_the_definition(self) -> bool:
        self.conn.execute(sql.SQL("CREATE TEMP TABLE ivm_definition ON COMMIT DROP AS SELECT * FROM {}").format(
            self.definition))
        differ = self.conn.execute("SELECT count(*) FROM ((TABLE ivm_truth EXCEPT ALL TABLE ivm_definition) UNION ALL "
                                   "(TABLE ivm_definition EXCEPT ALL TABLE ivm_truth)) x").fetchone()[0]
        self.conn.execute("DROP TABLE ivm_definition")
        return differ == 0

    def _apply_deltas(self, state: dict) -> int | None:
        """Add the captured event rows to the aggregate state; None when the change is larger than a rebuild."""
        conn = self.conn
        pending = capture.pending("ivm_delta_email_events")
        params = {"since": state["watermark"], "previous_clock": state["clock_at"]}
        changed = conn.execute(sql.SQL("SELECT count(*) FROM {} p").format(pending), params).fetchone()[0]
        rows = conn.execute("SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_inherits i JOIN pg_class c "
                            "ON c.oid = i.inhrelid WHERE i.inhparent = 'public.email_events'::regclass").fetchone()[0]
        if rows > 0 and changed > DELTA_REBUILD_SHARE * rows:
            return None
        day_moved = conn.execute("SELECT date_trunc('day', now()) IS DISTINCT FROM date_trunc('day', %s::timestamptz)",
                                 (state["clock_at"],)).fetchone()[0]
        return applier_for(conn, self.aggregate).apply(pending, params, day_moved=day_moved)

    def replace_with_truth(self) -> tuple[int, int]:
        """Make the summary equal ``ivm_truth`` (the definition, materialized in this transaction) writing only
        what differs, as ``REFRESH … CONCURRENTLY`` does: delete the summary's rows that are not in it (by
        key), insert its rows that are not in the summary. Returns ``(rows of the definition, rows written)``.
        No lock a reader waits on (never TRUNCATE)."""
        written = replace_from(self.conn, self.table, sql.Identifier("ivm_truth"), self.summary.key)
        return self.conn.execute("SELECT count(*) FROM ivm_truth").fetchone()[0], written

    def _forget_foreign_state(self) -> None:
        """The state came from another cluster or database (a restore): every summary's watermark and every
        captured key came with it, in transaction ids that mean nothing here. All go (what this database's own
        writers captured since our snapshot stays); every summary rebuilds. Erased subjects' ids go with them."""
        from coldcopy.refresh.incremental.summaries import CAPTURES

        self.conn.execute("DELETE FROM coldcopy_ops.ivm_state WHERE summary <> %s", (self.summary.name,))
        for c in CAPTURES.values():
            self.conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("coldcopy_ops", c.delta)))

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

    def verify(self, *, repair: bool = True) -> Verified:
        """Apply, then compare the summary with its definition on the same snapshot and clock
        (:mod:`coldcopy.refresh.incremental.verification`)."""
        return self.apply(verify=lambda: compare(self, repair=repair, started=time.monotonic())).verified
