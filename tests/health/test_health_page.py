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
    listener brings only its own small module."""
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
    assert loaded["ours"] == ["coldcopy", "coldcopy.run_notes", "coldcopy_health_plugin", "coldcopy_run_notes_plugin"]
    assert loaded["modules"] < 20


def test_numbers_read_like_a_person_wrote_them():
    assert [health_page.duration(s) for s in (4.2, 70.281529, 3600.0, 4200, 93600, None)] == \
        ["4.2 s", "1 min", "1 h", "1 h 10 min", "1 d 2 h", "—"]
    assert [health_page.size(b) for b in (512, 655360, 12.9 * 2**20, 1.25 * 2**30)] == \
        ["512 B", "640.0 kB", "12.9 MB", "1.25 GB"]
    assert health_page.when("2026-11-29T13:05:04.123456+00:00") == "2026-11-29 13:05:04"
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
    assert "2026-11-29 13:05:04<" in page and ".123456" not in page
    assert "public.email_events_2025_08 (detached; dropped after 2026-12-06)" in page and "3.0 MB" in page


def test_the_page_app_serves_no_unauthenticated_documentation():
    """Issue 31, 11: FastAPI's /docs and /redoc answered without a login (the routes' dependencies do not
    guard them) and /openapi.json answered 500."""
    from fastapi.testclient import TestClient

    from coldcopy.health_page import create_app

    client = TestClient(create_app())
    assert [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")] == [404] * 3
    assert client.get("/metrics").status_code == 401
