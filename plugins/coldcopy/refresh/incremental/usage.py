"""``workspace_usage`` by deltas (:class:`UsageApplier`): a row per workspace with two windows that move with the
clock (sent events this UTC month; sent events in the last 30 days, to the microsecond) and four counts of small
tables (active members, leads, active campaigns, e-mail accounts).

* The windows: ``coldcopy_ops.ivm_agg_workspace_usage`` holds the sent events per workspace and UTC day of the
  last 31 days, kept by the signed event rows captured (the counting method). This month is the sum of its days
  from the month's first; the 30 days are the sum of the days after the one the window's edge cuts, plus that
  day's sent events from the edge on (an index range of one day: ``email_events (workspace_id, event_type,
  occurred_at)``). An apply writes the workspaces whose sent events changed, those with events on the days the
  edge crossed since the last apply, and every workspace when the month turned.
* The counts: recounted from the base tables for the workspaces whose rows there changed (captured into
  ``ivm_delta_workspaces``, and the campaigns' own capture, which records each image's workspace).

Each apply's cost follows the sent events that changed, one day of sent events at the edge and the workspaces
whose rows changed, never a month of events. A clock set back past the state's first day held
(``ivm_state.first_day``) rebuilds it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.aggregates import (
    EVENT_ROWS,
    USAGE_EDGE_DAY,
    USAGE_LAST_30_DAYS,
    USAGE_MONTH,
    USAGE_THIS_MONTH,
    USAGE_WINDOWS,
    WorkspaceUsage,
)
from coldcopy.refresh.incremental.delta import DeltaApplier
from coldcopy.refresh.incremental.replacement import replace_with
from coldcopy.refresh.incremental.summary_rows import SummaryRows


class UsageApplier:
    def __init__(self, conn: psycopg.Connection, usage: WorkspaceUsage) -> None:
        self.conn, self.a = conn, usage
        self.days = DeltaApplier(conn, usage.days)  # its sums of signed rows and their addition to the state
        self.state = sql.Identifier("coldcopy_ops", usage.state)
        self.rows = SummaryRows(conn, usage, sql.SQL(USAGE_WINDOWS))

    def build_truth(self) -> None:
        replace_with(self.conn, self.state, self.days.grouped(sql.SQL(EVENT_ROWS), signed=False),
                     self.a.days.key, columns=("workspace_id", "day", "rows"))
        self._held_from(sql.SQL(self.a.days.cutoff()))
        self.conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS {}").format(self.rows.projected()))

    def apply(self, pending: sql.Composable, params: dict, *, day_moved: bool) -> int | None:
        """The captured event rows ``pending`` into the state, the workspaces that moved written; None when the
        clock went back past the state's first day (a rebuild)."""
        conn = self.conn
        # The first day the windows read now (and the last apply's edge, to find the workspaces it crossed), against
        # the first day the state holds: a clock set back past it (once, or a little each time) rebuilds.
        missing, month_turned = conn.execute(
            "SELECT least(" + USAGE_MONTH + ", " + USAGE_EDGE_DAY + ", ((%(previous_clock)s::timestamptz - interval "
            "'30 days') AT TIME ZONE 'UTC')::date) < coalesce((SELECT first_day FROM coldcopy_ops.ivm_state WHERE "
            "summary = %(summary)s), ((date_trunc('day', %(previous_clock)s::timestamptz) - interval '31 days') "
            "AT TIME ZONE 'UTC')::date), date_trunc('month', now()) <> date_trunc('month', "
            "%(previous_clock)s::timestamptz)", {**params, "summary": self.a.summary}).fetchone()
        if missing:
            return None
        # the workspaces whose window figures can have moved: sent events changed, events on the days the 30-day
        # edge crossed (read before those days leave the state), every workspace when the month turned
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_d ON COMMIT DROP AS {}").format(
            self.days.grouped(pending, signed=True)), params)
        conn.execute(_WINDOWS_MOVED, {**params, "month_turned": month_turned})
        if conn.execute("SELECT count(*) FROM ivm_d").fetchone()[0]:
            self.days.add()
        if day_moved:
            conn.execute(sql.SQL("DELETE FROM {} WHERE day < {}").format(self.state, sql.SQL(self.a.days.cutoff())))
            self._held_from(sql.SQL("greatest(coalesce(first_day, {}), {})").format(
                sql.SQL(self.a.days.cutoff()), sql.SQL(self.a.days.cutoff())))
        # the workspaces whose rows changed: recounted and written whole (a workspace gone, its row gone)
        conn.execute(sql.SQL(_ROWS_MOVED).format(w=capture.pending("ivm_delta_workspaces"),
                                                 c=capture.pending("ivm_delta_campaigns")), params)
        counted = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        if counted:
            self.rows.write_moved("ivm_keys")
        moved = conn.execute(_WINDOWS_WRITTEN).rowcount  # the others: their two window figures, where they moved
        conn.execute("DROP TABLE ivm_d, ivm_windows, ivm_keys")
        return counted + moved


    def _held_from(self, first_day: sql.Composable) -> None:
        """Record the state's first day held (in the summary's row of ivm_state, when it has one)."""
        self.conn.execute(sql.SQL("UPDATE coldcopy_ops.ivm_state SET first_day = {} WHERE summary = %s").format(
            first_day), (self.a.summary,))


_WINDOWS_MOVED = (
    "CREATE TEMP TABLE ivm_windows ON COMMIT DROP AS SELECT workspace_id FROM ivm_d UNION "
    "SELECT workspace_id FROM coldcopy_ops.ivm_agg_workspace_usage, (SELECT ((%(previous_clock)s::timestamptz "
    f"- interval '30 days') AT TIME ZONE 'UTC')::date AS was, {USAGE_EDGE_DAY} AS edge) e "
    "WHERE day BETWEEN least(was, edge) AND greatest(was, edge) "
    "UNION SELECT id FROM public.workspaces WHERE %(month_turned)s")
_ROWS_MOVED = (
    "CREATE TEMP TABLE ivm_keys ON COMMIT DROP AS SELECT workspace_id FROM {w} d WHERE workspace_id IS NOT NULL "
    "UNION SELECT workspace_id FROM {c} d WHERE workspace_id IS NOT NULL "
    "UNION SELECT c.workspace_id FROM {c} d JOIN public.campaigns c ON c.id = d.id")
_WINDOWS_WRITTEN = (
    "UPDATE analytics.workspace_usage t SET emails_sent_this_month = v.this_month, emails_sent_30d = v.last_30 "
    f"FROM (SELECT f.id AS workspace_id, {USAGE_THIS_MONTH} AS this_month, {USAGE_LAST_30_DAYS} AS last_30 "
    f"FROM public.workspaces f LEFT JOIN {USAGE_WINDOWS} s ON s.workspace_id = f.id "
    "WHERE f.id IN (SELECT workspace_id FROM ivm_windows) AND f.id NOT IN (SELECT workspace_id FROM ivm_keys)) v "
    "WHERE t.workspace_id = v.workspace_id "
    "AND (t.emails_sent_this_month, t.emails_sent_30d) IS DISTINCT FROM (v.this_month, v.last_30)")
