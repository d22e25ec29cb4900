"""Refreshing a materialized view: decide whether it is needed, refresh without blocking readers, log it.

Decision, in order (each outcome goes to ``coldcopy_ops.mv_refresh_log`` with its reason):

1. never populated (created ``WITH NO DATA``) → plain ``REFRESH`` (CONCURRENTLY needs a populated view;
   nobody can be reading an unpopulated one);
2. a successful refresh started at or after the time this run stands for (the end of its data interval;
   for a manual run, its logical date) → **skip**: covered (backfills and catch-up runs of past
   intervals cost one refresh, not one each);
3. the view depends on the clock (``now()``, ``current_date``…) → refresh: its content moves with time;
4. no committed change in any source table since the snapshot of the last refresh → **skip**;
5. otherwise → ``REFRESH MATERIALIZED VIEW CONCURRENTLY`` under ``lock_timeout`` with retries.

The analytics summaries that replaced five of the views (migration 305) are maintained incrementally
instead (:mod:`coldcopy.refresh.incremental`); :func:`coldcopy.refresh.dispatch.refresher_for` picks the refresher
of either kind.

Source changes are recorded by a statement-level trigger per source table (and per partition) that
inserts ``(table, transaction id)`` into ``coldcopy_ops.source_changes``. A change counts as covered
when its transaction is visible in the snapshot the refresh took before it ran, so a write committed
while a refresh was running is never lost: the next run refreshes again.
"""

from __future__ import annotations

import logging
import re
import time

import psycopg
from psycopg import sql

from coldcopy import ops_schema, safe_names
from coldcopy.change_tracking import TRACKING_TRIGGER, create_tracking_trigger, record_change
from coldcopy.failure_reasons import reason_of
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.refresh.runs import CHANGE_RETENTION, RefreshOutcome, RefreshRun, covered, last_refresh, log_outcome

log = logging.getLogger(__name__)

_CLOCK_FUNCTIONS = re.compile(
    r"\b(now\(\)|current_date|current_timestamp|localtimestamp|clock_timestamp\(\)|statement_timestamp\(\)"
    r"|transaction_timestamp\(\))", re.IGNORECASE,
)


