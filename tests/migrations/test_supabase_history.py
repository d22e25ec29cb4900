"""One history with the Supabase CLI: files ``supabase db push`` applied are recognized (the same statements)
or refused (edited since), and what ``coldcopy_migrations`` applies is what ``supabase migration list`` sees."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from coldcopy.migrations import MIGRATIONS_DIR, MigrationError, Status, discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.migrations.supabase_history import split_raw, split_statements

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "supabase_cli_parser"
# The CLI's own statements (apps/cli-go/pkg/migration/history.go), as it creates its table
CLI_TABLE = ["CREATE SCHEMA IF NOT EXISTS supabase_migrations",
             "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
             "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
             "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text"]


def test_the_statement_splitter_is_the_clis_on_its_own_test_data():
    expected = [p.read_text() for p in sorted(FIXTURES.glob("split_*.sql"))] + ["\n"]
    assert len(expected) == 19
    assert Counter(split_raw((FIXTURES / "all.sql").read_text())) == Counter(expected)
    assert split_statements("-- why\nCREATE TABLE a (x int);; SELECT 'a;b'\n") == \
        ["-- why\nCREATE TABLE a (x int)", "SELECT 'a;b'"]


def push_like_the_cli(dsn: str, path: Path) -> None:
    """What `supabase db push` does with one file: its statements and the history row, one implicit transaction."""
    version, name = path.name.split("_", 1)
    with psycopg.connect(dsn) as conn:
        for statement in CLI_TABLE:
            conn.execute(statement)
        for statement in split_statements(path.read_text()):
            conn.execute(statement.encode())
        conn.execute("INSERT INTO supabase_migrations.schema_migrations(version, name, statements) "
                     "VALUES (%s, %s, %s)", (version, name.removesuffix(".sql"), split_statements(path.read_text())))


def test_files_the_cli_applied_are_recognized_and_what_we_apply_the_cli_lists(empty_db):
    migrations = discover_migrations()
    by_cli = [m for m in migrations if m.version < 109]  # 109 has CREATE INDEX CONCURRENTLY: the CLI cannot
    for migration in by_cli:
        push_like_the_cli(empty_db, migration.path)
    runner = MigrationRunner(lambda: psycopg.connect(empty_db))
    plan = {e.migration.version: e for e in runner.plan(migrations)}
    assert all(plan[m.version].status is Status.APPLIED and plan[m.version].cli == "recorded" for m in by_cli)
    assert all(e.status is Status.PENDING and e.cli == "absent" for v, e in plan.items() if v >= 109)
    assert "supabase cli: recorded" in plan[100].describe()
    applied = runner.apply_all(migrations, applied_by="pytest")
    assert [m.version for m in applied] == [m.version for m in migrations if m.version >= 109]
    with psycopg.connect(empty_db) as conn:
        listed = [v for (v,) in conn.execute(  # what `supabase migration list` reads
            "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version")]
        assert listed == sorted(m.file_name.split("_")[0] for m in migrations)
        statements = conn.execute("SELECT statements FROM supabase_migrations.schema_migrations "
                                  "WHERE version = '301'").fetchone()[0]
        assert statements == split_statements((MIGRATIONS_DIR / "301_materialized_views.sql").read_text())
        ours = dict(conn.execute("SELECT version, applied_by FROM coldcopy_ops.schema_migrations"))
        assert ours[100] == "supabase cli" and ours[301] == "pytest"  # adopted with the checksum the CLI lacks
        assert len(ours) == len(migrations)
    assert runner.apply_all(migrations, applied_by="pytest") == []


def test_a_file_edited_after_the_cli_applied_it_is_refused(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    first = discover_migrations(folder)[0]
    push_like_the_cli(empty_db, first.path)
    first.path.write_text(first.path.read_text() + "\nCREATE TABLE public.sneaked_in (id int);\n")
    runner = MigrationRunner(lambda: psycopg.connect(empty_db))
    [entry] = runner.plan([first])
    assert entry.status is Status.CHANGED and entry.cli == "differs"
    with pytest.raises(MigrationError, match="the Supabase CLI applied version 100 with other statements"):
        runner.apply(first, applied_by="pytest")
    first.path.write_text(first.path.read_text().replace("\n", "\n\n"))  # white space alone is no change…
    assert runner.plan([first])[0].status is Status.CHANGED  # …but the sneaked-in table still is


def test_the_clis_own_files_are_a_second_source_after_the_runbooks(empty_db, tmp_path):
    cli = tmp_path / "supabase" / "migrations"
    cli.mkdir(parents=True)
    (cli / "20261129120000_add-lead-note.sql").write_text("ALTER TABLE public.leads ADD COLUMN note text;\n")
    migrations = discover_migrations(MIGRATIONS_DIR, cli)
    assert migrations[-1].file_name == "20261129120000_add-lead-note.sql" and migrations[-1].phase == 4
    assert [m.phase for m in migrations] == sorted(m.phase for m in migrations)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for statement in CLI_TABLE:  # a project the CLI has pushed to before
            conn.execute(statement)
    runner = MigrationRunner(lambda: psycopg.connect(empty_db))
    assert len(runner.apply_all(migrations, applied_by="pytest")) == len(migrations)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT name, statements FROM supabase_migrations.schema_migrations "
                            "WHERE version = '20261129120000'").fetchone() == \
            ("add-lead-note", ["ALTER TABLE public.leads ADD COLUMN note text"])
        assert conn.execute("SELECT phase FROM coldcopy_ops.schema_migrations WHERE version = 20261129120000"
                            ).fetchone()[0] == 4
    (cli / "2026_not_a_timestamp.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="not a Supabase CLI migration name"):
        discover_migrations(MIGRATIONS_DIR, cli)


def test_white_space_is_no_change_but_a_literal_or_a_semicolon_in_one_is(empty_db, tmp_path):
    """Issue 31, 11: the comparison dropped every space and ``;``, literals included, so a file whose applied
    literal was edited (``'do not send'`` to ``'donot send'``, ``'a;b'`` to ``'ab'``) was adopted as applied."""
    from coldcopy.migrations.supabase_history import same_statements

    text = ("CREATE TABLE public.notes (body text);\nINSERT INTO public.notes VALUES ('do not send'), ('a;b');\n"
            "CREATE FUNCTION public.one() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
            "CREATE FUNCTION public.two() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 2; END;\n")
    recorded = split_statements(text)
    assert same_statements(recorded, text.replace("\n", "\n\n  ").replace(" VALUES", "\n\tVALUES"))
    # another CLI version's splitter cut BEGIN ATOMIC's body at its ``;``: the same file
    other_splitter = recorded[:3] + ["CREATE FUNCTION public.two() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 2",
                                     "END"]
    assert len(recorded) == 4 and recorded != other_splitter
    assert same_statements(other_splitter, text)
    for edited in (text.replace("'do not send'", "'donot send'"), text.replace("'a;b'", "'ab'"),
                   text.replace("SELECT 1; $$", "SELECT  1; $$")):
        assert not same_statements(recorded, edited)
    folder = tmp_path / "migrations"
    folder.mkdir()
    path = folder / "100_notes.sql"
    path.write_text(text)
    push_like_the_cli(empty_db, path)
    path.write_text(text.replace("'do not send'", "'donot send'"))
    [entry] = MigrationRunner(lambda: psycopg.connect(empty_db)).plan(discover_migrations(folder))
    assert entry.status is Status.CHANGED and entry.cli == "differs"
