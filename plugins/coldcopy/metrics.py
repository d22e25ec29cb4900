"""The health figures for Prometheus: ``GET /coldcopy-health/metrics`` in the text exposition format (issue 23).

Served from what the jobs already recorded — ``db_health``'s latest snapshots, ``coldcopy_ops.backup_log``,
the GDPR requests and the last successful run of each ColdCopy DAG in Airflow's metadata — so a scrape runs no
check and costs a few indexed reads, however often Prometheus asks. Built with ``prometheus_client`` (a registry
per scrape, so a figure that disappeared is not served stale).

Metric names (every one ``coldcopy_``-prefixed; the dashboard and rules use exactly these, a test checks it):
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import psycopg

from coldcopy import safe_names
from coldcopy.connections import TOKEN_CONN_ID  # noqa: F401 - re-exported under this module's name

STATES = {"ok": 0, "warning": 1, "breach": 2, "unknown": 3}
METRICS = {  # name → help
    "coldcopy_health_check_value": "Latest value of each db_health check, in the check's unit",
    "coldcopy_health_check_state": "Latest state of each db_health check: 1 for the state it is in",
    "coldcopy_health_check_severity": "Latest state of each db_health check: 0 ok, 1 warning, 2 breach, 3 unknown",
    "coldcopy_health_check_age_seconds": "Seconds since each db_health check last ran",
    "coldcopy_view_age_seconds": "Seconds since each materialized view was last refreshed (or found current)",
    "coldcopy_view_cadence_seconds": "Each materialized view's refresh cadence",
    "coldcopy_backup_last_verified_age_seconds": "Seconds since the newest restore-verified whole-database backup",
    "coldcopy_backup_last_verified_bytes": "Size of the newest restore-verified whole-database backup",
    "coldcopy_partitions_ahead_months": "email_events partitions that exist ahead of the current month",
    "coldcopy_gdpr_requests_open": "Data subject requests not completed or rejected",
    "coldcopy_gdpr_oldest_open_request_age_seconds": "Age of the oldest open data subject request",
    "coldcopy_gdpr_requests_overdue": "Open data subject requests past their due date",
    "coldcopy_change_archive_lag_seconds": "How far the change archive is behind (seconds), from db_health",
    "coldcopy_change_archive_retained_wal_bytes": "WAL kept for the change archive's slot, from db_health",
    "coldcopy_dag_last_success_timestamp_seconds": "End of each ColdCopy DAG's last successful run (Unix time)",
    "coldcopy_restore_drill_rto_seconds": "RTO of the newest passed restore drill: start to a usable, checked database",
    "coldcopy_restore_drill_rto_phase_seconds": "The newest passed restore drill's RTO by phase",
    "coldcopy_restore_drill_rpo_seconds": "Achieved RPO at the newest passed restore drill's second",
    "coldcopy_restore_drill_last_success_timestamp": "End of the newest passed restore drill (Unix time)",
    "coldcopy_restore_drill_failed": "1 when the newest restore drill failed, else 0",
    "coldcopy_restore_drill_rto_budget_seconds": "The RTO budget the newest drill ran under (Variable)",
    "coldcopy_schema_drift_objects": "Objects the newest schema drift check found differing from what the applied "
                                     "migration files build, by whether security-relevant",
}
__doc__ += "\n".join(f"\n* ``{name}``: {text}" for name, text in METRICS.items())



def token_matches(presented: str | None) -> bool:
    """Whether ``presented`` is the password of the connection ``coldcopy_metrics_token`` (constant time); False
    when either is missing, so an unconfigured endpoint serves nothing."""
    from coldcopy import optional_connection

    connection = optional_connection(TOKEN_CONN_ID)
    expected = (connection.password or "") if connection is not None else ""
    return bool(expected) and bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


LABELS = {"coldcopy_health_check_value": ("check", "unit"), "coldcopy_health_check_state": ("check", "state"),
          "coldcopy_health_check_severity": ("check",), "coldcopy_health_check_age_seconds": ("check",),
          "coldcopy_view_age_seconds": ("view", "dag_id"), "coldcopy_view_cadence_seconds": ("view", "dag_id"),
          "coldcopy_dag_last_success_timestamp_seconds": ("dag_id",),
          "coldcopy_restore_drill_rto_phase_seconds": ("phase",), "coldcopy_schema_drift_objects": ("security",)}
DRILL_PHASES = ("download", "restore", "replay", "verify", "erasures")


def collect(conn: psycopg.Connection, dag_success: dict[str, datetime] | None = None) -> bytes:
    """The exposition text of every figure ``conn`` (the ColdCopy database, rows as tuples) has recorded, and of
    ``dag_success`` (dag_id → end of its last successful run). Every metric is described (HELP, TYPE) on every
    scrape; a figure not known (no backup yet, no change archive) has no sample rather than a made-up 0."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    families = {name: GaugeMetricFamily(name, text, labels=LABELS.get(name)) for name, text in METRICS.items()}

    def put(name: str, figure: float, *labels: str) -> None:
        families[name].add_metric(list(labels), float(figure))

    now = datetime.now(UTC)
    if safe_names.exists(conn, "coldcopy_ops.health_latest"):
        rows = conn.execute(
            "SELECT s.check_name, s.taken_at, s.state, s.value, coalesce(s.unit, ''), s.details "
            "FROM coldcopy_ops.health_latest l JOIN coldcopy_ops.health_snapshot s ON s.id = l.snapshot_id").fetchall()
        for check, taken_at, current, figure, unit, details in rows:
            since = (now - taken_at).total_seconds()
            if figure is not None:
                put("coldcopy_health_check_value", figure, check, unit)
            for name in STATES:
                put("coldcopy_health_check_state", 1 if name == current else 0, check, name)
            put("coldcopy_health_check_severity", STATES.get(current, 3), check)
            put("coldcopy_health_check_age_seconds", since, check)
            details = details or {}
            if check == "view_freshness":
                for view in details.get("views", []):
                    if view.get("age_s") is not None:  # as of the check, aged since
                        put("coldcopy_view_age_seconds", view["age_s"] + since, view["view"], view["dag_id"])
                    put("coldcopy_view_cadence_seconds", view["cadence_s"], view["view"], view["dag_id"])
            elif check == "partition_horizon" and figure is not None:
                put("coldcopy_partitions_ahead_months", figure)
            elif check == "change_archive" and figure is not None:  # its value is the lag in minutes
                put("coldcopy_change_archive_lag_seconds", figure * 60)
                if details.get("retained_bytes") is not None:
                    put("coldcopy_change_archive_retained_wal_bytes", details["retained_bytes"])
    if safe_names.exists(conn, "coldcopy_ops.backup_log"):
        newest = conn.execute(
            "SELECT finished_at, byte_size FROM coldcopy_ops.backup_log WHERE kind = 'database' AND verification = "
            "'verified' AND deleted_at IS NULL ORDER BY finished_at DESC LIMIT 1").fetchone()
        if newest:
            put("coldcopy_backup_last_verified_age_seconds", (now - newest[0]).total_seconds())
            put("coldcopy_backup_last_verified_bytes", newest[1])
    if safe_names.exists(conn, "public.data_subject_requests"):
        open_count, oldest, overdue = conn.execute(
            "SELECT count(*), min(created_at), count(*) FILTER (WHERE due_at < now()) FROM "
            "public.data_subject_requests WHERE status NOT IN ('completed', 'rejected')").fetchone()
        put("coldcopy_gdpr_requests_open", open_count)
        put("coldcopy_gdpr_requests_overdue", overdue)
        put("coldcopy_gdpr_oldest_open_request_age_seconds", (now - oldest).total_seconds() if oldest else 0)
    if safe_names.exists(conn, "coldcopy_ops.restore_drills"):
        newest = conn.execute("SELECT outcome, budget_s FROM coldcopy_ops.restore_drills ORDER BY finished_at DESC "
                              "LIMIT 1").fetchone()
        passed = conn.execute(
            "SELECT finished_at, rto_s, rpo_s, " + ", ".join(f"{p}_s" for p in DRILL_PHASES) +  # noqa: S608
            " FROM coldcopy_ops.restore_drills WHERE outcome = 'passed' ORDER BY finished_at DESC LIMIT 1").fetchone()
        if newest:
            put("coldcopy_restore_drill_failed", 1 if newest[0] == "failed" else 0)
            if newest[1] is not None:
                put("coldcopy_restore_drill_rto_budget_seconds", newest[1])
        if passed:
            put("coldcopy_restore_drill_last_success_timestamp", passed[0].timestamp())
            put("coldcopy_restore_drill_rto_seconds", passed[1])
            put("coldcopy_restore_drill_rpo_seconds", passed[2])
            for phase, seconds in zip(DRILL_PHASES, passed[3:], strict=True):
                put("coldcopy_restore_drill_rto_phase_seconds", seconds or 0.0, phase)
    if safe_names.exists(conn, "coldcopy_ops.schema_drift"):
        drift = conn.execute("SELECT drifted, breaches FROM coldcopy_ops.schema_drift WHERE outcome = 'checked' "
                             "ORDER BY checked_at DESC, id DESC LIMIT 1").fetchone()
        if drift:
            put("coldcopy_schema_drift_objects", drift[1], "true")
            put("coldcopy_schema_drift_objects", drift[0] - drift[1], "false")
    for dag_id, ended in (dag_success or {}).items():
        put("coldcopy_dag_last_success_timestamp_seconds", ended.timestamp(), dag_id)

    class _Families:
        @staticmethod
        def collect():
            return list(families.values())

    registry = CollectorRegistry()
    registry.register(_Families())
    return generate_latest(registry)


def dag_successes() -> dict[str, datetime]:
    """dag_id → end of the last successful run of every ColdCopy DAG (tagged ``coldcopy``), from Airflow's metadata
    (the api-server's session)."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import func, select

    with create_session() as session:
        ours = select(DagTag.dag_id).where(DagTag.name == "coldcopy")
        rows = session.execute(
            select(DagRun.dag_id, func.max(DagRun.end_date)).where(
                DagRun.state == DagRunState.SUCCESS, DagRun.dag_id.in_(ours), DagRun.end_date.is_not(None))
            .group_by(DagRun.dag_id)).all()
        known = {d for (d,) in session.execute(select(DagModel.dag_id).where(DagModel.dag_id.in_(ours))).all()}
    return {dag_id: ended for dag_id, ended in rows if dag_id in known}
