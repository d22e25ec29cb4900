"""A migration marker in the change archive, applied again on a restore: the same file (checked against the
marker's checksum) applied to the target by the migration runner, as :class:`coldcopy.pitr.replay.Replayer`
asks for one. Given to the replay by whoever composes a restore (the operators, a drill's operator)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner


class MigrationNotInCheckout(RuntimeError):
    """The archive applied a file this checkout lacks, or has in another version: replay from its release."""


def _quiet(conn: psycopg.Connection) -> psycopg.Connection:
    """The file's triggers stay quiet like the replay's: what they wrote at the source follows in the archive."""
    try:
        conn.execute("SET session_replication_role = replica")
        conn.commit()
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
    return conn


def marker_applier(target_dsn: str, directory: Path | None = None) -> Callable[[dict], None]:
    """What the replay calls for a migration marker (``directory``: default this release's sql/migrations)."""
    by_version = {m.version: m for m in (discover_migrations(directory) if directory else discover_migrations())}

    def apply(marker: dict) -> None:
        migration = by_version.get(marker["version"])
        if migration is None or marker["checksum"] not in {migration.checksum, *migration.reissues}:
            raise MigrationNotInCheckout(
                f"the archive applied {marker['file']} (sha256 {marker['checksum'][:12]}…); this checkout has no "
                "such file, or a different one: replay it from the matching release")
        MigrationRunner(lambda: _quiet(psycopg.connect(target_dsn))).apply(migration, applied_by="pitr replay")

    return apply
