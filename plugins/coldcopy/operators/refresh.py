"""Operator refreshing one materialized view or incremental summary (:mod:`coldcopy.refresh`,
:mod:`coldcopy.incremental`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import Context

from coldcopy import DB_CONN_ID
from coldcopy.operators.base import ColdCopyOperator


class RefreshMaterializedViewOperator(ColdCopyOperator):
    """Refresh ``view`` concurrently when its sources changed; skip (and log why) when nothing can change.

    Every decision is recorded in ``coldcopy_ops.mv_refresh_log``. A refresh returns its outcome to XCom; a
    skip ends the task in Airflow's *skipped* state with the reason, so the grid tells the two apart.

    :param view: schema-qualified materialized view, e.g. ``analytics.campaign_analytics``.
    :param conn_id: Airflow connection of the database.
    :param statement_timeout: ceiling for the refresh statement.
    :param lock_timeout_ms: lock_timeout of the first attempt to lock the view (grows on retries).
    :param lock_attempts: attempts before a lock timeout fails the try.

    The DAG param ``force`` (bool) refreshes even when no source changed; a summary is rebuilt from its
    definition.
    """

    template_fields: Sequence[str] = ("view",)
    ui_color = "#e6f0fa"
    default_execution_timeout = timedelta(minutes=45)

    def __init__(
        self,
        *,
        view: str,
        conn_id: str = DB_CONN_ID,
        statement_timeout: str = "30min",
        lock_timeout_ms: int = 2000,
        lock_attempts: int = 6,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.conn_id = conn_id
        self.statement_timeout = statement_timeout
        self.lock_timeout_ms = lock_timeout_ms
        self.lock_attempts = lock_attempts

    def execute(self, context: Context) -> dict:
        from coldcopy.refresh import RefreshRun, refresher_for

        run = RefreshRun.for_context(context)
        with self.hook(statement_timeout=self.statement_timeout).session() as conn:
            refresher = refresher_for(
                conn, self.view, lock_retry=self.lock_policy(), statement_timeout=self.statement_timeout,
                force=bool(context["params"].get("force", False)),
            )
            outcome = refresher.run(run)
        if outcome.action == "skipped":
            from coldcopy.run_notes import skip

            skip(context, f"{self.view} not refreshed: {outcome.reason}")
        from coldcopy.humanize import duration

        rows = f", {outcome.row_count:,} rows" if outcome.row_count is not None else ""
        self.say(context, f"{self.view} refreshed ({outcome.mode or 'refresh'}) in "
                          f"{duration(outcome.duration_ms / 1000)}{rows}: {outcome.reason}")
        return outcome.as_dict()
