"""A drift check's row in ``coldcopy_ops.schema_drift`` (sql/ops/schema_drift.sql), and what is new since the last
one: the objects an alert names (once per new drift, not once a day while it stays)."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from coldcopy import ops_schema


def previous_names(conn: psycopg.Connection) -> set[str] | None:
    """The objects drifted at the last check that ran (None: none ran yet)."""
    row = conn.execute("SELECT differences FROM coldcopy_ops.schema_drift WHERE outcome = 'checked' "
                       "ORDER BY checked_at DESC, id DESC LIMIT 1").fetchone()
    return None if row is None else {f"{d['kind']} {d['name']}" for d in row[0] or []}


def record(conn: psycopg.Connection, report=None, *, error: str | None = None) -> list[str]:
    """Record ``report`` (a :class:`~coldcopy.migrations.drift.DriftReport`) or, when it could not be made,
    ``error``; returns the objects drifted now that were not at the previous check."""
    ops_schema.ensure(conn, "schema_drift")
    if report is None:
        conn.execute("INSERT INTO coldcopy_ops.schema_drift (outcome, error) VALUES ('unknown', %s)", (error,))
        return []
    before = previous_names(conn) or set()
    names = [f"{d.kind} {d.name}" for d in report.differences]
    new = [n for n in names if n not in before]
    conn.execute(
        "INSERT INTO coldcopy_ops.schema_drift (outcome, objects, drifted, breaches, new_objects, differences, files, "
        "expected_s, live_s) VALUES ('checked', %s, %s, %s, %s, %s, %s, %s, %s)",
        (report.objects, len(report.differences), len(report.breaches), new,
         Jsonb([d.as_dict() for d in report.differences]), len(report.files), report.expected_s, report.live_s))
    return new
