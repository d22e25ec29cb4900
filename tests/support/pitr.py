"""What the change-archive tests share: writing tagged rows, reading them back, restoring as of now."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.object_store import Bucket
from coldcopy.pitr import recovery
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.testing import local_env
from tests.conftest import BACKUP_PASSPHRASE, KEYRING


def archiver_for(dsn: str, bucket: Bucket) -> ChangeArchiver:
    return ChangeArchiver(dsn, bucket, BACKUP_PASSPHRASE, keyring=KEYRING)


def write(dsn: str, tag: str, rows: int = 5) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.suppression_list (workspace_id, email, reason) SELECT workspace_id, "
                     "%s || '-' || id || '@example.com', 'manual' FROM public.leads ORDER BY id LIMIT %s", (tag, rows))


def tagged(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT email FROM public.suppression_list WHERE reason = 'manual' "
                                           "AND email ~ '^[a-z]+[0-9]*-' ORDER BY email")]


def confirmed(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots").fetchone()[0]


def restored_base(archiver: ChangeArchiver, runner: BackupRunner, dsn: str, server: str,
                  suffix: str = "restored") -> tuple[recovery.RecoveryPlan, str]:
    """The archive made current, the plan as of the last whole second, and its base backup restored into a new
    database ``<dbname>_<suffix>`` on ``server`` (the replay is the caller's)."""
    time.sleep(1.1)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    archiver.tip_every_s = 0
    archiver.drain_once()  # the archive says it holds every commit up to now
    target = local_env.create_database(server, f"{psycopg.conninfo.conninfo_to_dict(dsn)['dbname']}_{suffix}")
    plan = recovery.plan(runner, at)
    runner.restore(plan.backup_key, target, manifest=plan.backup)
    return plan, target


def restore_now(archiver: ChangeArchiver, runner: BackupRunner, dsn: str, server: str) -> str:
    """Restore as of the last whole second into a new database on ``server``; returns its DSN."""
    plan, target = restored_base(archiver, runner, dsn, server)
    recovery.replay(runner, plan, target, migrate=marker_applier(target))
    return target
