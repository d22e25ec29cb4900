"""The summaries maintained by signed deltas of their aggregate state (the counting method: Gupta & Mumick;
pg_ivm's hidden counts), each stated once: its group key, which event rows count, its counts and maxima, and
how the summary's columns derive from them.

Every expression reads the columns of an event row as the base table and the capture both give them
(:data:`EVENT_COLUMNS`; ``n`` is the row's sign: 1 for a base row, ±1 for a captured one). An expression here
restates the definition's (``analytics.<summary>_definition``, sql/migrations/305): a rebuild proves the two equal
before the summary is trusted to deltas (:mod:`coldcopy.refresh.incremental.delta`), and the daily verify compares
them again, so a migration that changes a definition and not this file costs a rebuild to the groups method, never
a wrong figure.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_COLUMNS = ("workspace_id", "campaign_id", "lead_id", "message_id", "email_account_id", "day", "event_type",
                 "bounce_type", "occurred_at", "n")
# The base rows, shaped like the captured ones.
EVENT_ROWS = ("SELECT workspace_id, campaign_id, lead_id, message_id, email_account_id, "
              "(occurred_at AT TIME ZONE 'UTC')::date AS day, event_type, bounce_type, occurred_at, 1 AS n "
              "FROM public.email_events")


@dataclass(frozen=True)
class Aggregate:
    """A summary's aggregate state, ``coldcopy_ops.ivm_agg_<table>`` (sql/ops/incremental.sql)."""

    summary: str
    key: tuple[str, ...]
    where: str  # which event rows the definition counts
    counts: tuple[tuple[str, str], ...]  # (state column, what a row adds: 0 or 1); the first is the group's rows
    projection: tuple[tuple[str, str], ...]  # (summary column, its expression over the state's columns)
    maxima: tuple[tuple[str, str, str], ...] = ()  # (state column, the value, which rows it is the max of)
    # (state column, the value counted once, which rows): a multiplicity per (group, column, value) in
    # coldcopy_ops.ivm_mult_<table>; the count moves only when one crosses 0 <-> 1
    distinct: tuple[tuple[str, str, str], ...] = ()
    window_days: int | None = None  # the definition keeps days from midnight (UTC) this many days ago
    # The rows the summary has one of each (``frame`` AS f, the state LEFT JOINed AS s on ``frame_key``, which
    # gives the key columns in order), and the delta table and column of the frame's changed rows; None: one
    # row per group of the state (AS s).
    frame: str | None = None
    frame_key: tuple[str, ...] = ()
    frame_changes: tuple[str, str] | None = None
    summary_key: tuple[str, ...] = ()  # the summary's primary key, when not the state's ``key``

    @property
    def table(self) -> str:
        return self.summary.split(".")[1]

    @property
    def state(self) -> str:
        return f"ivm_agg_{self.table}"

    @property
    def row_key(self) -> tuple[str, ...]:
        """The summary's primary key (its columns among the state's key)."""
        return self.summary_key or self.key

    @property
    def multiplicities(self) -> str:
        return f"ivm_mult_{self.table}"

    def window(self) -> str:
        """The definition's time filter on event rows, at the transaction's clock (applies run in UTC)."""
        if self.window_days is None:
            return "true"
        return f"occurred_at >= date_trunc('day', now()) - interval '{int(self.window_days)} days'"

    def cutoff(self) -> str:
        """The first day the window keeps, as a date."""
        return f"((date_trunc('day', now()) - interval '{int(self.window_days)} days') AT TIME ZONE 'UTC')::date"


def _is(event: str) -> str:
    return f"(event_type = '{event}')::int"


