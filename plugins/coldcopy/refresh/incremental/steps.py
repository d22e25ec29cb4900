"""``sequence_step_performance`` by deltas (:class:`StepApplier`): a join of three tables (events ⋈ messages ⋈
steps) with distinct counts, kept through a helper per message that carries its step.

Per outbound message in a step, ``ivm_msg_steps`` holds that step and the message's workspace; per message and
events' workspace, ``ivm_msg_events`` holds how many opened and replied events it has. A message adds 1 to its
step's ``messages_sent``, and 1 to ``opened`` (``replied``) while it has such an event of its own workspace: so the
distinct counts are counts of messages. An apply takes the messages whose events or whose own row changed, their
contributions before, applies the changes, their contributions after, and adds the difference to the steps'
state; the steps themselves are the frame (a step renamed, moved or gone is written again). The cost follows the
messages changed, not the size of their steps (a random 0.1 % of events touches nearly every step).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.aggregates import MessageSteps
from coldcopy.refresh.incremental.delta import Inconsistent
from coldcopy.refresh.incremental.replacement import replace_with
from coldcopy.refresh.incremental.summary_rows import SummaryRows

_CHANGED = "ARRAY(SELECT message_id FROM ivm_mm)"  # as an array: the lookups go through the primary keys
_CONTRIBUTIONS = (  # of the messages in ivm_mm: per (step, messages' workspace)
    "SELECT ms.sequence_id, ms.workspace_id, count(*) AS messages_sent, "
    "count(*) FILTER (WHERE me.opened > 0) AS opened, count(*) FILTER (WHERE me.replied > 0) AS replied "
    "FROM coldcopy_ops.ivm_msg_steps ms LEFT JOIN coldcopy_ops.ivm_msg_events me "
    "ON me.message_id = ms.message_id AND me.workspace_id = ms.workspace_id "
    "WHERE ms.message_id = ANY(" + _CHANGED + ") GROUP BY 1, 2")
_EVENTS = ("SELECT message_id, workspace_id, sum(n * (event_type = 'opened')::int)::bigint AS opened, "
           "sum(n * (event_type = 'replied')::int)::bigint AS replied FROM {rows} r WHERE message_id IS NOT NULL "
           "AND event_type IN ('opened', 'replied') GROUP BY 1, 2")
_STEPS = ("SELECT id AS message_id, workspace_id, sequence_id FROM public.email_messages "
          "WHERE direction = 'outbound' AND sequence_id IS NOT NULL")


class StepApplier:
    def __init__(self, conn: psycopg.Connection, aggregate: MessageSteps) -> None:
        self.conn, self.a = conn, aggregate
        self.state = sql.Identifier("coldcopy_ops", aggregate.state)
        self.rows = SummaryRows(conn, aggregate, self.state)

    def build_truth(self) -> None:
        conn = self.conn
        replace_with(conn, sql.Identifier("coldcopy_ops", "ivm_msg_events"), sql.SQL(_EVENTS).format(
            rows=sql.SQL("(SELECT message_id, workspace_id, event_type, 1 AS n FROM public.email_events)")),
            ("message_id", "workspace_id"))
        replace_with(conn, sql.Identifier("coldcopy_ops", "ivm_msg_steps"), sql.SQL(_STEPS), ("message_id",))
        replace_with(conn, self.state, sql.SQL(_CONTRIBUTIONS.replace(" WHERE ms.message_id = ANY(" + _CHANGED + ")",
                                                                      "")), ("sequence_id", "workspace_id"))
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS {}").format(self.rows.projected()))

    def apply(self, pending: sql.Composable, params: dict, *, day_moved: bool) -> int:
        """``pending``: the captured event rows (signed); the captured messages and steps are read here."""
        conn = self.conn
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_ev ON COMMIT DROP AS " + _EVENTS).format(rows=pending), params)
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_mm ON COMMIT DROP AS SELECT message_id FROM ivm_ev "
                             "UNION SELECT id FROM {} m WHERE id IS NOT NULL").format(
            capture.pending("ivm_delta_email_messages")), params)
        conn.execute("ANALYZE ivm_mm")
        conn.execute("CREATE TEMP TABLE ivm_before ON COMMIT DROP AS " + _CONTRIBUTIONS)
        below, zeros = conn.execute(
            "WITH up AS (INSERT INTO coldcopy_ops.ivm_msg_events AS t SELECT * FROM ivm_ev ON CONFLICT (message_id, "
            "workspace_id) DO UPDATE SET opened = t.opened + EXCLUDED.opened, replied = t.replied + EXCLUDED.replied "
            "RETURNING t.opened, t.replied) SELECT count(*) FILTER (WHERE opened < 0 OR replied < 0), "
            "count(*) FILTER (WHERE opened = 0 AND replied = 0) FROM up").fetchone()
        if below:
            raise Inconsistent(f"{self.a.summary}: a message's event count went below zero")
        if zeros:
            conn.execute("DELETE FROM coldcopy_ops.ivm_msg_events t USING ivm_ev e WHERE t.message_id = e.message_id "
                         "AND t.workspace_id = e.workspace_id AND t.opened = 0 AND t.replied = 0")
        conn.execute("DELETE FROM coldcopy_ops.ivm_msg_steps WHERE message_id = ANY(" + _CHANGED + ")")
        conn.execute("INSERT INTO coldcopy_ops.ivm_msg_steps " + _STEPS + " AND id = ANY(" + _CHANGED + ")")
        conn.execute("CREATE TEMP TABLE ivm_after ON COMMIT DROP AS " + _CONTRIBUTIONS)
        conn.execute("CREATE TEMP TABLE ivm_d ON COMMIT DROP AS SELECT sequence_id, workspace_id, "
                     "sum(messages_sent)::bigint AS messages_sent, sum(opened)::bigint AS opened, "
                     "sum(replied)::bigint AS replied FROM (TABLE ivm_after UNION ALL SELECT sequence_id, "
                     "workspace_id, -messages_sent, -opened, -replied FROM ivm_before) c GROUP BY 1, 2 "
                     "HAVING sum(messages_sent) <> 0 OR sum(opened) <> 0 OR sum(replied) <> 0")
        below, zeros = conn.execute(sql.SQL(
            "WITH up AS (INSERT INTO {} AS s SELECT * FROM ivm_d ON CONFLICT (sequence_id, workspace_id) DO "
            "UPDATE SET messages_sent = s.messages_sent + EXCLUDED.messages_sent, opened = s.opened + EXCLUDED.opened, "
            "replied = s.replied + EXCLUDED.replied RETURNING s.messages_sent, s.opened, s.replied) "
            "SELECT count(*) FILTER (WHERE messages_sent < 0 OR opened < 0 OR replied < 0), "
            "count(*) FILTER (WHERE messages_sent = 0) FROM up").format(self.state)).fetchone()
        if below:
            raise Inconsistent(f"{self.a.summary}: a step's count went below zero")
        if zeros:
            conn.execute(sql.SQL("DELETE FROM {} s USING ivm_d d WHERE s.sequence_id = d.sequence_id AND "
                                 "s.workspace_id = d.workspace_id AND s.messages_sent = 0").format(self.state))
        delta, column = self.a.frame_changes
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_keys ON COMMIT DROP AS SELECT sequence_id FROM ivm_d UNION "
                             "SELECT {} FROM {} c").format(sql.Identifier(column), capture.pending(delta)), params)
        groups = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        if groups:
            self.rows.write_moved("ivm_keys")
        conn.execute("DROP TABLE ivm_ev, ivm_mm, ivm_before, ivm_after, ivm_d, ivm_keys")
        return groups
