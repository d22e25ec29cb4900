"""Partitions for the current month and the months ahead, under lock_timeout."""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg

from coldcopy import markers
from coldcopy.change_tracking import TRACKING_TRIGGER, create_tracking_trigger, mirror_capture
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.partitions.layout import PARENT
from coldcopy.partitions.state import ArchiveState
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Premaker:
    """Partitions for the current month and the months ahead, under lock_timeout."""

    def __init__(self, conn: psycopg.Connection, state: ArchiveState, lock_retry: LockRetryPolicy) -> None:
        self.conn, self.state, self.lock_retry = conn, state, lock_retry

    def premake(self, months_ahead: int = 3, now: datetime | None = None) -> list[str]:
        """Create the missing partitions from the current month to ``months_ahead``; returns the created ones."""
        existing = {p.range_start for p in self.state.partitions()}
        created = []
        for offset in range(months_ahead + 1):
            month = self.state.month_start(offset, now)
            if month in existing:
                continue

            def create(month=month) -> str | None:
                markers.emit(self.conn, "partition", action="create", month=f"{month:%Y-%m-%d}")
                name = self.conn.execute("SELECT app.create_email_events_partition(%s)", (month,)).fetchone()[0]
                if name:
                    self._track_changes_on(name)
                return name

            name = under_lock_timeout(self.conn, create, self.lock_retry, what=f"premake of email_events {month:%Y-%m}")
            if name:
                step("partition.premade")
                log.info("created partition %s", name)
                created.append(name)
        return created

    def _track_changes_on(self, partition: str) -> None:
        """Give a new partition the refresh jobs' change trigger and the summaries' capture, if they track
        email_events already."""
        mirror_capture(self.conn, PARENT, f"public.{partition}", counted=True)
        tracked = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s)",
            (PARENT, TRACKING_TRIGGER),
        ).fetchone()[0]
        if tracked:
            create_tracking_trigger(
                self.conn, self.conn.execute("SELECT %s::regclass::oid", (f"public.{partition}",)).fetchone()[0])
