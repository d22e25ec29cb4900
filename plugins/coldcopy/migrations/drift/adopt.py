"""Adopting drift on purpose (like ``supabase db diff``): a migration file that makes the files build what live
holds, so the drift is reviewed, versioned and no longer reported.

    .venv/bin/python -m coldcopy.migrations.drift.adopt --live "$LIVE_DSN" --verify "$VERIFY_ADMIN_DSN" \\
        [--only "index public.leads_by_hand" ...] [--record]

Writes ``sql/migrations/<next version>_adopt_drift_<yyyymmdd>.sql``: each difference's SQL from the expected side
to live's (drops first, the most dependent objects first; then changes; then creations, schemas and tables first).
Live already holds what the file makes: ``--record`` records it there as applied (its checksum, ``applied_by``
*drift adoption*), so ``coldcopy_migrations`` does not run it on live; every other database (a fresh install, a
rehearsal's copy, the drift check's expected schema) applies it. Review the file before committing it: a
security-relevant difference adopted is a policy loosened on purpose.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from coldcopy import MIGRATIONS_DIR
from coldcopy.migrations.drift.compare import Difference

ORDER = ("schema", "extension", "sequence", "table", "column", "constraint", "index", "function", "view",
         "materialized view", "trigger", "policy", "grant")


def statements(differences: list[Difference]) -> list[str]:
    """The SQL that makes the files build live's schema, ordered so each statement finds what it needs."""
    rank = {k: i for i, k in enumerate(ORDER)}
    drops = sorted((d for d in differences if d.change == "missing"), key=lambda d: (-rank.get(d.kind, 99), d.name))
    changes = sorted((d for d in differences if d.change == "changed"), key=lambda d: (rank.get(d.kind, 99), d.name))
    creates = sorted((d for d in differences if d.change == "extra"), key=lambda d: (rank.get(d.kind, 99), d.name))
    out = []
    for d in [*drops, *changes, *creates]:
        note = f"-- {d.kind} {d.name}: {d.change}" + (f" (SECURITY: {d.security})" if d.security else "")
        out.append(f"{note}\n{d.to_expected().strip()}")
    return out


def next_file(directory: Path, today: datetime | None = None) -> Path:
    """The next free version of the last phase in ``directory``."""
    versions = [int(p.name[:3]) for p in directory.glob("[0-9][0-9][0-9]_*.sql") if not p.name.endswith(".verify.sql")]
    version = max(versions, default=300) + 1
    return directory / f"{version:03d}_adopt_drift_{(today or datetime.now(UTC)):%Y%m%d}.sql"


def write(differences: list[Difference], directory: Path = MIGRATIONS_DIR, *, only: list[str] | None = None) -> Path:
    chosen = [d for d in differences if not only or f"{d.kind} {d.name}" in only]
    if not chosen:
        raise ValueError("no drift to adopt" + (f" among {only}" if only else ""))
    path = next_file(directory)
    header = (f"-- {path.stem[:3]} adopt drift: what the live schema held on {datetime.now(UTC):%Y-%m-%d} and the "
              "migration files did not\n-- (coldcopy.migrations.drift.adopt). Live already holds it; every other "
              "database applies it.\n\n")
    path.write_text(header + "\n\n".join(statements(chosen)) + "\n")
    return path


def record_applied(live_dsn: str, path: Path) -> None:
    """Record the adopted file as applied on live (which already holds what it makes)."""
    from coldcopy import ops_schema
    from coldcopy.migrations import Migration
    from coldcopy.migrations.status import HISTORY_TABLE

    migration = Migration(int(path.name[:3]), path.stem[4:], path)
    with psycopg.connect(live_dsn, autocommit=True) as conn:
        ops_schema.ensure(conn, "schema_migrations")
        conn.execute(
            f"INSERT INTO {HISTORY_TABLE} (version, name, phase, checksum, transactional, lock_retries, duration_ms, "
            "applied_by, started_at) VALUES (%s, %s, %s, %s, %s, 0, 0, 'drift adoption', now())",
            (migration.version, migration.name, migration.phase, migration.checksum, migration.transactional))


def main(argv: list[str] | None = None) -> Path:
    from coldcopy.migrations import discover_migrations
    from coldcopy.migrations.drift import find

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", required=True, help="the live database (its DSN)")
    parser.add_argument("--verify", required=True, help="an admin DSN of a server of its own (never live's)")
    parser.add_argument("--directory", type=Path, default=MIGRATIONS_DIR)
    parser.add_argument("--only", action="append", help="'<kind> <name>' of one difference (repeatable)")
    parser.add_argument("--record", action="store_true", help="record the file as applied on live")
    args = parser.parse_args(argv)
    report = find(args.live, args.verify, discover_migrations(args.directory))
    path = write(report.differences, args.directory, only=args.only)
    if args.record:
        record_applied(args.live, path)
    print(f"{path}: {len(path.read_text().splitlines())} lines" + (" (recorded as applied on live)" if args.record
                                                                     else ""))
    return path


if __name__ == "__main__":
    main()
