"""The ``coldcopy_ops`` schema: bookkeeping tables of the ops jobs, defined in ``sql/ops/*.sql``.

Each file is idempotent and applied on first use by the job that needs it, so the application's
migrations stay exactly the application's.
"""

from __future__ import annotations

from functools import cache

import psycopg

from coldcopy import SQL_DIR

OPS_SQL_DIR = SQL_DIR / "ops"
# Serializes concurrent first uses: two sessions running CREATE TABLE IF NOT EXISTS at once can collide.
_ENSURE_LOCK_KEY = 4_206_318_711_032_002


@cache
def _ddl(name: str) -> bytes:
    return (OPS_SQL_DIR / f"{name}.sql").read_bytes()


def ensure(conn: psycopg.Connection, name: str) -> None:
    """Apply ``sql/ops/<name>.sql`` in its own transaction (``conn`` must be in autocommit mode)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ENSURE_LOCK_KEY,))
        conn.execute(_ddl(name))
