"""ColdCopy DB Ops: hooks, operators and the safety mechanisms every DAG reuses."""

from pathlib import Path

# Days a detached, archived month is kept before partition_maintenance drops it (the dropper, the health page).
PARTITION_DROP_GRACE_DAYS = 7
REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
# The Supabase CLI's own migrations (`supabase migration new`): a second source, applied after the runbook's
SUPABASE_MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"


def optional_connection(conn_id: str):
    """The Airflow connection ``conn_id``, or None when it is not configured (optional features)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
