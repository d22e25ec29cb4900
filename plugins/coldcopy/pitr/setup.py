"""Setting up the change archive on the database: the ``coldcopy_pitr`` publication (every application table
in ``public``, partitions through their root) and the logical replication slot, with a dry run.

Works as Supabase allows it: a role with ``REPLICATION`` (not superuser) over a direct connection (the
transaction pooler cannot hold a slot), ``wal_level=logical``. ``FOR TABLES IN SCHEMA`` would follow new
tables by itself but needs a superuser, so the table list is explicit and :meth:`Setup.sync` adds tables that
migrations created (``ALTER PUBLICATION … ADD TABLE`` takes SHARE UPDATE EXCLUSIVE: no application statement
waits on it; still under the lock-retry policy). See docs/pitr.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from coldcopy import markers, ops_schema
from coldcopy.change_slot import SLOT
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

log = logging.getLogger(__name__)

PUBLICATION = "coldcopy_pitr"
SCHEMA = "public"


class SetupError(RuntimeError):
    """The database cannot carry the change archive as it is (wal_level, role, tables without a key)."""


@dataclass
class Plan:
    statements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


class Setup:
    def __init__(self, conn: psycopg.Connection, *, publication: str = PUBLICATION, slot: str = SLOT,
                 lock_retry: LockRetryPolicy = LockRetryPolicy()) -> None:
        self.conn, self.publication, self.slot, self.lock_retry = conn, publication, slot, lock_retry

    def application_tables(self) -> list[tuple[str, str, bool]]:
        """``(schema, table, has a replica identity)`` of every table of the schema, partitions excluded, and
        the markers table (:mod:`coldcopy.markers`) when it exists."""
        return self.conn.execute(
            "SELECT n.nspname, c.relname, (c.relreplident = 'f' OR (c.relreplident IN ('d', 'i') AND EXISTS ("
            "  SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)))) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE (n.nspname = %s OR c.oid = to_regclass(%s)) AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition AND c.relpersistence = 'p' ORDER BY n.nspname = %s, 2",
            (SCHEMA, markers.TABLE, SCHEMA)).fetchall()

    def published(self) -> set[tuple[str, str]]:
        return set(self.conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (self.publication,)))

    def plan(self) -> Plan:
        plan = Plan()
        settings = dict(self.conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_replication_slots')"))
        if settings.get("wal_level") != "logical":
            plan.problems.append(f"wal_level is {settings.get('wal_level')!r}, logical decoding needs 'logical' "
                                 "(Supabase: already logical; elsewhere: ALTER SYSTEM SET wal_level = logical, "
                                 "then a restart)")
        role = self.conn.execute("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
                                 ).fetchone()[0]
        if not role:
            plan.problems.append(f"role {self.conn.info.user!r} lacks REPLICATION (ALTER ROLE … WITH REPLICATION)")
        tables = self.application_tables()
        if keyless := [f"{s}.{t}" for s, t, ok in tables if not ok]:
            plan.problems.append("tables without a primary key or replica identity (publishing them would make the "
                                 f"application's UPDATE and DELETE fail): {', '.join(keyless)}")
        plan.tables = [f"{s}.{t}" for s, t, ok in tables if ok]
        exists = self.conn.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = %s",
                                   (self.publication,)).fetchone()
        missing = [(s, t) for s, t, ok in tables if ok and (s, t) not in (self.published() if exists else set())]
        if not exists:
            plan.statements.append(self._create_publication(missing).as_string(self.conn))
        elif missing:
            plan.statements.append(self._add_tables(missing).as_string(self.conn))
        if exists and not exists[0]:
            plan.statements.append(sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(
                sql.Identifier(self.publication)).as_string(self.conn))
        if not self.slot_exists():
            plan.statements.append(f"SELECT pg_create_logical_replication_slot('{self.slot}', 'pgoutput')")
        return plan

    def slot_exists(self) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                                 (self.slot,)).fetchone()[0]

    def _create_publication(self, tables) -> sql.Composable:
        return sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)").format(
            sql.Identifier(self.publication), sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables))

    def _add_tables(self, tables) -> sql.Composable:
        return sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
            sql.Identifier(self.publication), sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables))

    def apply(self, *, create_slot: bool = True) -> tuple[Plan, str | None]:
        """Create or complete the publication, then the slot; returns the plan and the slot's start LSN when it
        was created now (a new chain starts there)."""
        plan = self.plan()
        if plan.problems:
            raise SetupError("; ".join(plan.problems))
        ops_schema.ensure(self.conn, "change_markers")  # before the publication, which then covers it
        self.sync()
        created = None
        if create_slot and not self.slot_exists():
            created = self.conn.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                                        (self.slot,)).fetchone()[0]
            log.info("created logical replication slot %s at %s", self.slot, created)
        return plan, created

    def sync(self) -> list[str]:
        """Make the publication cover every keyed application table (new ones from migrations); returns those
        added."""
        exists = self.conn.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = %s",
                                   (self.publication,)).fetchone()
        tables = [(s, t) for s, t, ok in self.application_tables() if ok]
        missing = [x for x in tables if x not in (self.published() if exists else set())]
        if exists and not missing and exists[0]:
            return []
        statements = [self._create_publication(tables)] if not exists else \
            ([self._add_tables(missing)] if missing else [])
        if exists and not exists[0]:
            statements.append(sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(
                sql.Identifier(self.publication)))

        def run() -> None:
            for statement in statements:
                self.conn.execute(statement)

        under_lock_timeout(self.conn, run, self.lock_retry, what=f"publication {self.publication}")
        added = [f"{s}.{t}" for s, t in missing]
        log.info("publication %s: %s", self.publication, f"added {', '.join(added)}" if exists else "created")
        return added

    def drop_slot(self) -> bool:
        """Drop the slot (the chain it fed ends); ``False`` when there was none."""
        if not self.slot_exists():
            return False
        self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        return True
