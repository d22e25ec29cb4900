"""Where a migration file stands against the live history: ours (``coldcopy_ops.schema_migrations``) and the
Supabase CLI's (:mod:`coldcopy.migrations.supabase_history`) — applied, changed since, or pending — and the error
an edited applied file gets. Read by the runner's plan and before every apply."""

from __future__ import annotations

import psycopg

from coldcopy import safe_names
from coldcopy.migrations import Migration, MigrationError, Status, supabase_history

HISTORY_TABLE = "coldcopy_ops.schema_migrations"


def history(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    exists = safe_names.exists(conn, HISTORY_TABLE)
    if not exists:
        return {}
    rows = conn.execute(f"SELECT version, name, checksum FROM {HISTORY_TABLE}").fetchall()
    return {version: (name, checksum) for version, name, checksum in rows}


def cli_view(migration: Migration, cli: dict) -> str:
    version = (supabase_history.cli_version(migration.file_name) or ("",))[0]
    if version not in cli:
        return "absent"
    return "recorded" if supabase_history.same_statements(cli[version][1], migration.read()) else "differs"


def status_of(migration: Migration, history: dict[int, tuple[str, str]], cli: dict | None = None) -> Status:
    if migration.version in history:
        recorded = history[migration.version][1]
        return Status.APPLIED if recorded == migration.checksum or recorded in migration.reissues \
            else Status.CHANGED
    version = (supabase_history.cli_version(migration.file_name) or ("",))[0]
    if cli and version in cli:  # applied by `supabase db push`: the same statements, or an edited file
        return Status.APPLIED if supabase_history.same_statements(cli[version][1], migration.read()) \
            else Status.CHANGED
    return Status.PENDING


def changed_error(migration: Migration, history: dict[int, tuple[str, str]]) -> MigrationError:
    if migration.version not in history:
        return MigrationError(
            f"{migration.file_name}: the Supabase CLI applied version {migration.file_name.split('_')[0]} with "
            "other statements than the file now holds. Applied migrations must not be edited: restore the "
            "file and put the change in a new migration.")
    return MigrationError(
        f"{migration.file_name}: already applied with checksum {history[migration.version][1][:12]}…, "
        f"but the file now has {migration.checksum[:12]}…. Applied migrations must not be edited: "
        f"restore the file and put the change in a new migration."
    )
