"""Operators of ``db_health`` (see :mod:`coldcopy.health`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.connections import PGBOUNCER_CONN_ID  # noqa: F401 - re-exported under this module's name
from coldcopy.operators.base import ColdCopyOperator

# The keys of coldcopy.health.CHECKS, named here so a DAG file does not import psycopg while it is parsed.
CHECK_GROUPS = ("sizes", "slow_queries", "indexes", "connections", "engine", "cpu", "ops_freshness",
                "change_archive")


class HealthOperator(ColdCopyOperator):
    """Shared parts: a short statement ceiling (health queries are cheap or wrong) and the thresholds."""

    ui_color = "#e6f4ea"
    default_execution_timeout = timedelta(minutes=5)
    default_statement_timeout = "30s"

    @contextmanager
    def session(self) -> Iterator:
        from psycopg.rows import dict_row

        from coldcopy import ops_schema

        with self.hook().session() as conn:
            ops_schema.ensure(conn, "health", self.lock_policy())
            conn.row_factory = dict_row
            yield conn

    @staticmethod
    def thresholds(context: Context):
        """Defaults, then the Variable ``coldcopy_health_thresholds``, then the run's ``thresholds`` param."""
        from airflow.sdk import Variable

        from coldcopy.health import THRESHOLDS_VARIABLE, Thresholds

        try:
            return Thresholds.from_overrides(Variable.get(THRESHOLDS_VARIABLE, default=None, deserialize_json=True),
                                             context["params"].get("thresholds"))
        except ValueError as error:  # a configuration error: no retry can fix it
            raise AirflowFailException(str(error)) from error


class HealthCheckOperator(HealthOperator):
    """Run one check group, record each result's snapshot and send the alerts a change of state calls for.

    A check that errors is recorded as ``unknown`` and fails the task (one alert after its last try).

    :param group: a key of :data:`coldcopy.health.CHECKS`.
    """

    def __init__(self, *, group: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if group not in CHECK_GROUPS:
            raise ValueError(f"unknown health check group {group!r}; known: {', '.join(CHECK_GROUPS)}")
        self.group = group

    def paused_dags(self, context: Context) -> frozenset[str]:
        """The ColdCopy DAGs whose jobs a check judges (the refreshes) that are paused in Airflow: a stale view's
        cause, named in its summary. Asked through the task's own API (``ti.get_dag``); unknown → none."""
        from coldcopy.refresh_schedule import REFRESH_JOBS

        ti = context.get("ti")
        paused = set()
        for dag_id in REFRESH_JOBS:
            try:
                if ti is not None and ti.get_dag(dag_id).is_paused:
                    paused.add(dag_id)
            except Exception as error:  # noqa: BLE001 - a cause we cannot name is not a failed check
                self.log.info("could not ask whether %s is paused: %s", dag_id, error)
        return frozenset(paused)

    def execute(self, context: Context) -> list[dict]:
        from coldcopy import health

        t = self.thresholds(context)
        with self.session() as conn:
            results = health.run_group(health.Context(conn, t, pgbouncer_console_dsn(), self.paused_dags(context)),
                                       self.group)
            for result in results:
                self.log.info("%s: %s — %s", result.check, result.state, result.summary)
            health.record(conn, results, t, run_id=context["run_id"])
        failed = [r for r in results if r.failed]
        states = Counter(r.state for r in results)
        self.say(context, f"{self.group}: {len(results)} check(s), " +
                 ", ".join(f"{n} {state}" for state, n in sorted(states.items())) +
                 "".join(f"; {r.check}: {r.summary}" for r in results if r.state != "ok")[:600])
        if failed:
            raise RuntimeError("; ".join(f"{r.check}: {r.summary}" for r in failed))
        return [{"check": r.check, "state": r.state, "summary": r.summary} for r in results]


class PruneHealthHistoryOperator(HealthOperator):
    """Delete health snapshots older than the ``history_days`` threshold (default 90)."""

    def execute(self, context: Context) -> int:
        from coldcopy import health

        days = self.thresholds(context).history_days
        with self.session() as conn:
            deleted = health.prune(conn, days)
        self.say(context, f"pruned {deleted:,} health snapshot(s) older than {days} days")
        return deleted


def pgbouncer_console_dsn() -> str | None:
    """PgBouncer's admin console (database ``pgbouncer``) from the optional ``coldcopy_pgbouncer`` connection.
    No session settings: PgBouncer refuses startup parameters it does not know."""
    from psycopg.conninfo import make_conninfo

    from coldcopy import optional_connection

    conn = optional_connection(PGBOUNCER_CONN_ID)
    if conn is None:
        return None
    params = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
              "dbname": "pgbouncer", "sslmode": conn.extra_dejson.get("sslmode")}
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})
