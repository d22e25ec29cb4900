"""The drills' history, ``coldcopy_ops.restore_drills`` in the live database (``sql/ops/restore_drills.sql``)."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from coldcopy import ops_schema

COLUMNS = ("started_at", "finished_at", "outcome", "error", "as_of", "backup_key", "chain", "segments",
           "verify_server", "jobs", "rto_s", "download_s", "restore_s", "replay_s", "verify_s", "erasures_s",
           "rpo_s", "at_risk_transactions", "budget_s", "bytes", "rows", "changes_replayed", "checks")
DEFAULT_BUDGET_S = 3600.0
BUDGET_VARIABLE = "coldcopy_restore_drill_rto_budget_s"


def save(conn, row: dict) -> int:
    """Insert one drill (``conn``: autocommit, the live database); returns its id."""
    ops_schema.ensure(conn, "restore_drills")
    values = [Jsonb(row.get(c)) if c == "checks" else row.get(c) for c in COLUMNS]
    return conn.execute(f"INSERT INTO coldcopy_ops.restore_drills ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
                        f"({', '.join(['%s'] * len(COLUMNS))}) RETURNING id", values).fetchone()[0]


def recent(conn, limit: int = 30) -> list[dict]:
    """The newest drills first, as dicts (``conn`` rows as dicts or tuples)."""
    cur = conn.cursor()
    cur.execute("SELECT id, " + ", ".join(COLUMNS) + " FROM coldcopy_ops.restore_drills "  # noqa: S608
                "ORDER BY finished_at DESC LIMIT %s", (limit,))
    names = [d.name for d in cur.description]
    return [dict(row) if isinstance(row, dict) else dict(zip(names, row, strict=True)) for row in cur.fetchall()]
