"""The DAGs under a real scheduler, triggerer, dag-processor and api-server, driven as on-call drives them:
through the REST API and the ``airflow`` CLI. What ``dag.test()`` cannot show: parallel tasks, backfills,
scheduler-queued runs, deadlines through the triggerer, and alerts from real task failures."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.conftest import stock_decrypt
from tests.e2e.conftest import METRICS_TOKEN, PASSPHRASE, ROOT, alerts_for, metadata_query, one_alert_per_final_failure

REFRESH_DAGS = ["refresh_campaign_analytics", "refresh_email_deliverability", "refresh_lead_engagement",
                "refresh_workspace_usage"]


def first_try_successes(tis: list[dict]) -> bool:
    return all(ti["state"] in ("success", "skipped") and ti["try_number"] == 1 for ti in tis)


def test_every_dag_is_listed_without_import_errors(live, api):
    dags = {d["dag_id"]: d for d in api.get("/dags", params={"limit": 100}).json()["dags"]}
    repo_dags = {p.stem for p in (live.stack.dags_folder).glob("*.py")} - {"e2e_dags"}
    assert repo_dags == {p.stem for p in (ROOT / "dags").glob("*.py")}  # every file of the repository's dags/
    assert repo_dags <= set(dags)
    assert api.get("/importErrors").json()["total_entries"] == 0
    assert all(dags[d]["description"] for d in repo_dags)


def test_migrations_triggered_through_the_rest_api_build_the_schema(live, api):
    live.reset_target()
    run_id = live.trigger(api, "coldcopy_migrations", dry_run=False)
    assert live.wait_run(api, "coldcopy_migrations", run_id, timeout_s=400) == "success"
    with psycopg.connect(live.target_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.schema_migrations").fetchone()[0] == 26
        assert conn.execute("SELECT count(*) FROM pg_matviews WHERE schemaname = 'analytics'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_views WHERE schemaname = 'analytics' "
                            "AND viewname LIKE '%\\_definition'").fetchone()[0] == 7  # the summaries' definitions


def test_an_unpaused_refresh_dag_gets_its_scheduled_run_with_a_deadline(live, api, generated_template):
    live.reset_target(generated_template)
    deadlines_seen = set()

    def look_for_its_deadline(run: dict) -> None:  # deleted once the run succeeds: look while it runs
        deadlines_seen.update(r for (r,) in metadata_query(
            live, "SELECT r.run_id FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id WHERE r.run_id = %s",
            (run["dag_run_id"],)))

    run = live.scheduled_run(api, "refresh_campaign_analytics", while_waiting=look_for_its_deadline)
    assert run["state"] == "success" and run["queued_at"]
    assert run["dag_run_id"] in deadlines_seen  # queued-at deadlines exist for scheduler-queued runs


def fingerprints(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM app.email_events_partitions")]
        return {n: conn.execute(f"SELECT count(*) FROM public.{n}").fetchone()[0] for n in names}


def test_partition_maintenance_archives_months_in_parallel_beside_a_long_reader(live, api, generated_template):
    live.reset_target(generated_template)
    before = fingerprints(live.target_dsn)
    stop, reads = threading.Event(), []

    def long_reader() -> None:
        with psycopg.connect(live.target_dsn) as reader:
            while not stop.is_set():
                reads.append(reader.execute("SELECT pg_sleep(2), count(*) FROM email_events").fetchone())
                reader.commit()

    thread = threading.Thread(target=long_reader)
    thread.start()
    try:
        run = live.scheduled_run(api, "partition_maintenance", timeout_s=400)
        run_id, state = run["dag_run_id"], run["state"]
    finally:
        stop.set()
        thread.join()
    tis = live.task_instances(api, "partition_maintenance", run_id)
    assert state == "success" and first_try_successes(tis), [(t["task_id"], t["map_index"], t["state"],
                                                              t["try_number"]) for t in tis]
    archives = [t for t in tis if t["task_id"] == "archive"]
    assert len(archives) >= 3 and len(reads) >= 2
    starts = sorted((t["start_date"], t["end_date"]) for t in archives)
    overlapping = [later[0] < earlier[1] for earlier, later in zip(starts, starts[1:], strict=False)]
    assert any(overlapping), "the archive tasks did not run in parallel"
    with psycopg.connect(live.target_dsn) as conn:
        archived = conn.execute("SELECT partition_name, state, row_count, object_key "
                                "FROM coldcopy_ops.partition_archive ORDER BY 1").fetchall()
    attached = set(fingerprints(live.target_dsn))
    assert len(archived) == len(archives) and {a[1] for a in archived} == {"detached"}
    for name, _, rows, key in archived:
        assert name not in attached
        sealed = live.s3_client.get_object(Bucket=live.bucket, Key=key)["Body"].read()
        body = gzip.decompress(stock_decrypt(sealed, PASSPHRASE))  # stock gpg --decrypt | gunzip
        assert body.count(b"\n") - 1 == rows == before[name]


def test_the_four_refresh_dags_started_together_on_a_fresh_database(live, api, generated_template):
    """Two tasks installing change tracking on the same tables at once used to fail with DuplicateObject."""
    live.reset_target(generated_template)
    try:
        runs = {dag_id: live.trigger(api, dag_id) for dag_id in REFRESH_DAGS}
        for dag_id, run_id in runs.items():
            assert live.wait_run(api, dag_id, run_id) == "success", dag_id
    finally:
        for dag_id in REFRESH_DAGS:
            live.set_paused(api, dag_id, True)
    for dag_id, run_id in runs.items():
        tis = live.task_instances(api, dag_id, run_id)
        assert tis and first_try_successes(tis), [(t["task_id"], t["state"], t["try_number"]) for t in tis]


def wait_backfill(live, api, dag_id: str, timeout_s: float = 300) -> list[dict]:
    """The runs of ``dag_id``'s backfill once the scheduler marked it complete."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [backfill] = api.get("/backfills", params={"dag_id": dag_id}).json()["backfills"]
        if backfill["completed_at"]:
            return api.get(f"/dags/{dag_id}/dagRuns", params={"run_type": "backfill", "limit": 100}).json()[
                "dag_runs"]
        time.sleep(2)
    raise AssertionError(f"{dag_id}: backfill not complete within {timeout_s} s")


