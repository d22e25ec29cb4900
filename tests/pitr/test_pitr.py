"""Point-in-time recovery on a throwaway cluster with ``wal_level=logical`` (as Supabase runs), a real S3
endpoint: writes with known commit times across two base backups, the slot drained into signed segments,
and restores ``as_of`` chosen instants compared row by row with the database as it was then."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from coldcopy.backups import BackupRunner
from coldcopy.gdpr import Gdpr
from coldcopy.migrations import MIGRATIONS_DIR, discover_migrations
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.partitions import PartitionManager
from coldcopy.pitr import recovery
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.chain import list_chains
from coldcopy.refresh.erasures import Dashboards
from tests.conftest import BACKUP_PASSPHRASE, KEYRING, SUBJECT_PEPPER


def published(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = 'coldcopy_pitr' "
            "ORDER BY 1")]


def contents(dsn: str, tables: list[str]) -> dict[str, list[str]]:
    """Every row of every table, as text, in primary-key order (the whole content, not counts)."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in tables:
            out[table] = [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t ORDER BY t::text")]
    return out


def next_second() -> datetime:
    """Wait until the wall clock enters a new second; returns the second just left (every commit so far is
    in it or before)."""
    now = datetime.now(UTC)
    time.sleep(1.05 - now.microsecond / 1e6)
    return now.replace(microsecond=0)


def test_restore_as_of_five_instants_equals_the_database_as_it_was(pitr_db, spaces, new_database, tmp_path,
                                                                   backup_key):
    dsn = pitr_db
    archiver = ChangeArchiver(dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    archiver.drain_once()  # sets up the publication and the slot: the chain starts
    runner = BackupRunner(dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    first = runner.backup().object_key
    tables = published(dsn)
    assert "public.email_events" in tables and not any("email_events_2" in t for t in tables)
    instants: list[tuple[datetime, dict]] = []

    def mark() -> None:
        at = next_second()
        instants.append((at, contents(dsn, tables)))

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE public.leads SET first_name = 'Renamed' WHERE id IN "
                     "(SELECT id FROM public.leads ORDER BY id LIMIT 50)")
        conn.execute("INSERT INTO public.suppression_list (workspace_id, email, reason) "
                     "SELECT workspace_id, 'pitr-' || id || '@example.com', 'manual' FROM public.leads LIMIT 20")
        archiver.drain_once()
        mark()  # 1: updates and inserts
        conn.execute("DELETE FROM public.email_events WHERE id IN (SELECT id FROM public.email_events LIMIT 300)")
        conn.execute("TRUNCATE public.intent_signals")
        mark()  # 2: deletes and a truncate (not yet drained: the next drain takes both batches)
        manager = PartitionManager(conn, keyring=KEYRING, passphrase=BACKUP_PASSPHRASE)
        made = manager.premake(months_ahead=8)
        assert made, "premake created no month"
        future = datetime.strptime(made[-1], "email_events_%Y_%m").replace(day=3, tzinfo=UTC)
        conn.execute("INSERT INTO public.email_events (workspace_id, message_id, campaign_id, lead_id, event_type, "
                     "occurred_at) SELECT workspace_id, message_id, campaign_id, lead_id, 'opened', %s "
                     "FROM public.email_events LIMIT 5", (future,))
        archiver.drain_once()
        mark()  # 3: a month premade (marker) and rows routed into it
    second = runner.backup(now=datetime.now(UTC) + timedelta(minutes=1)).object_key  # the second base backup
    migrations = tmp_path / "migrations"  # the release's files and one more, as a deploy brings it
    migrations.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (migrations / path.name).symlink_to(path)
    (migrations / "399_pitr_note.sql").write_text(
        "ALTER TABLE public.leads ADD COLUMN pitr_note text;\n"
        "UPDATE public.leads SET pitr_note = 'noted ' || left(id::text, 8) WHERE status = 'new';\n")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE public.campaigns SET name = name || ' v2'")
        conn.execute("DELETE FROM public.leads WHERE id IN (SELECT id FROM public.leads WHERE id NOT IN "
                     "(SELECT lead_id FROM public.email_events WHERE lead_id IS NOT NULL) LIMIT 10)")
        [added] = MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(migrations),
                                                                          applied_by="pytest")
        assert added.file_name == "399_pitr_note.sql"
        mark()  # 4: after the second backup, a migration (marker) and its backfill
        oldest = PartitionManager(conn, keyring=KEYRING, passphrase=BACKUP_PASSPHRASE).partitions()[0]
        PartitionManager(conn, keyring=KEYRING, passphrase=BACKUP_PASSPHRASE).detach(oldest)
        tables_now = published(dsn)
        assert tables_now == tables
        conn.execute("INSERT INTO public.suppression_list (workspace_id, email, reason) "
                     "SELECT workspace_id, 'late-' || id || '@example.com', 'manual' FROM public.leads LIMIT 3")
        person = conn.execute("SELECT id, workspace_id, email FROM public.leads WHERE id IN "
                              "(SELECT lead_id FROM public.email_messages) ORDER BY id LIMIT 1").fetchone()
        request_id = conn.execute("INSERT INTO public.data_subject_requests (workspace_id, email, request_type, "
                                  "status) VALUES (%s, %s, 'erasure', 'verified') RETURNING id",
                                  (person[1], person[2])).fetchone()[0]
        Gdpr(conn, dashboards=Dashboards, keyring=KEYRING, pepper=SUBJECT_PEPPER).handle(str(request_id), spaces)
        mark()  # 5: a month detached (marker), more rows, an erasure (marker, its deletes)
    archiver.drain_once()
    time.sleep(1.1)
    archiver.tip_every_s = 0
    archiver.drain_once()  # nothing new: the signed tip says the archive is current

    for number, (at, expected) in enumerate(instants, start=1):
        target = new_database()
        plan = recovery.plan(runner, at)
        runner.restore(plan.backup_key, target, manifest=plan.backup)
        report = recovery.replay(runner, plan, target, migrate=marker_applier(target, migrations))
        got = contents(target, tables)
        for table in tables:
            assert got[table] == expected[table], f"instant {number} ({at}): {table} differs ({report})"
        assert plan.backup_key == (first if number <= 3 else second)  # the newest base backup before it
        kinds = {(m["kind"], m.get("action")) for m in report["markers"]}
        assert {1: set(), 2: set(), 3: {("partition", "create")}, 4: {("migration", None)},
                5: {("migration", None), ("partition", "detach"), ("erasure", None)}}[number] == kinds, kinds
    with psycopg.connect(target) as conn:  # the erased person is gone from the restore as of after the erasure
        assert conn.execute("SELECT count(*) FROM public.leads WHERE id = %s", (person[0],)).fetchone()[0] == 0
    assert len(list_chains(spaces)) == 1
