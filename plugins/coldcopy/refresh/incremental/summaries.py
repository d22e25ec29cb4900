"""The summaries maintained incrementally, the group key of each and the tables whose changes it captures."""

from __future__ import annotations

from dataclasses import dataclass

from coldcopy import SQL_DIR

KEYS_DIR = SQL_DIR / "incremental"


@dataclass(frozen=True)
class Capture:
    """A source table's capture: its trigger function and the delta table it appends keys to."""

    table: str  # schema-qualified
    function: str  # in coldcopy_ops
    delta: str  # in coldcopy_ops
    # an UPDATE is captured by a row trigger filtered to the columns the definitions read
    # (:mod:`~coldcopy.refresh.incremental.update_filter`), not by the statement trigger
    row_updates: bool = False
    key: str = "id"  # the column the update capture records (with the workspace, for campaigns and steps)


CAPTURES: dict[str, Capture] = {c.table: c for c in (
    Capture("public.email_events", "ivm_capture_email_events", "ivm_delta_email_events"),
    Capture("public.campaigns", "ivm_capture_ids", "ivm_delta_campaigns", row_updates=True),
    Capture("public.campaign_sequences", "ivm_capture_ids", "ivm_delta_campaign_sequences", row_updates=True),
    Capture("public.email_messages", "ivm_capture_email_messages", "ivm_delta_email_messages"),
    Capture("public.intent_signals", "ivm_capture_intent_signals", "ivm_delta_intent_signals"),
    *(Capture(table, "ivm_capture_workspace_ids", "ivm_delta_workspaces", row_updates=True, key=key) for table, key in (
        ("public.workspaces", "id"), ("public.workspace_members", "workspace_id"), ("public.leads", "workspace_id"),
        ("public.email_accounts", "workspace_id"))),
)}


@dataclass(frozen=True)
class Summary:
    """``name`` (a table), its primary key ``key`` and the ``sources`` its definition reads.

    The changed groups are found by ``sql/incremental/<table>.sql``: a query of the key columns over the
    pending keys of each source (``{email_events}``…) and the clock's last apply (``{previous_clock}``).
    """

    name: str
    key: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def schema(self) -> str:
        return self.name.split(".")[0]

    @property
    def table(self) -> str:
        return self.name.split(".")[1]

    @property
    def definition(self) -> str:
        return f"{self.name}_definition"

    def keys_sql(self) -> str:
        return (KEYS_DIR / f"{self.table}.sql").read_text()

    def captures(self) -> list[Capture]:
        return [CAPTURES[s] for s in self.sources]


SUMMARIES: dict[str, Summary] = {s.name: s for s in (
    Summary("analytics.campaign_analytics", ("campaign_id",), ("public.campaigns", "public.email_events")),
    Summary("analytics.sequence_step_performance", ("sequence_id",),
            ("public.campaign_sequences", "public.email_messages", "public.email_events")),
    Summary("analytics.lead_engagement", ("lead_id", "workspace_id"), ("public.email_events",)),
    Summary("analytics.email_deliverability", ("email_account_id", "day", "workspace_id"), ("public.email_events",)),
    Summary("analytics.daily_workspace_activity", ("workspace_id", "day", "event_type"), ("public.email_events",)),
    Summary("analytics.lead_intent_summary", ("lead_id", "workspace_id"), ("public.intent_signals",)),
    Summary("analytics.workspace_usage", ("workspace_id",),
            ("public.workspaces", "public.workspace_members", "public.leads", "public.campaigns",
             "public.email_accounts", "public.email_events")),
)}


def consumers(table: str) -> list[Summary]:
    """The summaries reading the source ``table``."""
    return [s for s in SUMMARIES.values() if table in s.sources]
