"""The daily verify: a summary against its definition on the apply's own snapshot and clock (EXCEPT ALL both ways),
and its aggregate state's projection too where it has one; a difference is repaired in that transaction (the
state rebuilt from the base table, the summary made equal to the definition) and recorded in
``coldcopy_ops.ivm_verifications``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from coldcopy.refresh.incremental.appliers import applier_for

if TYPE_CHECKING:
    from coldcopy.refresh.incremental.maintainer import SummaryMaintainer


@dataclass
class Verified:
    summary: str
    rows: int
    missing: int  # rows of the definition the summary lacked
    extra: int  # rows of the summary the definition lacks
    repaired: bool
    duration_ms: int

    @property
    def equal(self) -> bool:
        return self.missing == 0 and self.extra == 0


def _differ(conn, left: sql.Composable, right: sql.Composable) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM ({} EXCEPT ALL {}) d").format(left, right)).fetchone()[0]


def compare(m: SummaryMaintainer, *, repair: bool, started: float) -> Verified:
    """In ``m``'s apply transaction, after the apply."""
    conn, definition = m.conn, sql.SQL("TABLE ivm_definition")
    conn.execute(sql.SQL("CREATE TEMP TABLE ivm_definition ON COMMIT DROP AS SELECT * FROM {}").format(m.definition))
    summary = sql.SQL("TABLE {}").format(m.table)
    missing, extra = _differ(conn, definition, summary), _differ(conn, summary, definition)
    delta = m.aggregate is not None and (m.state() or {}).get("method") == "delta"
    state_differs = False
    if delta:
        projected = applier_for(conn, m.aggregate).rows.projected()
        state_differs = bool(_differ(conn, definition, projected) or _differ(conn, projected, definition))
    rows = conn.execute("SELECT count(*) FROM ivm_definition").fetchone()[0]
    repaired = bool((missing or extra or state_differs) and repair)
    if repaired:
        if delta:
            applier_for(conn, m.aggregate).build_truth()  # the state again from the base table
            if _differ(conn, sql.SQL("TABLE ivm_truth"), definition) or _differ(conn, definition,
                                                                               sql.SQL("TABLE ivm_truth")):
                conn.execute("UPDATE coldcopy_ops.ivm_state SET method = 'groups' WHERE summary = %s",
                             (m.summary.name,))
            conn.execute("DROP TABLE ivm_truth")
        conn.execute("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS TABLE ivm_definition")
        m.replace_with_truth()
        conn.execute("DROP TABLE ivm_truth")
    conn.execute("DROP TABLE ivm_definition")
    result = Verified(m.summary.name, rows, missing, extra, repaired, int((time.monotonic() - started) * 1000))
    conn.execute("INSERT INTO coldcopy_ops.ivm_verifications (summary, duration_ms, summary_rows, missing_rows, "
                 "extra_rows, repaired) VALUES (%s, %s, %s, %s, %s, %s)",
                 (result.summary, result.duration_ms, rows, missing, extra, repaired))
    return result
