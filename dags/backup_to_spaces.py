"""
# backup_to_spaces — daily at 03:00 UTC

1. **backup_database** — `pg_dump -Fc` of the whole database, piped through `zstd -1` (threads: the cores left, cpu_count − 1) and
   `gpg --symmetric --cipher-algo AES256` straight into a multipart upload to the `coldcopy_spaces` bucket
   (`backups/<standard|compliance>/YYYY/MM/DD/…dump.zst.gpg`), with a manifest beside it: sizes, versions,
   per-table row counts taken in the dump's own snapshot, sha256, retention class.
2. **verify_database** — downloads it, decrypts, `pg_restore`s it into a scratch database, compares every
   table's row count with the manifest, drops the scratch database; the result goes to
   `coldcopy_ops.backup_log`. On the `coldcopy_verify_db` connection's server when it exists (the roles its
   grants name are created there first, NOLOGIN, when its login has CREATEROLE), else on the database's own
   server (disk and I/O of a full restore there). A mismatch, a refused manifest or a failed decryption fails
   at once and alerts; a transient S3 or network failure is retried.
3. **backup_table / verify_table** — the same for each table in `BACKUP_TABLES` (the runbook's
   `pg_dump -t`), verified by loading its rows into a scratch copy of the schema.
4. **retention** — deletes standard backups after 30 days and compliance ones (the first of each month)
   after a year, never the newest verified backup. Trigger with `retention_dry_run: true` to only list.

The passphrase is the password of the Airflow connection `coldcopy_backup_key`. Deadline: done within 2 h
of being queued (by 05:00 UTC). Pool `coldcopy_db_heavy`. Restores: the `restore_from_spaces` DAG, or the
stock-tools runbook of docs/backups.md (`gpg --decrypt | zstd -d | pg_restore`).

| Symptom | Meaning | Action |
|---|---|---|
| backup failed: *pipeline failed (pg_dump exited …)* | the dump stopped; the upload was aborted, nothing half-written remains | read pg_dump's message in the log; the retry starts over |
| verify failed: *restored row counts differ* / *gpg exited 2* | the object does not restore as recorded (corrupt, wrong key) | keep the previous verified backup; investigate the object before anything else |
| deadline missed | not done by 05:00 UTC | check the task log for progress lines (bytes, rate, parts) |
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.backups import BackupDatabaseOperator, BackupRetentionOperator, VerifyBackupOperator

BACKUP_TABLES = ["public.workspaces", "public.users"]

with DAG(
    dag_id="backup_to_spaces",
    description="Daily 03:00 UTC: encrypted streamed backup to Spaces, restore-verified, retention applied",
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL),
    deadline=alerts.deadline(timedelta(hours=2), expected="the daily backup and its restore verification"),
    params={"retention_dry_run": Param(False, type="boolean", description="List expired backups; delete nothing.")},
    tags=["coldcopy", "backups"],
    doc_md=__doc__,
):
    backup = BackupDatabaseOperator(task_id="backup_database")
    verify = VerifyBackupOperator(task_id="verify_database", backup_key=backup.output)
    table_backups = BackupDatabaseOperator.partial(task_id="backup_table").expand(tables=[[t] for t in BACKUP_TABLES])
    table_verifications = VerifyBackupOperator.partial(task_id="verify_table").expand(backup_key=table_backups.output)
    retention = BackupRetentionOperator(task_id="retention")
    [verify, table_verifications] >> retention
