"""Operators of ``partition_maintenance`` and ``partition_restore`` (see :mod:`coldcopy.partitions`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import PARTITION_DROP_GRACE_DAYS
from coldcopy.humanize import duration, size
from coldcopy.operators.base import ColdCopyOperator


class BasePartitionOperator(ColdCopyOperator):
    """Shared parts (the database, the archive bucket, the passphrase that encrypts the archives, the lock
    retry schedule: :class:`ColdCopyOperator`'s parameters) and the partition manager they make."""

    ui_color = "#fdf2e3"
    default_execution_timeout = timedelta(hours=3)
    default_statement_timeout = "2h"  # one month's export, read back, or restore

    @contextmanager
    def manager(self):
        from coldcopy.backups import backup_passphrase
        from coldcopy.partitions import PartitionManager

        with self.hook().session() as conn:
            yield PartitionManager(conn, lock_retry=self.lock_policy(), keyring=self.keyring(),
                                   passphrase=backup_passphrase(self.key_conn_id))


class PremakePartitionsOperator(BasePartitionOperator):
    """Create the partitions missing from the current month to ``months_ahead`` (UTC months).

    :param months_ahead: months after the current one that must have a partition.
    """

    def __init__(self, *, months_ahead: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.months_ahead = months_ahead

    def execute(self, context: Context) -> list[str]:
        with self.manager() as manager:
            created = manager.premake(self.months_ahead, now=context.get("data_interval_end"))
        self.say(context, f"created {len(created)} partition(s): {', '.join(created)}" if created else
                 f"nothing to create: every month to {self.months_ahead} ahead has its partition")
        return created


class HorizonCheckOperator(BasePartitionOperator):
    """Alert (and fail) when fewer than ``min_future_months`` months after the current one have a partition.

    There is no DEFAULT partition: an insert into a month without one fails.
    """

    def __init__(self, *, min_future_months: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_future_months = min_future_months

    def execute(self, context: Context) -> int:
        with self.manager() as manager:
            ahead = manager.future_months(now=context.get("data_interval_end"))
        if ahead < self.min_future_months:
            raise AirflowFailException(
                f"email_events has partitions for only {ahead} future month(s) (need {self.min_future_months}): "
                "inserts will fail when the month runs out")
        self.say(context, f"{ahead} future month(s) of partitions (at least {self.min_future_months} needed)")
        return ahead


class ListArchiveCandidatesOperator(BasePartitionOperator):
    """The months to archive: attached partitions whose whole range is older than ``retain_months``."""

    def __init__(self, *, retain_months: int = 12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.retain_months = retain_months

    def execute(self, context: Context) -> list[str]:
        now = context.get("data_interval_end")
        with self.manager() as manager:
            candidates = manager.archive_candidates(self.retain_months, now=now)
            for name, held_until, restored_by in manager.held(now):
                self.log.info("not archived: %s was restored by %s and is held until %s", name,
                              restored_by or "someone", held_until)
        names = [p.name for p in candidates]
        self.say(context, f"to archive: {', '.join(names)}" if names else
                 f"nothing to archive: no attached month is older than {self.retain_months} months")
        return names


class ArchivePartitionOperator(BasePartitionOperator):
    """Export one month to Spaces and verify it from the bucket (mapped months run in parallel); the month
    stays attached until :class:`DetachArchivedPartitionsOperator` detaches the verified ones.

    :param partition: partition name (mapped: one task instance per month).
    """

    template_fields: Sequence[str] = ("partition",)

    def __init__(self, *, partition: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.partition = partition

    def execute(self, context: Context) -> dict:
        bucket = self.bucket()
        with self.manager() as manager:
            match = [p for p in manager.partitions() if p.name == self.partition]
            if not match:
                self.say(context, f"{self.partition} is no longer attached: archived already")
                return {}
            manifest = manager.archive(match[0], bucket, detach=False)
        self.say(context, f"{self.partition}: {manifest['rows']:,} rows archived to {manifest['object_key']} "
                          f"({size(manifest['byte_size'])}) and verified from the bucket")
        return {k: manifest[k] for k in ("partition", "rows", "byte_size", "sha256", "object_key")}


class DetachArchivedPartitionsOperator(BasePartitionOperator):
    """``DETACH PARTITION … CONCURRENTLY`` of every month whose archive verified, one after another
    (PostgreSQL allows one pending detach per partitioned table); finalizes an interrupted detach first."""

    def execute(self, context: Context) -> list[str]:
        with self.manager() as manager:
            detached = manager.detach_verified()
        self.say(context, f"detached {len(detached)} month(s): {', '.join(detached)}" if detached else
                 "nothing to detach: no attached month has a verified archive")
        return detached


class DropDetachedPartitionsOperator(BasePartitionOperator):
    """Drop archived months detached more than ``grace_days`` ago, if still detached and still verifiable."""

    def __init__(self, *, grace_days: float = PARTITION_DROP_GRACE_DAYS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grace_days = grace_days

    def execute(self, context: Context) -> list[str]:
        bucket = self.bucket()
        grace = timedelta(days=self.grace_days)
        with self.manager() as manager:
            dropped = manager.drop_detached(bucket, grace=grace)
            upcoming = manager.next_drop(grace)
        after = (f"next: {upcoming[0]} on {upcoming[1]:%Y-%m-%d %H:%M} UTC" if upcoming
                 else "no other month is detached")
        self.say(context, f"dropped {len(dropped)} detached month(s): {', '.join(dropped)}; {after}" if dropped else
                 f"nothing due (months drop {duration(grace.total_seconds())} after they are detached): {after}")
        return dropped


class ScrubErasedArchivesOperator(BasePartitionOperator):
    """Rewrite archived months that still hold people erased since (:mod:`coldcopy.partitions.scrubber`): each object
    at most once a day, so no archive keeps an erased person for more than a day or two."""

    def execute(self, context: Context) -> list[dict]:
        from coldcopy.partitions.scrubber import ArchiveScrubber

        bucket = self.bucket()
        with self.manager() as manager:
            done = ArchiveScrubber(manager).run(bucket)
        for item in done:
            self.log.info("%s: %d erased rows removed, %d kept (%s)", item.partition, item.removed, item.rows,
                          item.object_key)
        self.say(context, f"scrubbed {len(done)} archive(s) of erased people: "
                          f"{', '.join(f'{d.partition} ({d.removed} rows)' for d in done)}" if done else
                 "nothing to scrub: no archive holds a person erased since it was written")
        return [{"partition": d.partition, "removed": d.removed} for d in done]


class RestorePartitionOperator(BasePartitionOperator):
    """Bring an archived month back as an attached partition, verified against its manifest.

    :param month: ``YYYY-MM`` (templated, e.g. ``{{ params.month }}``).
    :param hold_days: days the month stays attached before rotation archives it again (templated).
    """

    template_fields: Sequence[str] = ("month", "hold_days")

    def __init__(self, *, month: str, hold_days: int | str = 30, **kwargs) -> None:
        super().__init__(**kwargs)
        self.month = month
        self.hold_days = hold_days

    def execute(self, context: Context) -> dict:
        from datetime import UTC, datetime

        try:
            month = datetime.strptime(self.month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError as error:
            raise AirflowFailException(f"month must be YYYY-MM, got {self.month!r}") from error
        from coldcopy.partitions import ArchiveError

        bucket = self.bucket()
        with self.manager() as manager:
            try:
                dag_run = context.get("dag_run")
                manifest = manager.restore(month, bucket, hold=timedelta(days=float(self.hold_days)),
                                           restored_by=getattr(dag_run, "triggering_user_name", None))
            except ArchiveError as error:  # no archive, month present, archive mismatch: a retry changes nothing
                raise AirflowFailException(str(error)) from error
        self.say(context, f"{manifest['partition']} restored: {manifest['rows']:,} rows, checked against its "
                          f"manifest; held {self.hold_days} day(s) before rotation archives it again")
        return {k: manifest[k] for k in ("partition", "rows", "sha256")}
