"""The "ColdCopy DB health" page inside the Airflow UI, and its JSON twin, served by a plugin FastAPI app.

Reads only db_health's history (``coldcopy_ops.health_latest`` → ``health_snapshot``; charts: hourly maxima of
the last 7 days through the ``(check_name, taken_at)`` index), never the live catalog, so it stays fast and
cheap however often it is opened. Plugin apps are not behind Airflow's auth by default: every route here
depends on Airflow's own authentication and on read access to the ``db_health`` DAG.
"""

from __future__ import annotations

import html
from functools import partial

import psycopg
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from psycopg.rows import dict_row

from coldcopy.health_charts import chart
from coldcopy.humanize import duration, size, when  # noqa: F401 - the page's formats

PAGE_DAG_ID = "db_health"
CHARTED = {  # check → chart title
    "storage": "Storage used (% of allocated)",
    "connections": "Connections used (%)",
    "slow_queries": "Worst estimated p95 (ms)",
    "cache_hit": "Cache hit (%)",
    "cpu_load": "Active backends per core (%)",
    "lock_waits": "Longest lock wait (s)",
    "long_transactions": "Longest idle-in-transaction / statement (s)",
    "partition_horizon": "Partition months ahead",
}
SHOWN_FIRST = ["breach", "unknown", "warning", "ok"]
STATE_COLORS = {"ok": "#2e7d32", "warning": "#ed8a00", "breach": "#c62828", "unknown": "#757575"}
OUTCOME_STATES = {"passed": "ok", "done": "ok", "failed": "breach", "skipped": "warning"}  # drills, maintenance


def read_health(conn: psycopg.Connection) -> dict:
    """The latest snapshot of every check and 7 days of hourly maxima of the charted ones."""
    try:
        latest = conn.execute(
            "SELECT s.check_name, s.taken_at, s.state, s.value, s.unit, s.summary, s.details "
            "FROM coldcopy_ops.health_latest l JOIN coldcopy_ops.health_snapshot s ON s.id = l.snapshot_id "
            "ORDER BY s.check_name").fetchall()
        points = conn.execute(
            "SELECT check_name, date_bin('1 hour', taken_at, 'epoch') AS hour, max(value) AS value "
            "FROM coldcopy_ops.health_snapshot WHERE check_name = ANY(%s) AND taken_at > now() - interval '7 days' "
            "GROUP BY 1, 2 ORDER BY 1, 2", (list(CHARTED),)).fetchall()
    except psycopg.errors.UndefinedTable:
        return {"checks": [], "series": {}, "note": "db_health has not run yet"}
    series: dict[str, list] = {name: [] for name in CHARTED}
    for p in points:
        series[p["check_name"]].append([p["hour"].isoformat(), p["value"]])
    checks = sorted(latest, key=lambda c: (SHOWN_FIRST.index(c["state"]), c["check_name"]))
    return {"checks": [{**c, "taken_at": c["taken_at"].isoformat()} for c in checks], "series": series}


def _connect() -> psycopg.Connection:
    from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook

    hook = ColdCopyPostgresHook(statement_timeout="5s", application_name="coldcopy:health-page")
    return psycopg.connect(hook.dsn(), autocommit=True, row_factory=dict_row, connect_timeout=5)


def authorize(request: Request, user: GetUserDep) -> None:
    """Airflow's authentication (JWT in the header or the UI's cookie) and read access to ``db_health``."""
    requires_access_dag("GET", param_dag_id=PAGE_DAG_ID)(request, user)


def metrics_token(request: Request) -> None:
    """Prometheus' bearer token (connection ``coldcopy_metrics_token``), not an Airflow login: 401 otherwise."""
    from fastapi import HTTPException

    from coldcopy.metrics import token_matches

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(token.strip()):
        raise HTTPException(401, "a bearer token matching the connection coldcopy_metrics_token is required",
                            headers={"WWW-Authenticate": "Bearer"})