def test_backfills_through_the_cli_and_the_rest_api_cost_one_refresh_per_view(live, api, generated_template):
    live.reset_target(generated_template)
    # Intervals before the latest one, which a scheduled run may have had already (not reprocessed).
    to_date = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    hourly_from, two_hourly_from = to_date - timedelta(hours=7), to_date - timedelta(hours=14)
    for dag_id in ("refresh_campaign_analytics", "refresh_email_deliverability"):  # backfills run unpaused only
        live.set_paused(api, dag_id, False)
    live.stack.airflow("backfill", "create", "--dag-id", "refresh_campaign_analytics",
                       "--from-date", hourly_from.isoformat(), "--to-date", to_date.isoformat(),
                       "--max-active-runs", "1")
    response = api.post("/backfills", json={
        "dag_id": "refresh_email_deliverability", "from_date": two_hourly_from.isoformat(),
        "to_date": to_date.isoformat(), "max_active_runs": 1})
    assert response.status_code == 200, response.text
    for dag_id, views in (("refresh_campaign_analytics", ["campaign_analytics", "sequence_step_performance"]),
                          ("refresh_email_deliverability", ["email_deliverability", "daily_workspace_activity"])):
        try:
            runs = wait_backfill(live, api, dag_id)
        finally:
            live.set_paused(api, dag_id, True)
        assert len(runs) >= 6 and {r["state"] for r in runs} == {"success"}, dag_id
        with psycopg.connect(live.target_dsn) as conn:
            for view in views:
                log = conn.execute("SELECT run_id, action, reason FROM coldcopy_ops.mv_refresh_log "
                                   "WHERE view_name = %s ORDER BY id", (f"analytics.{view}",)).fetchall()
                # The backfill costs one refresh (none if a scheduled run, as a new interval began, came first);
                # every other backfill run skipped as covered.
                backfilled = [(a, reason) for run_id, a, reason in log if run_id.startswith("backfill")]
                first_refresh_by_backfill = next(r for r, a, _ in log if a == "refreshed").startswith("backfill")
                assert [a for a, _ in backfilled].count("refreshed") == int(first_refresh_by_backfill), log
                assert len(backfilled) == len(runs), (view, log)
                assert all(a == "refreshed" or "already covered" in reason for a, reason in backfilled), log
        tis = [ti for r in runs for ti in live.task_instances(api, dag_id, r["dag_run_id"])]
        assert sum(ti["state"] == "skipped" for ti in tis) >= len(tis) - len(views)  # skips show as skipped
        for run in runs:  # a run whose every task skipped says so in the runs list (issue 24)
            states = {ti["state"] for ti in live.task_instances(api, dag_id, run["dag_run_id"])}
            note = api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}").json()["note"] or ""
            if states == {"skipped"}:
                assert note.startswith(f"nothing to do: all {len(views)} task(s) skipped — analytics."), note
                assert "already covered by the refresh at" in note, note
            else:
                assert not note, (run["dag_run_id"], note)


def test_a_missed_deadline_reaches_the_webhook_through_the_triggerer(live, api):
    run_id = live.trigger(api, "e2e_slow")
    end = time.monotonic() + 120
    while time.monotonic() < end:
        missed = [a for a in live.sink.received if a["body"]["alert"]["kind"] == "deadline_missed"
                  and a["body"]["alert"]["run_id"] == run_id]
        if missed:
            break
        time.sleep(1)
    assert missed and "e2e_slow" in missed[0]["body"]["text"] and "finish within 0:00:05" in missed[0]["body"]["text"]


