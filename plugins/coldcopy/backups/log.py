"""The database the backups are of, and their record in it (``coldcopy_ops.backup_log``): the connection every
step opens (tracked, so ``on_kill`` ends its session) and the table made sure of."""

from __future__ import annotations

import psycopg

from coldcopy import kill_targets, ops_schema


class BackupLog:
    """Connections to ``dsn`` and the backup log table."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def connect(self, **kwargs) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, **kwargs)
        kill_targets.track_connection(conn)
        return conn

    def ensure(self, conn: psycopg.Connection) -> None:
        ops_schema.ensure(conn, "backups")