class MaterializedViewRefresher:
    """Refreshes one materialized view on the given (autocommit) connection.

    :param view: schema-qualified name, e.g. ``analytics.campaign_analytics``.
    :param lock_retry: lock_timeout and retry schedule for taking the view's lock.
    :param statement_timeout: ceiling for the refresh statement.
    :param force: refresh even when nothing changed (interval coverage still applies).
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        view: str,
        *,
        lock_retry: LockRetryPolicy = LockRetryPolicy(),
        statement_timeout: str = "30min",
        force: bool = False,
    ) -> None:
        self.conn = conn
        self.view = view
        self.lock_retry = lock_retry
        self.statement_timeout = statement_timeout
        self.force = force
        try:
            self.identifier = safe_names.relation(conn, view, kinds=("m",))  # the catalog's name, never the caller's
        except safe_names.UnknownRelation as error:
            raise ValueError(f"{view}: no such materialized view ({error})") from error
        self.oid = conn.execute("SELECT %s::regclass::oid", (self.identifier.as_string(conn),)).fetchone()[0]

    # -- facts about the view -------------------------------------------------------------------------

    def sources(self) -> list[int]:
        """OIDs of the tables the view reads, from its rewrite rule's dependencies."""
        rows = self.conn.execute(
            "SELECT DISTINCT d.refobjid FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid "
            "JOIN pg_class c ON c.oid = d.refobjid "
            "WHERE r.ev_class = %s AND d.refobjid <> %s AND c.relkind IN ('r', 'p') ORDER BY 1",
            (self.oid, self.oid),
        ).fetchall()
        return [r[0] for r in rows]

    def is_populated(self) -> bool:
        return self.conn.execute("SELECT relispopulated FROM pg_class WHERE oid = %s", (self.oid,)).fetchone()[0]

    def depends_on_clock(self) -> bool:
        definition = self.conn.execute("SELECT pg_get_viewdef(%s)", (self.oid,)).fetchone()[0]
        return bool(_CLOCK_FUNCTIONS.search(definition))

    def has_unique_plain_index(self) -> bool:
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %s AND indisunique AND indisvalid "
            "AND indpred IS NULL AND indexprs IS NULL)", (self.oid,),
        ).fetchone()[0]

    # -- change tracking -------------------------------------------------------------------------------

    def ensure_change_tracking(self) -> list[str]:
        """Install the change trigger on every source table and partition that lacks it; returns them.

        A newly tracked table also gets a change row: what happened before the trigger existed is unknown.
        """
        ops_schema.ensure(self.conn, "refresh_tracking")
        missing = self.conn.execute(
            "SELECT DISTINCT t.oid, t.oid::regclass::text FROM unnest(%s::oid[]) AS s (relid) "
            "CROSS JOIN LATERAL (SELECT s.relid UNION SELECT relid FROM pg_partition_tree(s.relid)) AS tree "
            "JOIN pg_class t ON t.oid = tree.relid "
            "WHERE t.relkind IN ('r', 'p') AND NOT EXISTS (SELECT 1 FROM pg_trigger g "
            "  WHERE g.tgrelid = t.oid AND g.tgname = %s)",
            (self.sources(), TRACKING_TRIGGER),
        ).fetchall()
        installed = []
        for relid, name in missing:

            def install(relid=relid, name=name) -> bool:
                if not create_tracking_trigger(self.conn, relid):
                    return False  # another task installed it meanwhile
                record_change(self.conn, name)
                return True

            if under_lock_timeout(self.conn, install, self.lock_retry, what=f"change tracking on {name}"):
                log.info("%s: change tracking installed on %s", self.view, name)
                installed.append(name)
        return installed

    def last_refresh(self) -> tuple | None:
        return last_refresh(self.conn, self.view)

    def changed_since(self, snapshot) -> bool:
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM coldcopy_ops.source_changes "
            "WHERE relid = ANY(%s) AND NOT pg_visible_in_snapshot(txid, %s::pg_snapshot))",
            (self.sources(), snapshot),
        ).fetchone()[0]

    # -- the refresh ------------------------------------------------------------------------------------

    def decide(self, run: RefreshRun) -> tuple[str | None, str]:
        """``(mode, reason)``; ``mode`` None means skip."""
        if not self.is_populated():
            return "plain", "never populated: a plain refresh fills it (CONCURRENTLY needs a populated view)"
        last = self.last_refresh()
        if covered(last, run):
            return None, covered(last, run)
        if not self.has_unique_plain_index():
            raise ValueError(f"{self.view}: REFRESH CONCURRENTLY needs a unique index on plain columns")
        if self.force:
            return "concurrent", "forced"
        if self.depends_on_clock():
            return "concurrent", "the view depends on the clock (now()/current_date): refreshed every run"
        if last is None:
            return "concurrent", "no earlier successful refresh on record"
        if not last[3]:
            return "concurrent", f"last refresh older than the change-tracking retention ({CHANGE_RETENTION})"
        if self.changed_since(last[2]):
            return "concurrent", f"source tables changed since the refresh at {last[0].isoformat()}"
        return None, f"no source table changed since the refresh at {last[0].isoformat()} (run {last[1]})"

    def run(self, run: RefreshRun) -> RefreshOutcome:
        self.ensure_change_tracking()
        started = time.monotonic()
        started_at = self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        try:
            mode, reason = self.decide(run)
            outcome = RefreshOutcome(self.view, "skipped" if mode is None else "refreshed", reason, mode)
            snapshot = None
            if mode is not None:
                snapshot, outcome.row_count = under_lock_timeout(
                    self.conn, lambda: self._refresh(mode), self.lock_retry, what=f"refresh of {self.view}",
                    statement_timeout=self.statement_timeout)
        except Exception as error:
            # reason_of: class and first line only; PostgreSQL's DETAIL lines can quote row values.
            self._log(run, started_at, started, RefreshOutcome(self.view, "failed", reason_of(error)[:2000]), None)
            raise
        self._log(run, started_at, started, outcome, snapshot)
        self.conn.execute("DELETE FROM coldcopy_ops.source_changes WHERE changed_at < now() - %s::interval",
                          (CHANGE_RETENTION,))
        log.info("%s: %s (%s) in %d ms — %s", self.view, outcome.action, outcome.mode or "-",
                 outcome.duration_ms, outcome.reason)
        return outcome

    def _refresh(self, mode: str):
        """In the caller's transaction: ``(snapshot before the refresh, rows after it)``."""
        statement = sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(
            sql.SQL("CONCURRENTLY " if mode == "concurrent" else ""), self.identifier
        )
        # Taken before the refresh's own snapshot, so it can only under-state what the refresh saw.
        snapshot = self.conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        self.conn.execute(statement)
        rows = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.identifier)).fetchone()[0]
        return snapshot, rows

    def _log(self, run: RefreshRun, started_at, started: float, outcome: RefreshOutcome, snapshot) -> None:
        log_outcome(self.conn, run, started_at, started, outcome, snapshot)
