"""Which materialized views are refreshed, how often, and by when: read by the refresh DAGs and by the
health check that reports each view's age against its cadence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RefreshJob:
    cron: str  # UTC
    cadence: timedelta  # the interval between the cron's runs
    deadline: timedelta
    views: list[str]
    verify_summaries: bool = False  # a verify_summaries task after the refreshes (coldcopy.refresh.incremental)


REFRESH_JOBS: dict[str, RefreshJob] = {
    "refresh_campaign_analytics": RefreshJob(
        "0 * * * *", timedelta(hours=1), timedelta(minutes=20),
        ["analytics.campaign_analytics", "analytics.sequence_step_performance"]),
    "refresh_email_deliverability": RefreshJob(
        "0 */2 * * *", timedelta(hours=2), timedelta(minutes=40),
        ["analytics.email_deliverability", "analytics.daily_workspace_activity"]),
    "refresh_lead_engagement": RefreshJob(
        "0 */6 * * *", timedelta(hours=6), timedelta(hours=1),
        ["analytics.lead_engagement", "analytics.lead_intent_summary"]),
    "refresh_workspace_usage": RefreshJob(
        "0 2 * * *", timedelta(days=1), timedelta(hours=2), ["analytics.workspace_usage"], verify_summaries=True),
}
