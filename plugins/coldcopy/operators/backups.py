"""Operators of ``backup_to_spaces`` and ``restore_from_spaces`` (see :mod:`coldcopy.backups`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.operators.base import ColdCopyOperator

MAX_JOBS = 32  # a restore's or drill's jobs: pg_restore --jobs and the replay's lanes, each a connection to the target


class BaseBackupOperator(ColdCopyOperator):
    """Shared parts: the database, Spaces and backup-key connections (declared by :class:`ColdCopyOperator`;
    ``conn_id`` is also the server restores are verified on without ``verify_conn_id``).

    :param zstd_threads: compression threads (default: every core, as measured by bench/backups.py).
    """

    ui_color = "#eef3e2"
    default_execution_timeout = timedelta(hours=3)
    default_statement_timeout = "3h"  # counting every table's rows in the dump's snapshot takes a while

    def __init__(self, *, zstd_threads: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.zstd_threads = zstd_threads

    @staticmethod
    def checked_jobs(value) -> int:
        """A ``jobs`` param as a number from 0 (the default) to :data:`MAX_JOBS`; else the task fails for good."""
        try:
            jobs = int(str(value or 0).strip() or 0)
        except ValueError:
            raise AirflowFailException(f"jobs {value!r} is not a whole number") from None
        if not 0 <= jobs <= MAX_JOBS:
            raise AirflowFailException(f"jobs {jobs}: from 0 (the default) to {MAX_JOBS} (each job is a connection to "
                                       "the target server)")
        return jobs

    def runner(self):
        from coldcopy.backups import BackupRunner, backup_passphrase
        from coldcopy.pitr.retention import pruner

        passphrase, bucket, keyring = backup_passphrase(self.key_conn_id), self.bucket(), self.keyring()
        return BackupRunner(self.hook().dsn(), bucket, passphrase, keyring=keyring, zstd_threads=self.zstd_threads,
                            extended_by=[pruner(bucket, keyring)])  # the change archive goes with its backups

    @staticmethod
    def fail_for_good(error: Exception) -> None:
        """Fail without retries (the failure alert goes out once, from ``on_failure_callback``)."""
        raise AirflowFailException(str(error)) from error


class BackupDatabaseOperator(BaseBackupOperator):
    """Back up the whole database, or only ``tables``, into the bucket; returns the object key.

    :param tables: schema-qualified tables for a per-table backup; empty for the whole database.
    """

    template_fields: Sequence[str] = ("tables",)

    def __init__(self, *, tables: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tables = tables or []

    def execute(self, context: Context) -> str:
        from coldcopy.humanize import duration, size

        result = self.runner().backup(tables=self.tables or None)
        m = result.manifest
        self.say(context, f"backed up {m['database']}" + (f" ({', '.join(self.tables)})" if self.tables else "") +
                 f": {size(m['byte_size'])} encrypted in {result.object_key}, {sum(m['row_counts'].values()):,} "
                 f"rows in {len(m['row_counts'])} table(s), every part stored after "
                 f"{duration(result.parts_stored_s)}")
        return result.object_key


class VerifyBackupOperator(BaseBackupOperator):
    """Restore a backup into a scratch database, compare row counts with its manifest, drop the scratch
    database. A mismatch, a refused manifest or a failed decryption fails for good (one alert); a transient
    failure (S3 timeout, connection reset) is retried like any task.

    :param backup_key: object key (templated; usually the backup task's XCom).
    :param verify_conn_id: where the scratch database is created, when this connection exists (e.g. a small
        verification instance); otherwise the server of ``conn_id``, which then carries the disk and I/O
        of a full restore.
    """

    template_fields: Sequence[str] = ("backup_key",)

    def __init__(self, *, backup_key: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backup_key = backup_key

    def scratch_server_dsn(self) -> str:
        from coldcopy import optional_connection
        from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

        if optional_connection(self.verify_conn_id) is None:
            return self.hook().dsn(dbname="postgres")
        self.log.info("verifying on the %s connection's server", self.verify_conn_id)
        return ColdCopyPostgresHook(postgres_conn_id=self.verify_conn_id).dsn(dbname="postgres")

    def execute(self, context: Context) -> dict:
        from coldcopy.backups import BackupError
        from coldcopy.humanize import duration

        try:
            result = self.runner().verify(self.backup_key, self.scratch_server_dsn())
        except BackupError as error:
            self.fail_for_good(error)
        took = duration(result["verification_ms"] / 1000)
        self.say(context, f"verified {self.backup_key}: restored into a scratch database, the row counts of its "
                          f"{result['tables']} table(s) match the manifest ({took})")
        return result


class BackupRetentionOperator(BaseBackupOperator):
    """Delete backups past retention (30 days standard, 1 year compliance), never the newest verified one.
    DAG param ``retention_dry_run`` lists instead of deleting."""

    def execute(self, context: Context) -> list[str]:
        from coldcopy import alerts
        from coldcopy.backups import RETENTION

        dry_run = bool(context["params"].get("retention_dry_run", False))
        runner = self.runner()
        deleted = runner.apply_retention(dry_run=dry_run)
        if runner.skipped:
            alerts.send_for_task(context, f"{len(runner.skipped)} backup(s) with a refused manifest left alone: "
                                 f"{'; '.join(runner.skipped)[:800]}", kind="threshold_breached")
        self.say(context, f"{'would delete' if dry_run else 'deleted'} {len(deleted)} expired backup(s): "
                          f"{', '.join(deleted)}" if deleted else
                 "nothing expired: " + ", ".join(f"{kind} backups are kept {kept.days} days"
                                                 for kind, kept in RETENTION.items()))
        return deleted
