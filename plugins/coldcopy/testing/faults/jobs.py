"""The jobs the fault campaign kills (issue 45), each as its DAG runs it, called in a child process
(:mod:`coldcopy.testing.faults.child`) with production's entry points: the library the operators call, the
``coldcopy_spaces`` connection from the environment, the database by DSN.

Each job names the template its trials start from (``generated``: migrated and populated; ``empty``: a database
with nothing applied) and what its invariant is about (``rows``: no row of any table changed; ``archive``: every
row of ``email_events`` either still in its month or in a verified archive; ``schema``: the schema the files
build, exactly)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg

CONTEXT_ENV = "COLDCOPY_FAULT_CONTEXT"


@dataclass(frozen=True)
class Context:
    dsn: str  # the job's target
    admin_dsn: str  # the server's maintenance database (scratch copies)
    passphrase: str
    manifest_secret: str
    pepper: str = ""  # the subject keys' secret (coldcopy_subject_pepper)

    def keyring(self):
        from coldcopy import manifests

        return manifests.Keyring.from_secret(self.manifest_secret)

    def to_env(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_env(cls) -> Context:
        return cls(**json.loads(os.environ[CONTEXT_ENV]))


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Context], None]
    template: str
    invariant: str
    next_day: Callable[[Context], None] | None = None  # what the next scheduled run does that a rerun does not
    prepare: Callable[[Context], None] | None = None  # the state a real run meets (run before the reference)
    spools: bool = False  # writes a spool file (TMPDIR): its filesystem can fill
    methods: tuple[str, ...] = ()  # the bucket requests it makes (HTTP methods): the bucket's faults fall on them
    once: bool = False  # a one-shot job (a restore): run again only when no run finished, as Airflow's retry


def backup(ctx: Context) -> None:
    """backup_to_spaces: the dump streamed to the bucket, its manifest, the log; verified on a scratch copy;
    retention."""
    from coldcopy.backups import BackupRunner
    from coldcopy.object_store import Bucket

    runner = BackupRunner(ctx.dsn, Bucket.from_connection(), ctx.passphrase, keyring=ctx.keyring())
    result = runner.backup()
    runner.verify(result.object_key, ctx.admin_dsn)
    runner.apply_retention(dry_run=False)


def backup_next_day(ctx: Context) -> None:
    """The next run's retention, past :data:`~coldcopy.backups.layout.ORPHAN_AFTER`: it deletes what a killed
    backup left without a manifest."""
    from datetime import UTC, datetime

    from coldcopy.backups import BackupRunner
    from coldcopy.backups.layout import ORPHAN_AFTER
    from coldcopy.object_store import Bucket

    BackupRunner(ctx.dsn, Bucket.from_connection(), ctx.passphrase, keyring=ctx.keyring()).apply_retention(
        dry_run=False, now=datetime.now(UTC) + ORPHAN_AFTER + timedelta(minutes=1))


def backup_prepare(ctx: Context) -> None:
    """A standard backup 40 days old, never verified: past its 30 days, this run's retention deletes it."""
    from datetime import UTC, datetime

    from coldcopy.backups import BackupRunner
    from coldcopy.object_store import Bucket

    BackupRunner(ctx.dsn, Bucket.from_connection(), ctx.passphrase, keyring=ctx.keyring()).backup(
        now=datetime.now(UTC) - timedelta(days=40), retention_class="standard")


