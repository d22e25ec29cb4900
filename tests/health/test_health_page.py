"""The health page's data and HTML from db_health's history (the live page, its auth and the browser: tests/e2e)."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from coldcopy import health_page
from coldcopy.testing import health_history


def test_the_page_shows_every_section_from_30_days_of_history(generated_db):
    stored = health_history.fill(generated_db, days=30)
    with psycopg.connect(generated_db, row_factory=dict_row) as conn:
        data = health_page.read_health(conn)
    assert stored == len(data["checks"]) * (1 + 30 * 144)  # every check, every 10 minutes for 30 days
    assert {"storage", "replication_slots", "change_archive"} <= {c["check_name"] for c in data["checks"]}
    assert [c["state"] for c in data["checks"]][0] == "breach"  # breaches first (views never refreshed, no backup)
    assert all(160 <= len(data["series"][name]) <= 170 for name in ("storage", "connections", "partition_horizon"))
    html = health_page.render(data)
    for section in ("Checks", "Last 7 days", "Materialized views", "Partitions and backups", "Recent maintenance",
                    "Top statements by total time", "Unused indexes", "Sessions waiting on locks", "Largest tables"):
        assert f"<h2>{section}" in html, section
    assert html.count("<polyline") >= 5 and "analytics.campaign_analytics" in html


def test_text_from_the_database_is_escaped():
    data = {"checks": [{"check_name": "slow_queries", "taken_at": "2026-11-25T10:00:00+00:00", "state": "breach",
                        "value": 300.0, "unit": "ms", "summary": "<b>x</b>",
                        "details": {"by_total_time": [{"calls": 1, "query": "SELECT '<script>alert(1)</script>'"}]}}],
            "series": {}}
    html = health_page.render(data)
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>x</b>" not in html


def test_before_the_first_run_the_page_says_so(migrated_db):
    with psycopg.connect(migrated_db, row_factory=dict_row) as conn:
        data = health_page.read_health(conn)
    assert data["checks"] == [] and "has not run yet" in health_page.render(data)


def test_loading_the_plugin_does_not_build_the_page_app():
    """Every task process loads the plugins folder (for macros); only the api-server needs the page's app,
    whose import (Airflow's auth dependencies, FastAPI) once cost each task about a second."""
    import subprocess
    import sys
    from pathlib import Path

    plugins = Path(__file__).resolve().parents[2] / "plugins"
    probe = ("import sys, airflow.plugins_manager, coldcopy_health_plugin\n"
             "print('airflow.api_fastapi.core_api.security' in sys.modules, 'coldcopy.health_page' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=plugins)
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_a_task_process_loading_the_plugins_folder_imports_only_the_plugin_file(tmp_path):
    """The loader imports every .py under plugins/ by its bare name in every task process; .airflowignore keeps
    it to the two plugin files (it once imported 54 of our modules and ~790 in all, ~1.8 s a task); the run-notes
    listeners bring only their own small modules (run notes, the exit sentinel)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from bench.task_imports import PROBE

    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(__file__).resolve().parents[2] / "plugins")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["ours"] == ["coldcopy", "coldcopy.exit_sentinel", "coldcopy.run_notes", "coldcopy_health_plugin",
                              "coldcopy_run_notes_plugin"]
    assert loaded["modules"] < 20


def test_numbers_read_like_a_person_wrote_them():
    assert [health_page.duration(s) for s in (4.2, 70.281529, 3600.0, 4200, 93600, None)] == \
        ["4.2 s", "1 min", "1 h", "1 h 10 min", "1 d 2 h", "—"]
    assert [health_page.size(b) for b in (512, 655360, 12.9 * 2**20, 1.25 * 2**30)] == \
        ["512 B", "640.0 kB", "12.9 MB", "1.25 GB"]
    assert health_page.when("2026-11-29T13:05:04.123456+00:00") == "2026-11-29 13:05:04 UTC"
    data = {"checks": [
        {"check_name": "view_freshness", "taken_at": "2026-11-29T13:05:04.123456+00:00", "state": "ok", "value": 70.3,
         "unit": "s", "summary": "fresh", "details": {"views": [
             {"view": "analytics.campaign_analytics", "state": "ok", "fresh_at": "2026-11-29T12:00:00.5+00:00",
              "age_s": 4200.281529, "cadence_s": 3600.0}]}},
        {"check_name": "storage", "taken_at": "2026-11-29T13:05:04+00:00", "state": "ok", "value": 2.0, "unit": "%",
         "summary": "ok", "details": {"tables": [
             {"name": "public.email_events_2025_08", "total_bytes": 3 * 2**20, "table_bytes": 2 * 2**20,
              "index_bytes": 2**20, "toast_bytes": 0, "detached_drops_after": "2026-12-06T01:00:00+00:00"}]}}],
        "series": {}}
    page = health_page.render(data)
    assert "1 h 10 min" in page and "4200.28" not in page and "70.281529" not in page and "1 min" in page
    assert "2026-11-29 13:05:04 UTC<" in page and ".123456" not in page
    assert "public.email_events_2025_08 (detached; dropped after 2026-12-06)" in page and "3.0 MB" in page


def test_the_page_app_serves_no_unauthenticated_documentation():
    """Issue 31, 11: FastAPI's /docs and /redoc answered without a login (the routes' dependencies do not
    guard them) and /openapi.json answered 500."""
    from fastapi.testclient import TestClient

    from coldcopy.health_page import create_app

    client = TestClient(create_app())
    assert [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")] == [404] * 3
    assert client.get("/metrics").status_code == 401


# -- issue 41, 10: one format, one state style, trends that can be read ------------------------------------------

def drill(day: int, outcome: str = "passed", rto_s: float | None = 1.63, **more) -> dict:
    at = f"2026-12-{day:02d}T05:20:04.5+00:00"
    return {"finished_at": at, "as_of": at.replace("05:20", "03:20"), "outcome": outcome, "rto_s": rto_s,
            "rpo_s": None if rto_s is None else 0.4, "budget_s": 3.0, "download_s": rto_s, "jobs": 2,
            "error": "no coldcopy_verify_db connection" if outcome == "failed" else None, **more}


def test_the_drill_rto_reads_the_same_in_the_value_the_summary_and_the_table(migrated_db):
    """It read 1.6 s in the value column and "RTO 2 s" in the summary (``:,.0f``)."""
    from datetime import UTC, datetime

    from coldcopy import health
    from coldcopy.health.drills import restore_drill
    from coldcopy.pitr.drills import record

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        now = datetime.now(UTC)
        record.save(conn, {**drill(1), "started_at": now, "finished_at": now, "as_of": "2026-12-07T03:20:04.5+00:00"})
        conn.row_factory = dict_row
        check = restore_drill(health.Context(conn, health.Thresholds()))
    assert check.summary.startswith("RTO 1.6 s (budget 3.0 s), RPO 0.4 s, as of 2026-12-07 03:20:04 UTC"), check
    shown = {"check_name": check.check, "state": check.state, "value": check.value, "unit": check.unit,
             "summary": check.summary, "details": check.details, "taken_at": "2026-12-07T05:20:04+00:00"}
    page = health_page.render({"checks": [shown], "series": {}})
    assert ">1.6 s<" in page and "RTO 2 s" not in page and "RTO 1.6 s" in page


def test_the_drill_trend_shows_failed_drills_on_a_time_axis_under_the_budget():
    drills = [drill(1), drill(2, "failed", None), drill(3, rto_s=2.1), drill(4, "failed", None), drill(5, rto_s=1.8)]
    data = {"checks": [{"check_name": "restore_drill", "taken_at": "2026-12-05T06:00:00+00:00", "state": "breach",
                        "value": 1.8, "unit": "s", "summary": "the newest drill failed",
                        "details": {"drills": drills}}], "series": {}}
    section = health_page.render(data).split("<h2>Restore drills")[1].split("<h2>")[0]
    rto_chart = section.split("RTO (s)")[1].split("</svg>")[0]
    assert rto_chart.count('class="failed"') == 2 and "2026-12-02 05:20:04 UTC: failed: no coldcopy_verify_db" \
        in rto_chart  # each failed drill marked apart, its time and error in its tooltip
    assert rto_chart.count('class="point"') == 3 and "2026-12-03 05:20:04 UTC: 2.1 s" in rto_chart
    assert 'class="threshold"' in rto_chart and "budget 3.0 s" in rto_chart  # the RTO budget, dashed
    assert all(f">Dec 0{d}<" in rto_chart for d in (2, 3, 4, 5))  # a time axis: the days
    assert ">0<" in rto_chart and ">5<" in rto_chart  # a value axis from zero, above the budget
    assert section.split("RPO (s)")[1].split("</svg>")[0].count('class="failed"') == 2


def test_the_7_day_trends_have_a_time_axis_and_a_value_axis():
    hours = [[f"2026-12-{1 + h // 24:02d}T{h % 24:02d}:00:00+00:00", 40 + h % 24] for h in range(7 * 24)]
    data = {"checks": [{"check_name": "storage", "taken_at": "2026-12-07T23:00:00+00:00", "state": "ok",
                        "value": 63.0, "unit": "%", "summary": "ok", "details": {}}], "series": {"storage": hours}}
    figure = health_page.render(data).split("Storage used (% of allocated)")[1].split("</svg>")[0]
    import re

    days = re.findall(r">(Dec \d\d)<", figure)  # a time axis: dates every day or two
    assert "<polyline" in figure and len(days) >= 3 and days == sorted(days) and days[-1] == "Dec 07", days
    assert [f">{v}<" in figure for v in (0, 50, 100)] == [True] * 3  # 0 to a round top above the maximum (63)


def test_one_state_style_and_one_timestamp_format_in_every_table():
    """Views' states were plain text beside badges; a drill's ``as of`` was ISO beside plain timestamps."""
    import re

    data = {"checks": [
        {"check_name": "view_freshness", "taken_at": "2026-12-07T05:20:04+00:00", "state": "breach", "value": None,
         "unit": "", "summary": "stale", "details": {"views": [
             {"view": "analytics.a", "state": "breach", "fresh_at": "2026-12-07T01:00:00.25+00:00"},
             {"view": "analytics.b", "state": "ok", "fresh_at": "2026-12-07T05:00:00+00:00"}]}},
        {"check_name": "maintenance_age", "taken_at": "2026-12-07T05:20:04+00:00", "state": "ok", "value": 4.0,
         "unit": "h", "summary": "last daily maintenance 4.0 h ago", "details": {"recent": [
             {"action": "vacuum", "outcome": "done", "started_at": "2026-12-07T01:00:03+00:00"},
             {"action": "reindex", "outcome": "skipped", "started_at": "2026-12-07T01:00:05+00:00"}]}},
        {"check_name": "restore_drill", "taken_at": "2026-12-07T05:20:04+00:00", "state": "ok", "value": 1.6,
         "unit": "s", "summary": "RTO 1.6 s", "details": {"drills": [drill(5), drill(6, "failed", None)]}}],
        "series": {}}
    page = health_page.render(data)
    cells = re.findall(r"<td>(.*?)</td>", page)
    for word in ("ok", "breach", "done", "skipped", "passed", "failed"):
        assert word not in cells and any('class="badge"' in c and f">{word}</span>" in c for c in cells), word
    text = re.sub(r"<[^>]+>", " ", page.split("</style>")[1])
    moments = re.findall(r"\b20\d\d-\d\d-\d\d[ T][\d:.+]*( UTC)?", text)
    assert len(moments) >= 9 and all(m == " UTC" for m in moments), moments  # taken, fresh, started, finished, as of
