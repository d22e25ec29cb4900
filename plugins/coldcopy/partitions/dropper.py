"""Detached months dropped after their grace period, if their archive still verifies."""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
from psycopg import sql

from coldcopy import PARTITION_DROP_GRACE_DAYS, markers
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import ArchiveError, Partition
from coldcopy.partitions.signed import SignedManifests
from coldcopy.steps import step

DROP_GRACE = timedelta(days=PARTITION_DROP_GRACE_DAYS)

log = logging.getLogger(__name__)


class Dropper:
    """Detached months dropped after their grace period, if their archive still verifies."""

    def __init__(self, conn: psycopg.Connection, signed: SignedManifests, lock_retry: LockRetryPolicy) -> None:
        self.conn, self.signed, self.lock_retry = conn, signed, lock_retry

    def drop_detached(self, bucket: Bucket, grace: timedelta = DROP_GRACE) -> list[str]:
        """Drop months detached longer than ``grace`` ago that are still detached and whose archive verifies."""
        due = self.conn.execute(
            "SELECT partition_name, object_key, sha256, byte_size, range_start, range_end "
            "FROM coldcopy_ops.partition_archive WHERE state = 'detached' AND detached_at <= now() - %s "
            "ORDER BY range_start", (grace,),
        ).fetchall()
        dropped = []
        for name, key, sha256, size, range_start, range_end in due:
            manifest = self.signed.read(Partition(name, range_start, range_end), bucket)
            if (manifest["sha256"], manifest["byte_size"]) != (sha256, size):
                raise ArchiveError(f"{name}: its signed manifest does not describe the archive recorded; not dropping")
            attached = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s))", (f"public.{name}",)
            ).fetchone()[0]
            if attached:
                log.warning("%s is attached again; not dropping it", name)
                continue
            if bucket.sha256(key) != (sha256, size):
                raise ArchiveError(f"{name}: its archive {key} no longer matches the recorded sha256; not dropping")
            rows = self.conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(name))
                                     ).fetchone()[0]
            if rows != self.conn.execute("SELECT row_count FROM coldcopy_ops.partition_archive "
                                         "WHERE partition_name = %s", (name,)).fetchone()[0]:
                raise ArchiveError(f"{name}: row count changed since it was archived; not dropping")

            def drop(name=name) -> None:
                markers.emit(self.conn, "partition", action="drop", table=name)
                self.conn.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(name)))
                self.conn.execute("UPDATE coldcopy_ops.partition_archive SET state = 'dropped', "
                                  "dropped_at = now(), updated_at = now() WHERE partition_name = %s", (name,))

            under_lock_timeout(self.conn, drop, self.lock_retry, what=f"drop of detached {name}")
            step("partition.dropped")
            log.info("dropped %s (archived at %s)", name, key)
            dropped.append(name)
        return dropped

    def next_drop(self, grace: timedelta = DROP_GRACE) -> tuple[str, object] | None:
        """``(month, when)`` of the next detached month to fall due for dropping, or None when none is detached."""
        return self.conn.execute(
            "SELECT partition_name, detached_at + %s FROM coldcopy_ops.partition_archive WHERE state = 'detached' "
            "ORDER BY detached_at, range_start LIMIT 1", (grace,)).fetchone()
