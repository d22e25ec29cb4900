"""A migration checked after it applies (``NNN_name.verify.sql``; coldcopy.migrations.verification): a verify
query that returns a row rolls a transactional file back and names the row; a non-transactional file is left
unrecorded and the task fails; only reading statements run; an approved verify file edited after the approval
applies nothing."""

from __future__ import annotations

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.migrations import MigrationError, discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.operators.migrations import ApplyMigrationOperator
from tests.conftest import FakeTaskInstance
from tests.support.migrations import table_exists, write

BACKFILL = ("ALTER TABLE public.leads ADD COLUMN domain text;\n"
            "UPDATE public.leads SET domain = split_part(email, '@', 2) WHERE email LIKE '%@%.%';\n")
EVERY_LEAD_HAS_A_DOMAIN = "SELECT id, email FROM public.leads WHERE domain IS NULL LIMIT 1;\n"


def _runner(dsn: str) -> MigrationRunner:
    return MigrationRunner(lambda: psycopg.connect(dsn))


def _has_column(dsn: str, column: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return bool(conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND "
                                 "table_name = 'leads' AND column_name = %s", (column,)).fetchone())


def test_a_verify_returning_a_row_rolls_the_file_back_and_names_the_row(tmp_path, generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE public.leads SET email = 'no-domain' WHERE id = (SELECT id FROM public.leads "
                     "ORDER BY id LIMIT 1)")
    directory = write(tmp_path / "m", {"150_lead_domain.sql": BACKFILL,
                                       "150_lead_domain.verify.sql": "-- every lead has one\n"
                                                                     + EVERY_LEAD_HAS_A_DOMAIN})
    migration = discover_migrations(directory)[0]
    with pytest.raises(MigrationError, match=r"failed its verify at line 2 of 150_lead_domain.verify.sql: .* "
                                             r"returned \{'id': .*'email': 'no-domain'\}"):
        _runner(generated_db).apply(migration, applied_by="pytest")
    assert not _has_column(generated_db, "domain")  # rolled back: the column, the backfill
    assert 150 not in _runner(generated_db).applied()
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE public.leads SET email = 'fixed@example.com' WHERE email = 'no-domain'")
    assert _runner(generated_db).apply(migration, applied_by="pytest") is True and _has_column(generated_db, "domain")


def test_a_non_transactional_file_failing_its_verify_is_not_recorded(tmp_path, generated_db):
    directory = write(tmp_path / "m", {
        "150_idx.sql": "CREATE INDEX CONCURRENTLY leads_email_lower_idx ON public.leads (lower(email));\n",
        "150_idx.verify.sql": "DO $$ BEGIN IF true THEN RAISE EXCEPTION 'the index is not what we meant'; END IF; "
                              "END $$;\n"})
    migration = discover_migrations(directory)[0]
    with pytest.raises(MigrationError, match="failed its verify at line 1 .* the index is not what we meant"):
        _runner(generated_db).apply(migration, applied_by="pytest")
    assert 150 not in _runner(generated_db).applied()  # the task fails; the next run verifies it again


def test_only_reading_statements_are_verify_queries(tmp_path, generated_db):
    directory = write(tmp_path / "m", {"150_t.sql": "CREATE TABLE public.t150 (id bigint);\n",
                                       "150_t.verify.sql": "WITH gone AS (DELETE FROM public.leads RETURNING id) "
                                                           "SELECT 1 FROM gone WHERE false;\n"})
    with pytest.raises(MigrationError, match="only SELECT, WITH, TABLE, VALUES and DO are verify queries"):
        _runner(generated_db).apply(discover_migrations(directory)[0], applied_by="pytest")
    assert not table_exists(generated_db, "public.t150")


def test_a_verify_file_without_its_migration_is_an_error(tmp_path):
    directory = write(tmp_path / "m", {"150_t.sql": "SELECT 1;\n", "151_gone.verify.sql": "SELECT 1 WHERE false;\n"})
    with pytest.raises(MigrationError, match="151_gone.verify.sql: a verify file with no migration"):
        discover_migrations(directory)


def test_a_verify_file_edited_after_the_approval_applies_nothing(tmp_path, generated_db, coldcopy_conn, approvals):
    directory = write(tmp_path / "m", {"150_t.sql": "CREATE TABLE public.t150 (id bigint);\n",
                                       "150_t.verify.sql": "SELECT 1 WHERE false;\n"})
    coldcopy_conn(generated_db)
    migration = discover_migrations(directory)[0]
    approved = approvals("coldcopy_migrations", {"decision": "apply", "request": {
        "files": {"150_t.sql": migration.checksum}, "verify": {"150_t.sql": migration.verify_checksum}}})
    (directory / "150_t.verify.sql").write_text("SELECT 1 WHERE false; -- and something else\n")
    ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="m150", xcoms={"approve": approved})
    with pytest.raises(AirflowFailException, match="150_t.verify.sql is not the verify file that was approved"):
        ApplyMigrationOperator(task_id="m150", sql="150_t.sql", migrations_dir=directory).execute(
            {"ti": ti, "params": {}})
    assert not table_exists(generated_db, "public.t150")


HIDDEN_WRITES = {  # helper-14's attacks: each wrote through the verify file before
    "DO $$ BEGIN DELETE FROM public.leads; END $$;\n": None,
    "/* /* */ SELECT */ DELETE FROM public.leads;\n": None,
    "WITH d AS (/* -- */ DELETE FROM public.leads RETURNING 1) SELECT 1 FROM d WHERE false;\n": None,
    "SELECT 1 AS begin WHERE false; DELETE FROM public.leads; SELECT 1 AS end WHERE false;\n":
        "cannot insert multiple commands",
}


@pytest.mark.parametrize("verify", list(HIDDEN_WRITES))
def test_nothing_a_verify_file_writes_stays(tmp_path, generated_db, verify):
    with psycopg.connect(generated_db) as conn:
        before = conn.execute("SELECT count(*) FROM public.leads").fetchone()[0]
    directory = write(tmp_path / "m", {"150_t.sql": "CREATE TABLE public.t150 (id bigint);\n",
                                       "150_t.verify.sql": verify})
    refused = HIDDEN_WRITES[verify]
    if refused:
        with pytest.raises(MigrationError, match=refused):
            _runner(generated_db).apply(discover_migrations(directory)[0], applied_by="pytest")
    else:
        assert _runner(generated_db).apply(discover_migrations(directory)[0], applied_by="pytest") is True
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT count(*) FROM public.leads").fetchone()[0] == before > 0