@dataclass(frozen=True)
class MessageSteps:
    """sequence_step_performance: events ⋈ messages ⋈ steps, through a helper per message that carries its step
    (:mod:`coldcopy.refresh.incremental.steps`; the join conditions are migration 306's: a step's messages of its
    own workspace, a message's events of its own workspace)."""

    summary: str = "analytics.sequence_step_performance"
    key: tuple[str, ...] = ("sequence_id", "workspace_id")  # the state's: the step, its messages' workspace
    summary_key: tuple[str, ...] = ("sequence_id",)
    frame: str = "public.campaign_sequences f"
    frame_key: tuple[str, ...] = ("f.id", "f.workspace_id")
    frame_changes: tuple[str, str] = ("ivm_delta_campaign_sequences", "id")
    projection: tuple[tuple[str, str], ...] = (
        ("workspace_id", "f.workspace_id"), ("campaign_id", "f.campaign_id"), ("sequence_id", "f.id"),
        ("step_number", "f.step_number"), ("variant", "f.variant"),
        ("messages_sent", "coalesce(s.messages_sent, 0)"), ("opened", "coalesce(s.opened, 0)"),
        ("replied", "coalesce(s.replied, 0)"),
        ("reply_rate", "round(coalesce(s.replied, 0)::numeric / nullif(coalesce(s.messages_sent, 0), 0), 4)"))

    @property
    def row_key(self) -> tuple[str, ...]:
        return self.summary_key

    @property
    def state(self) -> str:
        return "ivm_agg_sequence_step_performance"


# workspace_usage's windows (applied by coldcopy.refresh.incremental.usage): the 30 days' edge and the day it cuts,
# this month's first day (UTC), and per workspace the sums of the per-day state (a derived table standing for the
# state in SummaryRows: ``s``) over this month and over the whole days after the edge's.
USAGE_EDGE = "now() - interval '30 days'"
USAGE_EDGE_DAY = f"(({USAGE_EDGE}) AT TIME ZONE 'UTC')::date"
USAGE_MONTH = "(date_trunc('month', now() AT TIME ZONE 'UTC'))::date"
USAGE_WINDOWS = (f"(SELECT workspace_id, sum(rows) FILTER (WHERE day >= {USAGE_MONTH}) AS this_month, "
                 f"sum(rows) FILTER (WHERE day > {USAGE_EDGE_DAY}) AS whole_days "
                 "FROM coldcopy_ops.ivm_agg_workspace_usage GROUP BY workspace_id)")
_USAGE_CUT_DAY = ("(SELECT count(*) FROM public.email_events e WHERE e.workspace_id = f.id AND e.event_type = 'sent' "
                  f"AND e.occurred_at >= {USAGE_EDGE} AND e.occurred_at < (({USAGE_EDGE_DAY}) + 1)::timestamp "
                  "AT TIME ZONE 'UTC')")
USAGE_THIS_MONTH = "coalesce(s.this_month, 0)::bigint"
USAGE_LAST_30_DAYS = f"(coalesce(s.whole_days, 0) + {_USAGE_CUT_DAY})::bigint"


def _count(table: str, where: str = "") -> str:
    return f"(SELECT count(*) FROM public.{table} x WHERE x.workspace_id = f.id{where})"


@dataclass(frozen=True)
class WorkspaceUsage:
    """workspace_usage: a row per workspace (the frame), its windows from a per-(workspace, UTC day) state of sent
    events, its counts of small tables recounted for the workspaces whose rows changed."""

    summary: str = "analytics.workspace_usage"
    key: tuple[str, ...] = ("workspace_id",)
    frame: str = "public.workspaces f"
    frame_key: tuple[str, ...] = ("f.id",)
    projection: tuple[tuple[str, str], ...] = (
        ("workspace_id", "f.id"), ("plan", "f.plan"), ("monthly_email_quota", "f.monthly_email_quota"),
        ("active_members", _count("workspace_members", " AND x.status = 'active'")), ("leads", _count("leads")),
        ("active_campaigns", _count("campaigns", " AND x.status = 'active'")),
        ("email_accounts", _count("email_accounts")),
        ("emails_sent_this_month", USAGE_THIS_MONTH), ("emails_sent_30d", USAGE_LAST_30_DAYS))
    # the per-day state, stated as a generic aggregate (its signed sums, its window of days: 31 hold both windows)
    days: Aggregate = Aggregate(
        "analytics.workspace_usage", ("workspace_id", "day"), where="event_type = 'sent' AND workspace_id IS NOT NULL",
        counts=(("rows", "1"),), projection=(), window_days=31)

    @property
    def row_key(self) -> tuple[str, ...]:
        return self.key

    @property
    def state(self) -> str:
        return "ivm_agg_workspace_usage"