def partition_prepare(ctx: Context) -> None:
    """The furthest month ahead not made yet (it is empty): this run's premake makes it."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        last = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start DESC LIMIT 1").fetchone()
        if last and not conn.execute(f"SELECT EXISTS (SELECT FROM public.{last[0]})").fetchone()[0]:
            conn.execute(f"DROP TABLE public.{last[0]}")


def partition_rotation(ctx: Context) -> None:
    """partition_maintenance: premake 3 months, archive every month past 12 (export, verify), detach the verified
    ones, drop the detached (no grace: the campaign's next run is at once)."""
    from coldcopy.lock_retries import LockRetryPolicy
    from coldcopy.object_store import Bucket
    from coldcopy.partitions import PartitionManager

    bucket = Bucket.from_connection()
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        rotation = PartitionManager(conn, keyring=ctx.keyring(), passphrase=ctx.passphrase,
                                    lock_retry=LockRetryPolicy(attempts=20, lock_timeout_ms=500, backoff_s=0.1))
        rotation.premake(3)
        for month in rotation.archive_candidates():
            rotation.archive(month, bucket, detach=False)
        rotation.detach_verified()
        rotation.drop_detached(bucket, grace=timedelta(0))


def migrations(ctx: Context) -> None:
    """coldcopy_migrations' apply: every file (transactional ones whole, the CONCURRENTLY ones part by part)."""
    from coldcopy.migrations import discover_migrations
    from coldcopy.migrations.runner import MigrationRunner

    MigrationRunner(lambda: psycopg.connect(ctx.dsn)).apply_all(discover_migrations(), applied_by="fault campaign")


def refresh_prepare(ctx: Context) -> None:
    """What an hour of sending does: new events for the newest messages, some events' types changed."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, "
            "occurred_at, metadata) SELECT workspace_id, message_id, campaign_id, lead_id, email_account_id, "
            "'opened', now() - interval '5 minutes', '{}' FROM email_events ORDER BY occurred_at DESC, id LIMIT 300")
        conn.execute("UPDATE email_events SET event_type = 'clicked' WHERE (id, occurred_at) IN (SELECT id, "
                     "occurred_at FROM email_events WHERE event_type = 'opened' ORDER BY id LIMIT 100)")


def refresh(ctx: Context) -> None:
    """The four refresh DAGs' applies (each summary: apply, log, prune), as one Airflow run and its retries."""
    from coldcopy.refresh.dispatch import refresher_for
    from coldcopy.refresh.runs import RefreshRun
    from coldcopy.refresh_schedule import REFRESH_JOBS

    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        run = RefreshRun(run_id=f"faults__{conn.info.dbname}")
        for job in REFRESH_JOBS.values():
            for view in job.views:
                refresher_for(conn, view).run(run)


def gdpr_prepare(ctx: Context) -> None:
    """A verified erasure request for a lead with messages and events."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.data_subject_requests (workspace_id, email, request_type, status) SELECT "
            "l.workspace_id, l.email, 'erasure', 'verified' FROM public.leads l WHERE EXISTS (SELECT FROM "
            "public.email_events e WHERE e.lead_id = l.id) AND EXISTS (SELECT FROM public.email_messages m WHERE "
            "m.lead_id = l.id) ORDER BY l.id LIMIT 1")


def gdpr(ctx: Context) -> None:
    """gdpr_requests: every verified request handled (the erasure: ledger entry, its signed copy in the bucket,
    every copy of the person's rows, the dashboards they were counted in, the record)."""
    from coldcopy.gdpr import Gdpr
    from coldcopy.lock_retries import LockRetryPolicy
    from coldcopy.object_store import Bucket
    from coldcopy.refresh.erasures import Dashboards

    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        requests = Gdpr(conn, dashboards=Dashboards, keyring=ctx.keyring(), passphrase=ctx.passphrase,
                        pepper=ctx.pepper, lock_retry=LockRetryPolicy(attempts=20, lock_timeout_ms=500, backoff_s=0.1))
        bucket = Bucket.from_connection()
        for request_id in requests.pending():
            requests.handle(request_id, bucket, run_id=f"faults__{conn.info.dbname}")


def maintenance(ctx: Context) -> None:
    """db_maintenance_weekly's four steps as its mapped tasks run them (leftovers of failed concurrent builds
    dropped, REINDEX CONCURRENTLY, VACUUM FULL, ANALYZE), the thresholds lowered so that the small campaign
    database has targets: its five largest indexes, its bloated small tables."""
    from coldcopy.lock_retries import LockRetryPolicy
    from coldcopy.maintenance import Maintenance, MaintenanceThresholds

    lowered = MaintenanceThresholds(reindex_min_bytes=0, reindex_bloat=0.0, reindex_cooldown_days=0, full_bloat=0.0,
                                    full_min_bytes=64 * 1024, analyze_base=0, analyze_scale=0.0)
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        m = Maintenance(conn, thresholds=lowered, statement_timeout="5min",
                        lock_retry=LockRetryPolicy(attempts=20, lock_timeout_ms=500, backoff_s=0.1))
        for target in m.invalid_leftovers() + m.reindex_plan() + m.full_vacuum_plan()[0][:3] + \
                m.stale_statistics()[:5]:
            m.run(target)


def maintenance_prepare(ctx: Context) -> None:
    """A week of churn: deletes and updates that leave tables and indexes bloated, statistics stale."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("UPDATE public.leads SET first_name = coalesce(first_name, '') || '.' WHERE random() < 0.5")
        conn.execute("UPDATE public.campaigns SET name = name || '.'")


def refresh_rebuild(ctx: Context) -> None:
    """A refresh run with force: every summary rebuilt from its definition (as after a migration)."""
    from coldcopy.refresh.dispatch import refresher_for
    from coldcopy.refresh.runs import RefreshRun
    from coldcopy.refresh_schedule import REFRESH_JOBS

    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        run = RefreshRun(run_id=f"faults_force__{conn.info.dbname}")
        for job in REFRESH_JOBS.values():
            for view in job.views:
                refresher_for(conn, view, force=True).run(run)


def restored_name(dsn: str) -> str:
    """The database a restore trial restores into: the target's name, suffixed."""
    return f"{psycopg.conninfo.conninfo_to_dict(dsn)['dbname']}_restored"


def restore_prepare(ctx: Context) -> None:
    """Last night's backup of the target, in the bucket."""
    from coldcopy.backups import BackupRunner
    from coldcopy.object_store import Bucket

    BackupRunner(ctx.dsn, Bucket.from_connection(), ctx.passphrase, keyring=ctx.keyring()).backup()


def restore(ctx: Context) -> None:
    """restore_from_spaces, whole database: the latest backup into a new database, through its quarantine
    (``<target>__restoring``), erasures re-applied, renamed to the target (the operator as the DAG runs it)."""
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=restored_name(ctx.dsn)).execute({})


RETAIN = "200 days"  # the campaign's retention policy: a workspace's email_events archived past this age


def retention_prepare(ctx: Context) -> None:
    """An archive policy for the busiest workspace's email_events (its rows past :data:`RETAIN`)."""
    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.data_retention_policies (workspace_id, table_name, retain_for, action) "
                     "SELECT workspace_id, 'email_events', %s, 'archive' FROM public.email_events "
                     "GROUP BY workspace_id ORDER BY count(*) DESC LIMIT 1", (RETAIN,))