def create_app() -> FastAPI:
    from fastapi.responses import Response

    # No /docs, /redoc or /openapi.json: FastAPI serves them without the routes' dependencies (they were open
    # to anyone, and /openapi.json answered 500 on Airflow's dependency types).
    app = FastAPI(title="ColdCopy DB health", docs_url=None, redoc_url=None, openapi_url=None)
    page_auth = [Depends(authorize)]

    @app.get("/api", summary="The health page's data: latest state of every check, 7 days of hourly maxima",
             dependencies=page_auth)
    def health_json() -> dict:
        with _connect() as conn:
            return read_health(conn)

    @app.get("/", response_class=HTMLResponse, dependencies=page_auth)
    def health_page() -> str:
        with _connect() as conn:
            return render(read_health(conn))

    @app.get("/metrics", summary="The health figures for Prometheus (text format), from the recorded history",
             dependencies=[Depends(metrics_token)])
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from coldcopy.metrics import collect, dag_successes

        with _connect() as conn:
            conn.row_factory = psycopg.rows.tuple_row
            body = collect(conn, dag_successes())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


# -- rendering ------------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _number(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("s", "min"):
        return duration(value * (60 if unit == "min" else 1))
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def _cell(key: str, value) -> str:
    """One table cell's HTML: states and outcomes as badges, moments in the page's one format, sizes and
    durations as people read them."""
    if key in ("state", "outcome"):
        return _badge(value) if value else ""
    if key.endswith("bytes") or key.endswith("bytes_per_day"):
        return f"<span class='n'>{_e(None if value is None else size(value))}</span>"
    if key.endswith("_s"):
        return f"<span class='n'>{_e(None if value is None else duration(value))}</span>"
    if key.endswith("_at") or key == "as_of":
        return f"<span class='when'>{_e(when(value))}</span>"
    return _e(value)


def _table(rows: list[dict], columns: list[tuple[str, str]], empty: str) -> str:
    if not rows:
        return f"<p class='empty'>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(key, row.get(key))}</td>" for key, _ in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _badge(state: str) -> str:
    color = STATE_COLORS.get(OUTCOME_STATES.get(state, state), STATE_COLORS["unknown"])
    return f'<span class="badge" style="background:{color}">{_e(state)}</span>'


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def _largest(table: dict) -> dict:
    """A detached month says so, and when partition_maintenance drops it."""
    if table.get("detached_drops_after"):
        drops = when(table["detached_drops_after"])[:10]
        return {**table, "name": f"{table['name']} (detached; dropped after {drops})"}
    return table


KEY = "<span class='key-line'>●</span> passed · <span class='key-failed'>✕</span> failed"


def _drills(line: str, drills: list[dict]) -> str:
    """The drills' trend (oldest first): RTO and RPO of each passed drill, each failed drill a red ✕ at its
    time, the newest drill's RTO budget dashed; and the newest drills in a table."""
    passed = [d for d in drills if d.get("outcome") == "passed"]
    failed = [[d["finished_at"], d.get("error") or "failed"] for d in drills if d.get("outcome") == "failed"]
    budget = next((d["budget_s"] for d in reversed(drills) if d.get("budget_s") is not None), None)
    figures = []
    for title, key in (("RTO (s)", "rto_s"), ("RPO (s)", "rpo_s")):
        limit = budget if key == "rto_s" else None
        key_text = KEY + (" · <span class='key-threshold'>- -</span> budget" if limit is not None else "")
        figures.append(f"<figure><figcaption>{title} · {key_text}</figcaption>" + chart(
            [[d["finished_at"], d[key]] for d in passed], failures=failed, label=duration, least=1,
            threshold=limit, threshold_label=f"budget {duration(limit)}") + "</figure>")
    charts = "".join(figures)
    return f"<p>{line}</p><div class='charts'>{charts}</div>" + _table(list(reversed(drills))[:10], [
        ("finished_at", "finished"), ("as_of", "as of"), ("outcome", "outcome"), ("rto_s", "RTO"),
        ("download_s", "download"), ("restore_s", "restore"), ("replay_s", "replay"), ("verify_s", "verify"),
        ("erasures_s", "erasures"), ("rpo_s", "RPO"), ("jobs", "jobs"), ("error", "error")], "no drill recorded")