AGGREGATES: dict[str, Aggregate | MessageSteps | WorkspaceUsage] = {a.summary: a for a in (
    Aggregate(
        "analytics.daily_workspace_activity", ("workspace_id", "day", "event_type"),
        where="true", counts=(("rows", "1"),),
        projection=(("workspace_id", "workspace_id"), ("day", "day"), ("event_type", "event_type"),
                    ("events", "rows")),
        window_days=90),
    Aggregate(
        "analytics.email_deliverability", ("email_account_id", "day", "workspace_id"),
        where="email_account_id IS NOT NULL",
        counts=(("rows", "1"), ("sent", _is("sent")), ("delivered", _is("delivered")), ("bounced", _is("bounced")),
                ("hard_bounces", "(event_type = 'bounced' AND bounce_type IS NOT DISTINCT FROM 'hard')::int"),
                ("complaints", _is("complained"))),
        projection=(("workspace_id", "workspace_id"), ("email_account_id", "email_account_id"), ("day", "day"),
                    ("sent", "sent"), ("delivered", "delivered"), ("bounced", "bounced"),
                    ("hard_bounces", "hard_bounces"), ("complaints", "complaints"),
                    ("bounce_rate", "round(bounced::numeric / nullif(sent, 0), 4)"),
                    ("complaint_rate", "round(complaints::numeric / nullif(delivered, 0), 5)")),
        window_days=90),
    Aggregate(
        "analytics.lead_engagement", ("lead_id", "workspace_id"),
        where="lead_id IS NOT NULL",
        counts=(("rows", "1"), ("emails_sent", _is("sent")), ("opens", _is("opened")), ("clicks", _is("clicked")),
                ("replies", _is("replied"))),
        maxima=(("last_engaged_at", "occurred_at", "event_type IN ('opened', 'clicked', 'replied')"),),
        projection=(("workspace_id", "workspace_id"), ("lead_id", "lead_id"), ("emails_sent", "emails_sent"),
                    ("opens", "opens"), ("clicks", "clicks"), ("replies", "replies"),
                    ("last_engaged_at", "last_engaged_at"),
                    ("engagement_score", "least(100, opens + 3 * clicks + 10 * replies)"))),
    Aggregate(
        "analytics.campaign_analytics", ("campaign_id", "workspace_id"), summary_key=("campaign_id",),
        where="campaign_id IS NOT NULL",  # a campaign's events of its own workspace (migration 306)
        counts=(("rows", "1"), ("sent", _is("sent")), ("delivered", _is("delivered")), ("replied", _is("replied")),
                ("bounced", _is("bounced")), ("complained", _is("complained"))),
        distinct=(("opened", "message_id", "event_type = 'opened'"),
                  ("clicked", "message_id", "event_type = 'clicked'")),
        maxima=(("last_event_at", "occurred_at", "true"),),
        frame="public.campaigns f", frame_key=("f.id", "f.workspace_id"),
        frame_changes=("ivm_delta_campaigns", "id"),
        projection=(("workspace_id", "f.workspace_id"), ("campaign_id", "f.id"), ("name", "f.name"),
                    ("status", "f.status"), ("sent", "coalesce(s.sent, 0)"), ("delivered", "coalesce(s.delivered, 0)"),
                    ("opened", "coalesce(s.opened, 0)"), ("clicked", "coalesce(s.clicked, 0)"),
                    ("replied", "coalesce(s.replied, 0)"), ("bounced", "coalesce(s.bounced, 0)"),
                    ("complained", "coalesce(s.complained, 0)"),
                    ("open_rate", "round(coalesce(s.opened, 0)::numeric / nullif(s.delivered, 0), 4)"),
                    ("reply_rate", "round(coalesce(s.replied, 0)::numeric / nullif(s.delivered, 0), 4)"),
                    ("bounce_rate", "round(coalesce(s.bounced, 0)::numeric / nullif(s.sent, 0), 4)"),
                    ("last_event_at", "s.last_event_at"))),
    MessageSteps(),
    WorkspaceUsage(),
)}
