"""Fill the ColdCopy schema with realistic, deterministic data at a scale factor (like ``pgbench -s``).

    make data SCALE=1                 # into the coldcopy_db connection's database
    .venv/bin/python scripts/generate_data.py --scale 32 --dsn postgresql://…

Scale 1 is about 6,000 leads, 12,000 messages and 32,000 email_events (seconds); scale 32 gives about
1 million email_events. Data ends at ``--as-of`` (default: today 00:00 UTC) and starts 15 months before,
so partition rotation has old months to archive. Same seed and as-of → identical rows. Run it on a
migrated database without generated data (ids would collide).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from coldcopy import REPO_ROOT
from coldcopy.testing import local_env

ROOT = REPO_ROOT

SCRIPT = ROOT / "sql" / "datagen" / "generate.sql"


def statements(scale: int, seed: int, as_of: datetime) -> list[str]:
    """The generator's statements with its psql-style variables (:scale, :seed, :'as_of') bound."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    text = SCRIPT.read_text()
    text = text.replace(":'as_of'", sql.quote(as_of.isoformat()))
    text = re.sub(r":scale\b", str(int(scale)), text)
    text = re.sub(r":seed\b", str(int(seed)), text)
    return [s for s in text.split(";\n") if re.sub(r"--[^\n]*", "", s).strip()]


def generate(dsn: str, *, scale: int = 1, seed: int = 42, as_of: datetime | None = None) -> dict[str, int]:
    """Generate the data in one transaction; returns row counts of the main tables."""
    as_of = as_of or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        for statement in statements(scale, seed, as_of):
            conn.execute(statement)
        counts = {table: conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]
                  for table in ("workspaces", "leads", "campaigns", "email_messages", "email_events")}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")  # a settled database: hint bits set, visibility map built, statistics
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=None,
                        help="end of the generated history (ISO 8601, default today 00:00 UTC)")
    parser.add_argument("--dsn", help="libpq DSN; default: the coldcopy_db Airflow connection")
    args = parser.parse_args()
    dsn = args.dsn or os.environ.get("AIRFLOW_CONN_COLDCOPY_DB")
    if not dsn:
        raise SystemExit("no database: pass --dsn or set AIRFLOW_CONN_COLDCOPY_DB")
    started = time.monotonic()
    counts = generate(local_env.dsn_from_airflow_connection(dsn), scale=args.scale, seed=args.seed, as_of=args.as_of)
    print(f"scale {args.scale}, seed {args.seed}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items())
          + f" in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
