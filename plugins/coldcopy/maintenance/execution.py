"""Execution: one target at a time outside a transaction block, under ``statement_timeout`` and a short
``lock_timeout`` retried with backoff; each action logged to ``coldcopy_ops.maintenance_log``."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import psycopg
from psycopg import sql

from coldcopy import safe_names
from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy, under_lock_timeout
from coldcopy.maintenance.targets import ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS, Done, Target
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Execution:
    """Runs targets on one autocommit connection and records what each did."""

    def __init__(self, conn: psycopg.Connection, *, statement_timeout: str, lock_retry: LockRetryPolicy,
                 dag_id: str | None, run_id: str | None) -> None:
        self.conn, self.statement_timeout, self.lock_retry = conn, statement_timeout, lock_retry
        self.dag_id, self.run_id = dag_id, run_id

    def size_of(self, relation: str) -> int:
        return self.conn.execute("SELECT pg_total_relation_size(%s::regclass)", (relation,)).fetchone()[0]

    def run(self, target: Target) -> Done:
        """Carry out one action; returns what it did after logging and recording it."""
        statement = {
            "vacuum": "VACUUM (ANALYZE) {}",
            "vacuum_freeze": "VACUUM (FREEZE, ANALYZE) {}",
            "vacuum_full": "VACUUM (FULL, ANALYZE) {}",
            "reindex": "REINDEX INDEX CONCURRENTLY {}",
            "analyze": "ANALYZE {}",
            "drop_invalid_index": "DROP INDEX CONCURRENTLY IF EXISTS {}",
        }[target.action]
        started, started_at = time.monotonic(), self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        schema, name = safe_names.relation_parts(  # the target arrives through XCom: only the catalog's name is used
            self.conn, target.name,
            kinds=(safe_names.INDEX_KINDS if target.action in ("reindex", "drop_invalid_index")
                   else safe_names.TABLE_KINDS))
        relation = sql.Identifier(schema, name)
        before = self.size_of(target.name) if target.action != "drop_invalid_index" else None


        policy = self.lock_retry
        if target.action == "vacuum_full":  # ACCESS EXCLUSIVE for the whole rewrite: never wait over 1 s for it
            policy = replace(policy, lock_timeout_ms=min(policy.lock_timeout_ms, ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS),
                             max_lock_timeout_ms=ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS)
        try:
            # VACUUM and … CONCURRENTLY refuse a transaction block.
            under_lock_timeout(self.conn, lambda: self.conn.execute(sql.SQL(statement).format(relation)), policy,
                               what=f"{target.action} {target.name}", transaction=False,
                               statement_timeout=self.statement_timeout)
            outcome, detail = "done", target.reason
        except LockRetriesExhausted as error:
            outcome, detail = "skipped", f"stayed locked, skipped this run: {error}"
            log.warning("%s %s: %s", target.action, target.name, detail)
        except Exception:
            if target.action == "reindex":
                self._drop_ccnew_of(schema, name)
            raise
        if outcome == "skipped" and target.action == "reindex":
            self._drop_ccnew_of(schema, name)
        step(f"maintenance.{target.action}")  # done (or skipped), not yet logged
        after = self.size_of(target.name) if outcome == "done" and before is not None else None
        self.record(target.action, target.name, started_at, started, outcome, detail, before, after)
        return Done(outcome, detail, before, after, time.monotonic() - started)

    def _drop_ccnew_of(self, schema: str, name: str) -> None:
        """A failed ``REINDEX … CONCURRENTLY`` leaves an INVALID ``<index>_ccnew`` that every write still
        maintains: drop it now, not at next week's cleanup."""
        leftovers = self.conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND n.nspname = %s "
            "AND c.relname LIKE %s", (schema, name[:59].replace("_", "\\_") + "\\_ccnew%")).fetchall()
        for (leftover,) in leftovers:
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, leftover)))
            log.warning("dropped %s.%s, left INVALID by the failed REINDEX CONCURRENTLY", schema, leftover)

    def record(self, action: str, target: str, started_at, started: float, outcome: str, detail: str,
               before: int | None = None, after: int | None = None) -> None:
        self.conn.execute(
            "INSERT INTO coldcopy_ops.maintenance_log (action, target, dag_id, run_id, started_at, duration_ms, "
            "size_before, size_after, outcome, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (action, target, self.dag_id, self.run_id, started_at, int((time.monotonic() - started) * 1000),
             before, after, outcome, detail[:2000]))

    def report(self, target: Target) -> None:
        """Log a target that needs work this job will not do (e.g. too big for VACUUM FULL)."""
        log.warning("reported, not done: %s %s — %s", target.action, target.name, target.reason)
        self.record(target.action, target.name, self.conn.execute("SELECT clock_timestamp()").fetchone()[0],
                    time.monotonic(), "reported", target.reason)

    def purge_cache(self, batch_size: int = 5000) -> int:
        started, started_at = time.monotonic(), self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        total = 0
        while deleted := self.conn.execute("SELECT app.purge_expired_cache(%s)", (batch_size,)).fetchone()[0]:
            total += deleted
        self.record("purge_cache", "app.purge_expired_cache", started_at, started, "done",
                    f"{total} expired cache rows deleted in batches of {batch_size}")
        return total
