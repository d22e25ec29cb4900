"""Reading the partitions and recording each month's archive state."""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg
from psycopg import sql

from coldcopy.change_tracking import record_change, record_partition
from coldcopy.partitions.layout import PARENT, ROW_VERSIONS_SQL, Partition

log = logging.getLogger(__name__)


class ArchiveState:
    """Reading the partitions and recording each month's archive state (``coldcopy_ops.partition_archive``): what
    every other step reads and writes through, on the manager's connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def partitions(self) -> list[Partition]:
        rows = self.conn.execute(
            "SELECT name, range_start, range_end, detach_pending FROM app.email_events_partitions "
            "ORDER BY range_start").fetchall()
        return [Partition(*row) for row in rows]

    def attached(self, partition: Partition) -> bool:
        """Whether ``partition`` is still a partition of email_events (a detach pending counts)."""
        return self.conn.execute("SELECT EXISTS (SELECT FROM app.email_events_partitions WHERE name = %s)",
                                 (partition.name,)).fetchone()[0]

    def month_start(self, offset: int = 0, now: datetime | None = None) -> datetime:
        return self.conn.execute("SELECT app.month_start_utc(coalesce(%s, now()), %s)", (now, offset)).fetchone()[0]

    def future_months(self, now: datetime | None = None) -> int:
        """Partitions wholly after the current month: how far ahead inserts are safe."""
        boundary = self.month_start(1, now)
        return sum(1 for p in self.partitions() if p.range_start >= boundary)

    def archive_candidates(self, retain_months: int = 12, now: datetime | None = None) -> list[Partition]:
        """Attached months whose whole range is older than ``retain_months`` before the current month, except
        restored months still held (:meth:`held`)."""
        cutoff = self.month_start(-retain_months, now)
        held = {name for name, _, _ in self.held(now)}
        return [p for p in self.partitions() if p.range_end <= cutoff and p.name not in held]

    def held(self, now: datetime | None = None) -> list[tuple[str, datetime, str | None]]:
        """``(partition, held_until, restored_by)`` of restored months whose hold has not ended."""
        return self.conn.execute(
            "SELECT partition_name, held_until, restored_by FROM coldcopy_ops.partition_archive "
            "WHERE state = 'restored' AND held_until > coalesce(%s, now()) ORDER BY 1", (now,)).fetchall()

    def erased_on_restore(self, partition: Partition) -> bool:
        """A restored month that lost erased subjects' rows no longer matches its archive: export it afresh
        (which replaces the archive with one without them)."""
        return bool(self.conn.execute("SELECT coalesce(erased_rows, 0) > 0 FROM coldcopy_ops.partition_archive "
                                      "WHERE partition_name = %s", (partition.name,)).fetchone()[0])

    def state(self, partition: Partition) -> str | None:
        row = self.conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                                (partition.name,)).fetchone()
        return row[0] if row else None

    def set_state(self, partition: Partition, manifest: dict, state: str, fingerprint: tuple[int, str]) -> None:
        """Record ``state`` and ``fingerprint`` (rows, and row versions or row checksum): what the live partition
        must keep showing for the archive to describe it."""
        stamp = {"exported": "exported_at", "verified": "verified_at", "restored": "restored_at"}[state]
        self.conn.execute(
            "INSERT INTO coldcopy_ops.partition_archive (partition_name, range_start, range_end, object_key, "
            "manifest_key, row_count, row_checksum, sha256, byte_size, state, exported_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (partition_name) DO UPDATE SET row_count = EXCLUDED.row_count, "
            "row_checksum = EXCLUDED.row_checksum, sha256 = EXCLUDED.sha256, byte_size = EXCLUDED.byte_size, "
            f"object_key = EXCLUDED.object_key, state = EXCLUDED.state, {stamp} = now(), updated_at = now()",
            (partition.name, partition.range_start, partition.range_end, manifest["object_key"],
             partition.manifest_key, *fingerprint, manifest["sha256"], manifest["byte_size"], state),
        )

    def row_versions(self, table: str) -> tuple[int, str]:
        rows, versions, _, _ = self.conn.execute(sql.SQL(ROW_VERSIONS_SQL).format(sql.Identifier(table))).fetchone()
        return rows, versions

    def columns(self, table: str) -> list[str]:
        return [c.name for c in self.conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(
            sql.Identifier(table))).description]

    def schema_version(self) -> int | None:
        if not self.conn.execute("SELECT to_regclass('coldcopy_ops.schema_migrations') IS NOT NULL").fetchone()[0]:
            return None
        return self.conn.execute("SELECT max(version) FROM coldcopy_ops.schema_migrations").fetchone()[0]

    def record_parent_change(self, partition: str) -> None:
        """Attaching or detaching ``partition`` changes what email_events returns: tell the refresh jobs and the
        incremental summaries (its rows' groups; DDL fires no trigger). Call after it, in a transaction."""
        if self.conn.execute("SELECT to_regclass('coldcopy_ops.source_changes') IS NOT NULL").fetchone()[0]:
            record_change(self.conn, PARENT)
        record_partition(self.conn, PARENT, f"public.{partition}")
