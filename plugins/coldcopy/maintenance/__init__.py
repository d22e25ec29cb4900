"""Vacuum, freeze, reindex, VACUUM FULL and statistics: targeted, logged, and never in the application's way.

Each statement runs outside a transaction block (VACUUM and REINDEX CONCURRENTLY require it) with its own
``statement_timeout`` ceiling and a short ``lock_timeout`` retried with backoff; a table that stays locked
is skipped this run and reported, and the job goes on with the rest. Every action is written to
``coldcopy_ops.maintenance_log`` (what, target, started, duration, sizes before and after, outcome).

Selection (all thresholds are parameters; defaults follow autovacuum's):

* **vacuum**: dead tuples ≥ ``50 + 0.2 × live`` (autovacuum_vacuum_threshold/scale_factor), or
  modifications since the last analyze ≥ ``50 + 0.1 × live``, or dead tuples and no (auto)vacuum for 7 days;
* **freeze**: ``age(relfrozenxid)`` over 150 million (vacuum_freeze_table_age);
* **reindex**: btree indexes over 10 MB whose estimated bloat is over 30 %, not reindexed in 7 days,
  at most 5 a run, ``REINDEX INDEX CONCURRENTLY``; leftovers of failed concurrent builds
  (INVALID ``*_ccnew*``/``*_ccold*``) are dropped first;
* **VACUUM FULL**: tables over 30 % estimated bloat and under 32 MB (it holds ACCESS EXCLUSIVE for the whole
  rewrite, so only under a short lock_timeout); bigger ones are reported for pg_repack instead.
"""

from __future__ import annotations

import psycopg

from coldcopy import ops_schema
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.maintenance.execution import Execution
from coldcopy.maintenance.selection import Selection
from coldcopy.maintenance.targets import (
    ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS,
    Done,
    MaintenanceThresholds,
    Target,
    maintainable,
)

__all__ = ["ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS", "Done", "Maintenance", "MaintenanceThresholds", "Target", "maintainable"]


class Maintenance:
    """Maintenance on one autocommit connection: a facade over the selection (what to do) and the execution (doing
    it, logged).

    :param statement_timeout: ceiling for each maintenance statement.
    :param lock_retry: lock_timeout and retry schedule for each statement.
    """

    def __init__(self, conn: psycopg.Connection, *, thresholds: MaintenanceThresholds = MaintenanceThresholds(),
                 statement_timeout: str = "1h", lock_retry: LockRetryPolicy = LockRetryPolicy(),
                 dag_id: str | None = None, run_id: str | None = None) -> None:
        self.conn, self.t, self.statement_timeout, self.lock_retry = conn, thresholds, statement_timeout, lock_retry
        self.dag_id, self.run_id = dag_id, run_id
        ops_schema.ensure(conn, "maintenance")
        self.selection = Selection(conn, thresholds)
        self.execution = Execution(conn, statement_timeout=statement_timeout, lock_retry=lock_retry, dag_id=dag_id,
                                   run_id=run_id)

    # What to do
    def vacuum_plan(self, *, everything: bool = False) -> tuple[list[Target], list[Target]]:
        return self.selection.vacuum_plan(everything=everything)

    def reindex_plan(self) -> list[Target]:
        return self.selection.reindex_plan()

    def full_vacuum_plan(self) -> tuple[list[Target], list[Target]]:
        return self.selection.full_vacuum_plan()

    def invalid_leftovers(self) -> list[Target]:
        return self.selection.invalid_leftovers()

    def stale_statistics(self) -> list[Target]:
        return self.selection.stale_statistics()

    # Doing it
    def size_of(self, relation: str) -> int:
        return self.execution.size_of(relation)

    def run(self, target: Target) -> Done:
        return self.execution.run(target)

    def report(self, target: Target) -> None:
        self.execution.report(target)

    def purge_cache(self, batch_size: int = 5000) -> int:
        return self.execution.purge_cache(batch_size)
