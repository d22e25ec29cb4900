"""The daily schema drift check (``schema_drift``): :mod:`coldcopy.migrations.drift` run, recorded, and alerted
once for what is new."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.operators.base import ColdCopyOperator


class SchemaDriftOperator(ColdCopyOperator):
    """Build the expected schema from the applied files on ``coldcopy_verify_db`` (a server of its own), compare
    it with the live catalog, record the result in ``coldcopy_ops.schema_drift`` and send one alert naming the
    objects drifted since the last check (security-relevant ones first). Without a server of its own the check
    is recorded *unknown* (db_health says so) and the task succeeds: nothing is wrong with the database. An
    applied file changed on disk fails the task: no expected schema can be built."""

    default_execution_timeout = timedelta(minutes=30)

    def execute(self, context: Context) -> dict:
        import psycopg

        from coldcopy import alerts
        from coldcopy.migrations import MigrationError, discover_migrations, drift
        from coldcopy.migrations.drift import record

        server, why_not = self.own_verify_server("the drift check")
        with psycopg.connect(self.hook().dsn(), autocommit=True) as conn:
            if server is None:
                record.record(conn, error=why_not)
                self.say(context, f"drift not checked: {why_not}")
                return {"outcome": "unknown", "why": why_not}
            try:
                report = drift.find(self.hook().dsn(), server, discover_migrations())
            except MigrationError as error:
                record.record(conn, error=str(error))
                raise AirflowFailException(f"drift not checked: {error}") from None
            new = record.record(conn, report)
        if new:
            ordered = sorted(report.differences, key=lambda d: (d.security is None, d.kind, d.name))
            fresh = [d for d in ordered if f"{d.kind} {d.name}" in set(new)]
            alerts.send_for_task(
                context, f"schema drift: {len(new)} object(s) differ from what the applied files built"
                + (f", {sum(1 for d in fresh if d.security)} security-relevant" if any(d.security for d in fresh)
                   else "") + ": " + "; ".join(f"{d.kind} {d.name} {d.change}" + (f" ({d.security})" if d.security
                                                                                  else "") for d in fresh[:5]),
                kind="schema_drift", next_step="docs/migrations.md, Schema drift: repair it, or adopt it as a "
                "migration (python -m coldcopy.migrations.drift.adopt)")
        self.say(context, report.summary())
        return {"outcome": "checked", "summary": report.summary(), "drifted": len(report.differences),
                "breaches": len(report.breaches), "new": new, "expected_s": report.expected_s,
                "live_s": report.live_s}