def test_one_alert_per_task_that_fails_for_good_and_none_for_a_retry_that_succeeds(live, api):
    one_alert_per_final_failure(live, api)


def test_restoring_a_month_never_archived_fails_at_once_with_where_it_looked(live, api):
    run_id = live.trigger(api, "partition_restore", month="1999-01")
    assert live.wait_run(api, "partition_restore", run_id) == "failed"
    [ti] = live.task_instances(api, "partition_restore", run_id)
    assert ti["try_number"] == 1  # no retries for an archive that does not exist
    time.sleep(3)
    [alert] = alerts_for(live, "partition_restore", run_id)
    assert f"no archive for 1999-01 under s3://{live.bucket}/archive/email_events/1999/01/" in alert["summary"]


@pytest.mark.parametrize("run_type, pages", [("backfill", 0), ("manual", 1)])
def test_deadline_callback_pages_for_runs_but_not_backfill_runs(live, run_type, pages):
    import asyncio

    from coldcopy import alerts

    context = {"dag_run": {"dag_id": "refresh_campaign_analytics", "run_id": f"{run_type}__x",
                           "run_type": run_type}, "deadline": {"deadline_time": "now"}}
    import os

    os.environ["AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK"] = live.sink.airflow_connection()
    try:
        assert asyncio.run(alerts.on_deadline_missed(deadline_name="d", expected="e", context=context)) == pages
    finally:
        del os.environ["AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK"]


def test_db_health_runs_every_check_alerts_once_and_its_page_is_behind_airflow_auth(live, api, generated_template):
    import httpx

    live.reset_target(generated_template)
    run = live.scheduled_run(api, "db_health")
    assert run["state"] == "success"
    first = run["dag_run_id"]
    tis = live.task_instances(api, "db_health", first)
    from coldcopy.operators.health import CHECK_GROUPS

    assert {t["task_id"] for t in tis} == {*CHECK_GROUPS, "prune_history"} and first_try_successes(tis)
    time.sleep(3)
    alerts = alerts_for(live, "db_health", first)
    told = [a["details"]["check"] for a in alerts]
    assert "view_freshness" in told and "backup_age" in told  # a fresh copy: never refreshed, never backed up
    assert len(told) == len(set(told))  # one alert per check in breach
    # Statistics minutes old: no verdict on unused indexes or the cache hit ratio yet (issue 24) ...
    assert not {"unused_indexes", "cache_hit"} & set(told), told
    # ... and the stale views' cause is named: their DAGs are paused in this stack.
    [views] = [a for a in alerts if a["details"]["check"] == "view_freshness"]
    assert "refresh_campaign_analytics is paused" in json.dumps(views), views
    second = live.trigger(api, "db_health")
    try:
        assert live.wait_run(api, "db_health", second) == "success"
    finally:
        live.set_paused(api, "db_health", True)
    time.sleep(3)
    every = [a["body"]["alert"] for a in live.sink.received if a["body"]["alert"].get("dag_id") == "db_health"]
    assert all(a["run_id"] == first for a in every)  # nothing changed afterwards: nothing repeated

    page = f"{live.stack.url}/coldcopy-health/"
    assert httpx.get(page).status_code in (401, 403)
    assert [httpx.get(f"{page}{path}").status_code for path in ("docs", "redoc", "openapi.json")] == [404] * 3
    assert httpx.get(f"{page}api", headers={"Authorization": "Bearer forged"}).status_code in (401, 403)
    data = httpx.get(f"{page}api", headers=api.headers).json()
    assert {c["check_name"] for c in data["checks"]} >= {"storage", "view_freshness", "partition_horizon"}
    with psycopg.connect(live.target_dsn) as conn:  # every check the run recorded, each once
        recorded = [r[0] for r in conn.execute("SELECT DISTINCT check_name FROM coldcopy_ops.health_snapshot")]
    assert sorted(c["check_name"] for c in data["checks"]) == sorted(recorded)
    served = httpx.get(page, headers=api.headers)
    assert served.status_code == 200 and "<h2>Materialized views" in served.text
    # Prometheus' endpoint in the api-server: its own token only; Airflow's login does not open it, nor it the page.
    metrics = f"{page}metrics"
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert httpx.get(metrics, headers=api.headers).status_code == 401
    assert httpx.get(page, headers=token).status_code in (401, 403)
    scraped = httpx.get(metrics, headers=token)
    assert scraped.status_code == 200 and 'coldcopy_health_check_severity{check="view_freshness"} 2.0' in scraped.text
    assert 'coldcopy_dag_last_success_timestamp_seconds{dag_id="db_health"}' in scraped.text
    [plugin] = [p for p in api.get("/plugins").json()["plugins"] if p["name"] == "coldcopy_health"]
    assert plugin["external_views"][0]["href"] == "/coldcopy-health/"
