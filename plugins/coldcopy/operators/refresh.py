"""Operator refreshing one materialized view or incremental summary (:mod:`coldcopy.refresh.views`,
:mod:`coldcopy.refresh.incremental`), as :func:`coldcopy.refresh.dispatch.refresher_for` picks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import Context

from coldcopy.operators.base import ColdCopyOperator


class RefreshMaterializedViewOperator(ColdCopyOperator):
    """Refresh ``view`` concurrently when its sources changed; skip (and log why) when nothing can change.

    Every decision is recorded in ``coldcopy_ops.mv_refresh_log``. A refresh returns its outcome to XCom; a
    skip ends the task in Airflow's *skipped* state with the reason, so the grid tells the two apart.

    :param view: schema-qualified materialized view, e.g. ``analytics.campaign_analytics``.
    :param statement_timeout: ceiling for the refresh statement.

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
        statement_timeout: str = "30min",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.statement_timeout = statement_timeout

    def execute(self, context: Context) -> dict:
        from coldcopy.refresh.dispatch import refresher_for
        from coldcopy.refresh.runs import RefreshRun

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


class VerifySummariesOperator(ColdCopyOperator):
    """Compare each incremental summary with its definition (EXCEPT ALL both ways, on the snapshot of an apply);
    repair a difference in the same transaction and alert once about it.

    A difference means the incremental path missed or doubled something — a capture lost, a definition edited
    without its key query — so the task alerts even though it repaired: the repair hides the symptom, not the
    cause. Every verification is a row of ``coldcopy_ops.ivm_verifications``.

    :param summaries: schema-qualified summaries (:data:`coldcopy.refresh.incremental.summaries.SUMMARIES` by default).
    """

    template_fields: Sequence[str] = ("summaries",)
    ui_color = "#e6f0fa"
    default_execution_timeout = timedelta(hours=1)

    def __init__(self, *, summaries: list[str] | None = None, statement_timeout: str = "30min", **kwargs) -> None:
        super().__init__(**kwargs)
        self.summaries = summaries
        self.statement_timeout = statement_timeout

    def execute(self, context: Context) -> list[dict]:
        from dataclasses import asdict

        from coldcopy import alerts
        from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
        from coldcopy.refresh.incremental.summaries import SUMMARIES

        results = []
        with self.hook(statement_timeout=self.statement_timeout).session() as conn:
            for name in self.summaries or list(SUMMARIES):
                verified = SummaryMaintainer(conn, name, lock_retry=self.lock_policy(),
                                             statement_timeout=self.statement_timeout).verify(repair=True)
                results.append(asdict(verified))
                if not verified.equal:
                    alerts.send_for_task(
                        context, f"{name} differed from its definition: {verified.missing} row(s) missing, "
                                 f"{verified.extra} extra; repaired by a rebuild", kind="summary_repaired",
                        table=name, missing=verified.missing, extra=verified.extra)
        differed = [r["summary"] for r in results if r["missing"] or r["extra"]]
        self.say(context, f"{len(results)} summaries verified against their definitions in "
                          f"{sum(r['duration_ms'] for r in results) / 1000:.1f} s: "
                          + (f"repaired {', '.join(differed)}" if differed else "all equal"))
        return results
