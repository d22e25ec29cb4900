"""Operators of ``db_maintenance_daily`` and ``db_maintenance_weekly`` (see :mod:`coldcopy.maintenance`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Context

from coldcopy.operators.base import ColdCopyOperator


class BaseMaintenanceOperator(ColdCopyOperator):
    """Shared parts: the connection, timeouts and lock retries.

    :param statement_timeout: ceiling for each maintenance statement.

    A table that stays locked through ``lock_attempts`` (4 here; the first ``lock_timeout_ms`` 1 s) is skipped
    for this run.
    """

    ui_color = "#f3e8f6"
    default_execution_timeout = timedelta(hours=2)
    lock_timeout_ms = 1000
    lock_attempts = 4

    def __init__(self, *, statement_timeout: str = "1h", **kwargs) -> None:
        super().__init__(**kwargs)
        self.statement_timeout = statement_timeout

    @contextmanager
    def maintenance(self, context: Context):
        from coldcopy.maintenance import Maintenance

        ti = context["ti"]
        with self.hook(statement_timeout=self.statement_timeout).session() as conn:
            yield Maintenance(conn, statement_timeout=self.statement_timeout, lock_retry=self.lock_policy(),
                              dag_id=ti.dag_id, run_id=ti.run_id)


class PlanMaintenanceOperator(BaseMaintenanceOperator):
    """List what needs ``kind`` of maintenance (and, for vacuum, what does not and why); returns the targets.

    :param kind: ``vacuum`` (daily; DAG param ``all_tables`` takes every table), ``reindex``, ``vacuum_full``,
        ``analyze`` or ``invalid_indexes``.
    """

    def __init__(self, *, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def execute(self, context: Context) -> list[dict]:
        with self.maintenance(context) as m:
            if self.kind == "vacuum":
                picked, skipped = m.vacuum_plan(everything=bool(context["params"].get("all_tables", False)))
                for target in skipped:
                    self.log.info("not vacuumed: %s — %s", target.name, target.reason)
            elif self.kind == "vacuum_full":
                picked, too_big = m.full_vacuum_plan()
                for target in too_big:
                    m.report(target)
            else:
                picked = {"reindex": m.reindex_plan, "analyze": m.stale_statistics,
                          "invalid_indexes": m.invalid_leftovers}[self.kind]()
        for target in picked:
            self.log.info("%s: %s — %s", target.action, target.name, target.reason)
        self.say(context, f"{self.kind}: {len(picked)} target(s): {', '.join(t.name for t in picked)[:400]}"
                 if picked else f"{self.kind}: nothing to do today")
        return [{"name": t.name, "action": t.action, "reason": t.reason} for t in picked]


class MaintainOperator(BaseMaintenanceOperator):
    """Carry out one planned action (mapped over the plan: one task instance per table or index)."""

    template_fields: Sequence[str] = ("target",)

    def __init__(self, *, target: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target = target

    def execute(self, context: Context) -> str:
        from coldcopy.humanize import duration, size
        from coldcopy.maintenance import Target

        with self.maintenance(context) as m:
            done = m.run(target := Target(**self.target))
        sizes = f"; {size(done.before)} → {size(done.after)}" if done.after is not None else ""
        self.say(context, f"{target.action} {target.name}: {done.outcome} in {duration(done.seconds)}{sizes}" +
                 (f" ({done.detail})" if done.outcome != "done" else ""))
        return done.outcome


class PurgeCacheOperator(BaseMaintenanceOperator):
    """Delete expired rows of the cache tables in batches."""

    def execute(self, context: Context) -> int:
        with self.maintenance(context) as m:
            purged = m.purge_cache()
        self.say(context, f"purged {purged:,} expired cache row(s)")
        return purged
