"""The dress rehearsal on a restored copy: a rewrite is seen with its ACCESS EXCLUSIVE lock held about as
long as the file ran, a column added with a constant default rewrites nothing, a failing file is reported,
and the scratch database is gone afterwards either way."""

from __future__ import annotations

import shutil

import psycopg

from coldcopy.backups import BackupRunner
from coldcopy.migrations import MIGRATIONS_DIR, discover_migrations
from coldcopy.migrations.rehearsal import rehearse, table
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.migrations.scratch_copy import ScratchCopy
from tests.conftest import KEYRING


def scratch_left(admin_dsn: str) -> int:
    with psycopg.connect(admin_dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'coldcopy_rehearsal_%'").fetchone()[0]


def test_a_rewrite_and_a_fast_default_seen_on_a_restored_copy(generated_db, spaces, backup_key, admin_dsn, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "389_rehearsal_fixture.sql").write_text(
        "CREATE TABLE public.rehearsal_t (id int PRIMARY KEY, n int NOT NULL);\n"
        "INSERT INTO public.rehearsal_t SELECT g, g FROM generate_series(1, 300000) g;\n")
    MigrationRunner(lambda: psycopg.connect(generated_db)).apply_all(discover_migrations(folder, None),
                                                                      applied_by="pytest")
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    runner.backup()
    (folder / "390_widen_n.sql").write_text("ALTER TABLE public.rehearsal_t ALTER COLUMN n TYPE bigint;\n")
    (folder / "391_add_flag.sql").write_text(
        "ALTER TABLE public.rehearsal_t ADD COLUMN flag boolean NOT NULL DEFAULT false;\n")
    pending = [m for m in discover_migrations(folder, None) if m.version >= 390]
    with ScratchCopy(runner, admin_dsn) as scratch:
        widen, flag = rehearse(scratch, pending, hot={"public.rehearsal_t"})
    assert scratch_left(admin_dsn) == 0
    assert widen.rewritten == {"public.rehearsal_t": 300000} and widen.error is None
    [lock] = [lock for lock in widen.locks if lock.relation == "public.rehearsal_t"]
    assert lock.mode == "AccessExclusiveLock" and lock.held_ms >= 0.5 * widen.duration_ms
    assert widen.strongest == "AccessExclusiveLock" and widen.hot_blocked == ["public.rehearsal_t"]
    assert widen.wal_bytes > 300000 * 8  # every row written again (others writing on the server only add)
    # a fast default: catalog only. Its WAL figure is server-wide, so the parallel tiers writing on this server
    # add to it (5 MB once, in 36 ms, during a CREATE DATABASE): the relfilenode, kept, is the proof
    assert flag.rewritten == {} and flag.error is None
    assert "**public.rehearsal_t AccessExclusiveLock" in table([widen, flag])
    with psycopg.connect(generated_db) as conn:  # the live database was not touched
        assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                            "'public.rehearsal_t'::regclass AND attname = 'n'").fetchone()[0] == "integer"

    (folder / "392_broken.sql").write_text("ALTER TABLE public.rehearsal_t ADD COLUMN oops nonexistent_type;\n")
    pending = [m for m in discover_migrations(folder, None) if m.version >= 390]
    with ScratchCopy(runner, admin_dsn) as scratch:
        results = rehearse(scratch, pending)
    assert [r.file for r in results] == ["390_widen_n.sql", "391_add_flag.sql", "392_broken.sql"]
    assert "nonexistent_type" in results[-1].error and scratch_left(admin_dsn) == 0


def test_the_rehearse_task_refuses_to_skip_on_a_target_with_data_and_needs_none_on_an_empty_one(
        generated_db, empty_db, coldcopy_conn, tmp_path):
    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    from coldcopy.operators.rehearsal import RehearseMigrationsOperator
    from tests.conftest import FakeTaskInstance

    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "390_pending.sql").write_text("CREATE TABLE public.later (id int PRIMARY KEY);\n")
    context = {"ti": FakeTaskInstance(dag_id="coldcopy_migrations", run_id="r", task_id="rehearse"), "params": {}}
    coldcopy_conn(generated_db)
    with pytest.raises(AirflowFailException, match="skip_rehearsal is for an empty or disposable target"):
        RehearseMigrationsOperator(task_id="rehearse", migrations_dir=folder, skip_rehearsal="True").execute(context)
    coldcopy_conn(empty_db)
    done = RehearseMigrationsOperator(task_id="rehearse", migrations_dir=folder).execute(context)
    assert done == {"files": [], "empty_target": True}
