"""Metrics for Prometheus (issue 23): the endpoint served by the plugin's app with its own bearer token, scraped by
Debian's real Prometheus; the rules checked and unit-tested by promtool; the dashboard's metric names served."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from coldcopy import metrics
from coldcopy.testing import health_history
from coldcopy.testing.local_env import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "include" / "prometheus"
DASHBOARD = ROOT / "include" / "grafana" / "coldcopy-db.json"
TOKEN = "metrics-token-for-tests-only-0123456789"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("promtool") or "promtool", *args], capture_output=True, text=True)


@pytest.fixture
def served(generated_db, coldcopy_conn, airflow_db, monkeypatch):
    """The health plugin's FastAPI app on a loopback port (uvicorn), coldcopy_db with a day of health history."""
    import uvicorn

    from coldcopy.health_page import create_app

    coldcopy_conn(generated_db)
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_METRICS_TOKEN", json.dumps({"conn_type": "generic", "password": TOKEN}))
    health_history.fill(generated_db, days=1)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO public.data_subject_requests (workspace_id, email, request_type, created_at, due_at) "
                     "SELECT id, 'someone@example.com', 'erasure', now() - interval '40 days', now() - interval '10 "
                     "days' FROM public.workspaces LIMIT 1")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_a_missing_or_wrong_token_gets_401_and_nothing(served):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        response = httpx.get(f"{served}/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert "# TYPE" not in response.text and "coldcopy_health" not in response.text
    # In the live api-server, the page keeps Airflow's login and the token opens nothing else: tests/e2e.


def test_the_endpoint_serves_every_figure_from_the_history(served):
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{served}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert set(metrics.METRICS) <= set(families)  # every metric described, figures or not
    severity = {s.labels["check"]: s.value for s in families["coldcopy_health_check_severity"].samples}
    assert severity["backup_age"] == 2 and severity["storage"] in (0, 1)  # never backed up: breach
    views = {s.labels["view"] for s in families["coldcopy_view_cadence_seconds"].samples}
    assert "analytics.campaign_analytics" in views
    [overdue] = families["coldcopy_gdpr_requests_overdue"].samples
    [oldest] = families["coldcopy_gdpr_oldest_open_request_age_seconds"].samples
    assert overdue.value >= 1 and oldest.value >= 40 * 86400
    assert families["coldcopy_backup_last_verified_age_seconds"].samples == []  # unknown, not 0


def expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_every_metric_the_dashboard_and_the_rules_query_is_served_or_airflows(served):
    served_names = set(metrics.METRICS)
    rules = (PROMETHEUS / "rules.yml").read_text()
    queried = {n for e in [*expressions(), rules] for n in re.findall(r"\b(coldcopy_[a-z_]+)\b", e)} - {
        "coldcopy_db_heavy"}  # the pool's name, a label value
    assert queried and queried <= served_names, queried - served_names
    airflow = {n for e in expressions() for n in re.findall(r"\b(airflow_[a-z_]+)\b", e)}
    mapped = (PROMETHEUS / "statsd_mapping.yml").read_text()
    assert all(n in mapped or n in ("airflow_scheduler_heartbeat", "airflow_executor_open_slots") for n in airflow)
    body = httpx.get(f"{served}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert all(f"# TYPE {n} gauge" in body for n in queried)


def test_promtool_checks_the_rules_and_their_unit_tests_fire_and_stay_quiet():
    checked = promtool("check", "rules", str(PROMETHEUS / "rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(PROMETHEUS / "rules_test.yml"))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    # The unit tests hold cases that must stay quiet too (a rule made always-true fails them).
    assert "exp_alerts: []" in (PROMETHEUS / "rules_test.yml").read_text()


def test_prometheus_scrapes_the_endpoint_and_serves_the_series(served, tmp_path):
    token = tmp_path / "coldcopy_metrics_token"
    token.write_text(TOKEN)
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/secrets/coldcopy_metrics_token", str(token))
    config = config.replace('["airflow-apiserver:8080"]', f'["{served.removeprefix("http://")}"]')
    config = config.replace("metrics_path: /coldcopy-health/metrics", "metrics_path: /metrics")
    config = config.replace("scrape_interval: 30s", "scrape_interval: 1s")
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(PROMETHEUS / "rules.yml", tmp_path / "rules.yml")
    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    prometheus = subprocess.Popen(
        [shutil.which("prometheus") or "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        deadline, result = time.monotonic() + 60, []
        while time.monotonic() < deadline and not result:
            try:
                query = 'coldcopy_health_check_severity{check="backup_age"}'
                result = httpx.get(f"{api}/query", params={"query": query}).json()["data"]["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert result and result[0]["value"][1] == "2", (tmp_path / "prometheus.log").read_text()[-2000:]
        targets = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
        coldcopy = [t for t in targets if t["labels"]["job"] == "coldcopy"]
        assert coldcopy[0]["health"] == "up", coldcopy
        rules = httpx.get(f"{api}/rules").json()["data"]["groups"]
        assert {g["name"] for g in rules} == {"coldcopy-scaling-triggers", "coldcopy-jobs", "coldcopy-restore-drills",
                                              "coldcopy-schema-drift"}
    finally:
        prometheus.terminate()
        prometheus.wait(10)
