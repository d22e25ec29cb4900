"""The dashboards an erasure reaches: the materialized views and incremental summaries reading the erased rows'
tables, refreshed at once so no dashboard keeps counting the people erased. Handed to
:class:`coldcopy.gdpr.Gdpr` by whoever builds one (it is :data:`coldcopy.gdpr.dashboards.DashboardsFor`)."""

from __future__ import annotations

import psycopg

from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun


class Dashboards:
    """Which views and summaries read a table, and their refresh after an erasure."""

    def __init__(self, conn: psycopg.Connection, lock_retry: LockRetryPolicy) -> None:
        self.conn, self.lock_retry = conn, lock_retry

    def views_reading(self, tables: list[str]) -> list[str]:
        """Materialized views and incremental summaries (through their definitions) that read any of ``tables``
        directly, to refresh after an erasure."""
        relids = [self.conn.execute("SELECT to_regclass(%s)::oid", (t,)).fetchone()[0] for t in tables]
        from coldcopy.refresh.incremental.summaries import SUMMARIES

        found = self.conn.execute("""
            SELECT DISTINCT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_rewrite r
            JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
            WHERE c.relkind IN ('m', 'v') AND d.refobjid = ANY(%s) ORDER BY 1""", ([r for r in relids if r],))
        return [name if kind == "m" else name.removesuffix("_definition") for name, kind in found
                if kind == "m" or name.removesuffix("_definition") in SUMMARIES]

    def refresh(self, views: list[str], run_id: str) -> None:
        """Refresh ``views`` now: a materialized view fully (forced), a summary by applying its captured changes
        (the erased rows' groups recomputed without them)."""
        from coldcopy.refresh.incremental.summaries import SUMMARIES

        for view in views:
            refresher_for(self.conn, view, lock_retry=self.lock_retry, force=view not in SUMMARIES).run(
                RefreshRun(run_id=run_id, dag_id="gdpr_requests"))