def retention(ctx: Context) -> None:
    """gdpr_retention: every policy applied as its mapped tasks do (archive: each batch uploaded, its manifest
    written and read back, then its rows deleted, in one transaction), in batches of 500."""
    from coldcopy.gdpr import Gdpr
    from coldcopy.lock_retries import LockRetryPolicy
    from coldcopy.object_store import Bucket
    from coldcopy.refresh.erasures import Dashboards

    with psycopg.connect(ctx.dsn, autocommit=True) as conn:
        gdpr = Gdpr(conn, dashboards=Dashboards, keyring=ctx.keyring(), passphrase=ctx.passphrase, pepper=ctx.pepper,
                    lock_retry=LockRetryPolicy(attempts=20, lock_timeout_ms=500, backoff_s=0.1), batch=500)
        bucket = Bucket.from_connection()
        for (policy_id,) in conn.execute("SELECT id FROM public.data_retention_policies ORDER BY id").fetchall():
            policy = gdpr.policy(str(policy_id))
            gdpr.log_retention(policy, "done", **gdpr.apply_retention(policy, bucket))


JOBS = {job.name: job for job in (
    Job("backup", backup, "generated", "rows", backup_next_day, backup_prepare, spools=True,
        methods=("PUT", "POST", "GET", "DELETE", "HEAD")),
    Job("partition_rotation", partition_rotation, "generated", "archive", prepare=partition_prepare,
        methods=("PUT", "POST", "GET", "HEAD")),
    Job("refresh", refresh, "generated", "summaries", prepare=refresh_prepare),
    Job("refresh_rebuild", refresh_rebuild, "generated", "summaries", prepare=refresh_prepare),
    Job("maintenance", maintenance, "generated", "rows", prepare=maintenance_prepare),
    Job("gdpr", gdpr, "generated", "erasure", prepare=gdpr_prepare, methods=("PUT", "GET")),
    Job("migrations", migrations, "empty", "schema"),
    Job("gdpr_retention", retention, "generated", "retention", prepare=retention_prepare, methods=("PUT", "GET")),
    Job("restore", restore, "generated", "restored", prepare=restore_prepare, spools=True,
        methods=("GET", "HEAD"), once=True),
)}
