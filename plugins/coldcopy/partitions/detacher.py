"""DETACH … CONCURRENTLY, one at a time behind a lock only the ops role can take."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from coldcopy import job_locks, markers
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.partitions.layout import DETACH_LOCK, PARENT, Partition, month_lock
from coldcopy.partitions.state import ArchiveState
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Detacher:
    """DETACH … CONCURRENTLY, one at a time behind a lock only the ops role can take."""

    def __init__(self, conn: psycopg.Connection, state: ArchiveState, lock_retry: LockRetryPolicy) -> None:
        self.conn, self.state, self.lock_retry = conn, state, lock_retry

    def detach(self, partition: Partition) -> None:
        """``DETACH PARTITION … CONCURRENTLY`` (outside a transaction block), finishing an interrupted one.

        PostgreSQL allows one pending detach per partitioned table, and archive tasks of several months run
        in parallel: a job lock on the parent (:func:`coldcopy.job_locks.held`) serializes the detaches (exports
        stay parallel), and a detach some earlier session left pending is finalized first.
        """
        with self._detach_lock():
            for pending in [p for p in self.state.partitions() if p.detach_pending and p.name != partition.name]:
                log.warning("%s: a detach left pending by an interrupted run; finalizing it first", pending.name)
                self._detach_one(pending.name)
            self._detach_one(partition.name)
        log.info("detached %s", partition.name)

    def detach_verified(self) -> list[str]:
        """Detach every attached month whose archive verified (``partition_archive.state = 'verified'``)."""
        verified = {name for (name,) in self.conn.execute(
            "SELECT partition_name FROM coldcopy_ops.partition_archive WHERE state = 'verified'")}
        detached = []
        for partition in self.state.partitions():
            if partition.name in verified:
                self.detach(partition)
                detached.append(partition.name)
        return detached

    @contextmanager
    def _detach_lock(self, poll_s: float = 0.5) -> Iterator[None]:
        # A row of coldcopy_ops.job_locks held on a side connection (no other login can take it, unlike an
        # advisory key), polled, never waited for in a statement: a waiting statement holds a snapshot, and the
        # DETACH CONCURRENTLY that holds the lock waits for every older snapshot.
        with job_locks.held(job_locks.connect_like(self.conn), DETACH_LOCK, wait_s=None, poll_s=poll_s,
                            what=f"another detach from {PARENT} to finish"):
            yield

    def _detach_one(self, name: str) -> None:
        def detach() -> None:
            pending = self.conn.execute(
                "SELECT detach_pending FROM app.email_events_partitions WHERE name = %s", (name,)
            ).fetchone()
            if pending is None:
                return  # already detached
            mode = "FINALIZE" if pending[0] else "CONCURRENTLY"
            markers.emit(self.conn, "partition", action="detach", table=name)  # its own transaction, just before
            self.conn.execute(sql.SQL("ALTER TABLE public.email_events DETACH PARTITION public.{} " + mode)
                              .format(sql.Identifier(name)))

        # DETACH … CONCURRENTLY refuses a transaction block. The month's lock: no other run exports it meanwhile.
        with month_lock(self.conn, name):
            under_lock_timeout(self.conn, detach, self.lock_retry, what=f"detach of {name}", transaction=False)
            step("partition.detached")  # detached; the bookkeeping not yet told
            with self.conn.transaction():
                self.state.record_parent_change(name)
                self.conn.execute("UPDATE coldcopy_ops.partition_archive SET state = 'detached', detached_at = "
                                  "now(), updated_at = now() WHERE partition_name = %s", (name,))
