"""ColdCopy DB Ops: hooks, operators and the safety mechanisms every DAG reuses."""

from pathlib import Path

DB_CONN_ID = "coldcopy_db"
REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"
