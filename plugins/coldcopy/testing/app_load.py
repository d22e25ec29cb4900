"""ColdCopy-like application traffic through PgBouncer with pgbench (``bench/load_sql/coldcopy_app.sql``): the
load test of ``make test`` and ``bench/load.py``. Every transaction's latency and every error is recorded."""

from __future__ import annotations

import secrets
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from coldcopy import REPO_ROOT
from coldcopy.testing import local_env, servers

ROOT = REPO_ROOT

ROOT = REPO_ROOT
APP_ROLE = "coldcopy_app"
SCRIPT = ROOT / "bench" / "load_sql" / "coldcopy_app.sql"


def prepare(dsn: str) -> str:
    """The application's role (SCRAM password, bypasses RLS like Supabase's service_role) and the lead sample
    the workload draws from; returns the role's password."""
    password = secrets.token_urlsafe(16)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        conn.execute(psycopg.sql.SQL("{} ROLE {} LOGIN BYPASSRLS PASSWORD {}").format(
            psycopg.sql.SQL("ALTER" if exists else "CREATE"), psycopg.sql.Identifier(APP_ROLE),
            psycopg.sql.Literal(password)))
        conn.execute("CREATE SCHEMA IF NOT EXISTS coldcopy_load")
        conn.execute("DROP TABLE IF EXISTS coldcopy_load.leads")
        conn.execute("CREATE TABLE coldcopy_load.leads AS SELECT row_number() OVER (ORDER BY cl.lead_id) AS n, "
                     "cl.lead_id, cl.campaign_id, l.workspace_id "
                     "FROM campaign_leads cl JOIN leads l ON l.id = cl.lead_id")
        conn.execute("ALTER TABLE coldcopy_load.leads ADD PRIMARY KEY (n)")
        for (view,) in conn.execute("SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews "
                                    "WHERE NOT ispopulated").fetchall():  # dashboards read populated views
            conn.execute(psycopg.sql.SQL("REFRESH MATERIALIZED VIEW {}").format(
                psycopg.sql.Identifier(*view.split("."))))
        for grant in ("GRANT USAGE ON SCHEMA public, analytics, app, coldcopy_load TO {}",
                      "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}",
                      "GRANT SELECT ON ALL TABLES IN SCHEMA analytics, coldcopy_load TO {}",
                      "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}"):
            conn.execute(psycopg.sql.SQL(grant).format(psycopg.sql.Identifier(APP_ROLE)))
    return password


@dataclass
class LoadResult:
    transactions: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    error_lines: list[str]

    @property
    def summary(self) -> dict:
        lat = sorted(self.latencies_ms) or [0.0]

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)

        return {"tps": round(self.transactions / self.seconds, 1), "transactions": self.transactions,
                "errors": self.errors, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
                "max_ms": round(lat[-1], 1), "mean_ms": round(statistics.fmean(lat), 1)}


def run(pgbouncer: servers.LocalPgBouncer, dbname: str, password: str, *, clients: int, seconds: int) -> LoadResult:
    """pgbench ``clients`` connections through PgBouncer for ``seconds``; per-transaction log parsed."""
    with psycopg.connect(pgbouncer.dsn(dbname, APP_ROLE, password)) as conn:
        leads = conn.execute("SELECT count(*) FROM coldcopy_load.leads").fetchone()[0]
    with tempfile.TemporaryDirectory() as logs:
        done = subprocess.run(
            [local_env.executable("pgbench"), "-n", "-M", "simple", "-c", str(clients), "-j", "2", "-T", str(seconds),
             "-D", f"leads={leads}", "-f", str(SCRIPT), "-l", "--log-prefix", f"{logs}/tx",
             "-h", "127.0.0.1", "-p", str(pgbouncer.port), "-U", APP_ROLE, dbname],
            capture_output=True, text=True, env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"})
        latencies = []
        for log in Path(logs).glob("tx*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2] not in ("failed", "skipped"):
                    latencies.append(int(fields[2]) / 1000)
    errors = [line for line in done.stderr.splitlines() if "aborted" in line or "ERROR" in line or "FATAL" in line]
    return LoadResult(len(latencies), len(errors) + (1 if done.returncode and not errors else 0), seconds, latencies,
                      errors or ([done.stderr.strip()[-500:]] if done.returncode else []))
