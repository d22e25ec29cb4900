"""Backups verified where the users are (issue 40, 4): on the Supabase-faithful tier, rebuilt in the platform's
order, its dumps hold the grants a real project's do (every routine of ``extensions`` to postgres WITH GRANT
OPTION, a project's own grants on them to the API roles), and a backup still verifies as ``postgres``."""

from __future__ import annotations

import logging
import subprocess

import psycopg
import pytest

from coldcopy.testing import local_env
from tests.conftest import KEYRING

pytestmark = pytest.mark.supabase


@pytest.fixture
def probe(supabase):
    """A project schema of this test's own in the database ``postgres`` (tables, RLS, a policy), dropped after."""
    with psycopg.connect(supabase.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA probe; CREATE TABLE probe.notes (id int PRIMARY KEY, owner uuid, body text);"
                     "INSERT INTO probe.notes SELECT g, gen_random_uuid(), 'note ' || g FROM generate_series(1, 50) g;"
                     "ALTER TABLE probe.notes ENABLE ROW LEVEL SECURITY; ALTER TABLE probe.notes FORCE ROW LEVEL "
                     "SECURITY; CREATE POLICY own ON probe.notes FOR SELECT TO authenticated "
                     "USING (owner = auth.uid());"
                     "GRANT USAGE ON SCHEMA probe TO authenticated; GRANT SELECT ON probe.notes TO authenticated")
    yield "probe.notes"
    with psycopg.connect(supabase.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA probe CASCADE")


def test_the_tiers_dumps_hold_the_platforms_grants_on_extension_routines(supabase):
    dump = subprocess.run([local_env.executable("pg_dump"), "-s", "-d", supabase.dsn], check=True,
                          capture_output=True, text=True).stdout
    grants = [line for line in dump.splitlines() if line.startswith("GRANT ALL ON FUNCTION extensions.")]
    assert any(g.startswith("GRANT ALL ON FUNCTION extensions.pg_stat_statements(") and
               g.endswith("TO postgres WITH GRANT OPTION;") for g in grants), grants[:5]
    assert "GRANT ALL ON FUNCTION extensions.crypt(text, text) TO anon;" in grants


def test_a_backup_verifies_as_postgres_and_the_grants_it_cannot_replay_are_named_once(supabase, spaces, backup_key,
                                                                                       probe, caplog):
    """Before: ``pg_restore --exit-on-error`` stopped at ``function extensions.pg_stat_statements(boolean) does
    not exist`` (the grant on it stayed in: its dependency is an entry the archive does not hold)."""
    from coldcopy.backups import BackupRunner

    runner = BackupRunner(supabase.dsn, spaces, backup_key, keyring=KEYRING)
    whole = runner.backup()
    with caplog.at_level(logging.WARNING, logger="coldcopy.backups"):
        verified = runner.verify(whole.object_key, supabase.dsn)
    assert verified["tables"] > 0 and verified["safety"] == "compared"  # RLS, policies, API grants as the source's
    grants = [r.getMessage() for r in caplog.records if "grants left out" in r.getMessage()]
    assert len(grants) == 1 and "pg_stat_statements_reset(" in grants[0], grants  # named, in one line
    assert any("pg_stat_statements" in entry and "the archive does not hold" in entry for entry in runner.left_out)
    notes = whole.manifest["safety"]["tables"]["probe.notes"]
    assert notes["force_rls"] and notes["grants"] == {"authenticated": ["SELECT"]}, notes
    assert not [t for t in whole.manifest["safety"]["tables"] if t.split(".")[0] in ("auth", "storage", "extensions")]
    table = runner.backup(tables=[probe])
    assert runner.verify(table.object_key, supabase.dsn)["tables"] == 1