def render(data: dict) -> str:
    checks = {c["check_name"]: c for c in data["checks"]}

    def details(name: str) -> dict:
        return (checks.get(name) or {}).get("details") or {}

    def summary(name: str) -> str:
        check = checks.get(name)
        return f"{_badge(check['state'])} {_e(check['summary'])}" if check else "<span class='empty'>no data</span>"

    rows = "".join(
        f"<tr><td>{_badge(c['state'])}</td><td>{_e(c['check_name'])}</td>"
        f"<td class='n'>{_e(_number(c['value'], c['unit']))}</td>"
        f"<td>{_e(c['summary'])}</td><td>{_cell('taken_at', c['taken_at'])}</td></tr>"
        for c in data["checks"])
    units = {c["check_name"]: c["unit"] for c in data["checks"]}
    charts = "".join(f"<figure><figcaption>{_e(title)}</figcaption>" + chart(
        data["series"].get(name, []), label=partial(_number, unit=units.get(name, ""))) + "</figure>"
        for name, title in CHARTED.items())
    sections = [
        _section("Checks", f"<table><tr><th>state</th><th>check</th><th>value</th><th>summary</th><th>at</th>"
                           f"</tr>{rows}</table>" if rows else f"<p class='empty'>{_e(data.get('note'))}</p>"),
        _section("Last 7 days (hourly maxima)", f"<div class='charts'>{charts}</div>"),
        _section("Materialized views", _table(details("view_freshness").get("views", []), [
            ("view", "view"), ("state", "state"), ("fresh_at", "fresh as of"), ("age_s", "age"),
            ("cadence_s", "cadence")], "no refresh recorded")),
        _section("Partitions and backups", f"<p>{summary('partition_horizon')}</p><p>{summary('backup_age')}</p>"),
        _section("Restore drills", _drills(summary("restore_drill"), details("restore_drill").get("drills", []))),
        _section("Recent maintenance", f"<p>{summary('maintenance_age')}</p>" + _table(
            details("maintenance_age").get("recent", []), [
                ("started_at", "started"), ("action", "action"), ("target", "target"), ("outcome", "outcome"),
                ("duration_ms", "ms"), ("detail", "detail")], "no maintenance recorded")),
        _section("Top statements by total time", f"<p>{summary('slow_queries')}</p>" + _table(
            details("slow_queries").get("by_total_time", []), [
                ("calls", "calls"), ("total_ms", "total ms"), ("mean_ms", "mean ms"),
                ("p95_estimate_ms", "p95 est. ms"), ("query", "statement")], "no statements")),
        _section("Unused indexes", _table(details("unused_indexes").get("indexes", []), [
            ("index", "index"), ("table", "table"), ("bytes", "bytes")], "none")),
        _section("Sessions waiting on locks", _table(details("lock_waits").get("waiting", []), [
            ("pid", "pid"), ("application", "application"), ("waiting_s", "waiting"), ("relation", "relation"),
            ("blocked_by", "blocked by")], "none")),
        _section("Largest tables", _table([_largest(t) for t in details("storage").get("tables", [])[:10]], [
            ("name", "table"), ("total_bytes", "total"), ("table_bytes", "table"), ("index_bytes", "indexes"),
            ("toast_bytes", "TOAST"), ("growth_bytes_per_day", "growth/day")], "no data")),
    ]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>ColdCopy DB health</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #1a1a1a; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin: 20px 0 6px; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 3px 6px;
  text-align: left; vertical-align: top; }}
.badge {{ color: #fff; border-radius: 8px; padding: 1px 7px; font-size: 12px; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 12px; }} figure {{ margin: 0; }}
figcaption {{ font-size: 12px; color: #555; }} .spark text {{ font-size: 10px; fill: #555; }}
.spark .grid {{ stroke: #eee; }} .spark .axis {{ stroke: #999; }} .spark .threshold-label {{ fill: #b36200; }}
.key-line {{ color: #1565c0; }} .key-failed {{ color: #c62828; font-weight: bold; }}
.key-threshold {{ color: #ed8a00; }} .empty, .when {{ color: #777; }} .when, .n {{ white-space: nowrap; }}
</style></head><body><h1>ColdCopy DB health</h1>
<p class="when">From db_health's history (every 10 minutes). JSON: <a href="api">api</a>.</p>
{"".join(sections)}</body></html>"""
