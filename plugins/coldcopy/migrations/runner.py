"""Applying one migration file safely: :class:`MigrationRunner`.

Each file is applied:

* under the migration lock (:func:`coldcopy.job_locks.held`, which no other login can take, unlike an advisory
  key), so two runs never interleave;
* in one transaction, so a failure leaves nothing behind, unless the file holds statements PostgreSQL
  refuses in a transaction block (``CREATE INDEX CONCURRENTLY`` and the like): such a file is applied in
  parts (:meth:`Migration.parts`: each run of transactional statements in one transaction, each concurrent
  statement on its own, after dropping the INVALID index a failed earlier build left), each part recorded in
  ``coldcopy_ops.schema_migration_parts`` so a retry resumes at the first part not applied;
* with ``lock_timeout`` and ``statement_timeout``, retrying with backoff when the lock timeout fires;
* recording version, name, phase, checksum, duration, mode and who applied it in
  ``coldcopy_ops.schema_migrations``; an applied file is skipped, and refused if its checksum changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from coldcopy import job_locks, markers, ops_schema
from coldcopy.lock_retries import LockRetryPolicy, with_lock_retries
from coldcopy.migrations import (
    Migration,
    MigrationError,
    Part,
    PlanEntry,
    Status,
    execution,
    status,
    supabase_history,
    verification,
)
from coldcopy.migrations.status import HISTORY_TABLE
from coldcopy.steps import step

log = logging.getLogger(__name__)

# The job lock of migration runs (coldcopy_ops.job_locks).
MIGRATION_LOCK = "coldcopy migrations"



def tables_with_rows(conn: psycopg.Connection) -> list[str]:
    """Whether a target holds data (the rehearsal, the approval gate and the risk grades decide by it): the tables
    (partitioned parents, not their partitions) holding at least one row, in every schema but the platform's and
    the project's own (docs/migrations.md, *Schema drift*): the application keeps data in ``analytics`` and ``app``
    too, not only in ``public``."""
    from coldcopy.migrations.drift.catalog import EXCLUDED_SCHEMAS

    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema' "
        "ORDER BY n.nspname = 'public' DESC, 1, 2", (list(EXCLUDED_SCHEMAS),)).fetchall()
    return [f"{s}.{name}" for s, name in tables if conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(s, name))).fetchone()[0]]


class MigrationRunner:
    """Applies migrations to one database.

    :param connect: returns a new psycopg connection (e.g. ``ColdCopyPostgresHook().get_conn``).
    :param lock_retry: lock_timeout and retry schedule for each attempt.
    :param statement_timeout: ceiling for each statement (PostgreSQL syntax, e.g. ``"15min"``).
    :param advisory_lock_wait_s: how long to wait for another run holding the migration lock.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        *,
        lock_retry: LockRetryPolicy = LockRetryPolicy(),
        statement_timeout: str = "15min",
        advisory_lock_wait_s: float = 600.0,
    ) -> None:
        self._connect = connect
        self.lock_retry = lock_retry
        self.statement_timeout = statement_timeout
        self.advisory_lock_wait_s = advisory_lock_wait_s

    # -- reading state -------------------------------------------------------------------------------

    def _open(self) -> psycopg.Connection:
        conn = self._connect()
        conn.autocommit = True
        return conn

    def applied(self) -> dict[int, tuple[str, str]]:
        """``{version: (name, checksum)}`` of every applied migration."""
        with self._open() as conn:
            return status.history(conn)

    def plan(self, migrations: list[Migration]) -> list[PlanEntry]:
        """What applying ``migrations`` would do, changing nothing; with the Supabase CLI's view beside ours."""
        with self._open() as conn:
            history, cli = status.history(conn), supabase_history.recorded(conn)
            has_cli = supabase_history.exists(conn)
        return [PlanEntry(m, status.status_of(m, history, cli), status.cli_view(m, cli) if has_cli else "")
                for m in migrations]

    # -- applying ------------------------------------------------------------------------------------

    def apply(self, migration: Migration, *, applied_by: str, predecessors: list[Migration] = ()) -> bool:
        """Apply ``migration`` unless already applied; returns whether it ran.

        :param predecessors: migrations that must already be applied (with unchanged files) first.
        :raises MigrationError: the file failed (rolled back), was edited after being applied, or comes
            before its predecessors.
        """
        with self._migration_lock(migration), self._open() as conn:
            ops_schema.ensure(conn, "schema_migrations")
            history, cli = status.history(conn), supabase_history.recorded(conn)
            state = status.status_of(migration, history, cli)
            if state is Status.CHANGED:
                raise status.changed_error(migration, history)
            if state is Status.APPLIED:
                if migration.version not in history:
                    self._adopt(conn, migration)
                elif history[migration.version][1] != migration.checksum:  # an earlier text it reissues
                    conn.execute(f"UPDATE {HISTORY_TABLE} SET checksum = %s WHERE version = %s AND checksum = %s",
                                 (migration.checksum, migration.version, history[migration.version][1]))
                    log.info("%s: applied as its earlier text %s…, which it reissues: history updated",
                             migration.file_name, history[migration.version][1][:12])
                log.info("%s: already applied, skipping", migration.file_name)
                return False
            missing = [p.file_name for p in predecessors
                       if status.status_of(p, history, cli) is not Status.APPLIED]
            if missing:
                raise MigrationError(f"{migration.file_name}: refusing to apply before {', '.join(missing)}")
            self._run(conn, migration, applied_by)
            return True

    def apply_all(self, migrations: list[Migration], *, applied_by: str) -> list[Migration]:
        """Apply ``migrations`` in order (outside Airflow: bench/, tools); returns the ones that ran."""
        return [
            m for i, m in enumerate(migrations) if self.apply(m, applied_by=applied_by, predecessors=migrations[:i])
        ]

    @staticmethod
    def _adopt(conn: psycopg.Connection, migration: Migration) -> None:
        """A file the Supabase CLI applied (same statements): recorded in our history with its checksum."""
        conn.execute(
            f"INSERT INTO {HISTORY_TABLE} (version, name, phase, checksum, transactional, lock_retries, "
            "duration_ms, applied_by, started_at) VALUES (%s, %s, %s, %s, %s, 0, 0, 'supabase cli', now()) "
            "ON CONFLICT DO NOTHING",
            (migration.version, migration.name, migration.phase, migration.checksum, migration.transactional))
        log.info("%s: applied by the Supabase CLI (same statements); recorded with its checksum", migration.file_name)

    def _migration_lock(self, migration: Migration):
        """The migration lock, held on a connection of its own for the block (waits up to advisory_lock_wait_s)."""
        return job_locks.held(self._connect, MIGRATION_LOCK, wait_s=self.advisory_lock_wait_s, poll_s=0.2,
                              what=f"{migration.file_name}: another migration run", busy=lambda holder: MigrationError(
                                  f"{migration.file_name}: another migration run held the migration lock for over "
                                  f"{self.advisory_lock_wait_s:.0f} s; not applying (held by {holder})"))

    def _run(self, conn: psycopg.Connection, migration: Migration, applied_by: str) -> None:
        attempts = 0  # executions, including those that hit lock_timeout
        started = time.monotonic()
        started_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        text = migration.read()
        cli_table = supabase_history.exists(conn)

        def record(cur) -> None:
            if cli_table:  # one history with `supabase db push`, in the same transaction
                supabase_history.record(cur, migration.file_name, text)
            cur.execute(
                f"INSERT INTO {HISTORY_TABLE} (version, name, phase, checksum, transactional, lock_retries, "
                "duration_ms, applied_by, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (migration.version, migration.name, migration.phase, migration.checksum,
                 migration.transactional, attempts - executions, int((time.monotonic() - started) * 1000), applied_by,
                 started_at),
            )

        def run_in_transaction(lock_timeout_ms: int) -> None:
            nonlocal attempts
            attempts += 1
            with conn.transaction(), conn.cursor() as cur:
                self._set_timeouts(cur, lock_timeout_ms, local=True)
                announce(cur)
                execution.execute(cur, text, migration, transactional=True)
                verification.check(cur, migration)  # a row back: the whole file rolls back
                record(cur)

        def announce(cur) -> None:  # for the change archive's replay, before the file's own changes
            markers.emit(cur, "migration", version=migration.version, file=migration.file_name,
                         checksum=migration.checksum)

        if migration.transactional:
            executions = 1
            log.info("%s: applying in one transaction", migration.file_name)
            try:
                with_lock_retries(run_in_transaction, self.lock_retry, what=migration.file_name)
            except MigrationError as error:
                line = None if " at line " in str(error) else execution.failing_line(
                    conn, text, lambda cur: self._set_timeouts(cur, self.lock_retry.lock_timeout_ms, local=True))
                if line is None:
                    raise
                raise MigrationError(str(error).replace(" failed ", f" failed at line {line} ", 1)) from error
        else:
            parts = migration.parts()
            executions = len(parts)
            done = dict(conn.execute("SELECT part, checksum FROM coldcopy_ops.schema_migration_parts "
                                     "WHERE version = %s", (migration.version,)).fetchall())
            log.info("%s: cannot run as one transaction; applying it in %d parts%s", migration.file_name,
                     len(parts), f", resuming after the {len(done)} already applied" if done else "")
            with conn.cursor() as cur:
                announce(cur)
            for part in parts:
                if part.index in done:
                    if done[part.index] != part.checksum:
                        raise MigrationError(
                            f"{migration.file_name}: {part.describe()} was applied by an earlier attempt and has "
                            "changed on disk since; restore the file, let it finish, and put the change in a new "
                            "migration")
                    log.info("%s: %s already applied by an earlier attempt", migration.file_name, part.describe())
                    executions -= 1
                    continue
                attempts += self._run_part(conn, migration, part, applied_by)
            with conn.transaction(), conn.cursor() as cur:
                verification.check(cur, migration)  # a row back: not recorded, the task fails (its parts stay)
                record(cur)
            conn.execute("RESET lock_timeout; RESET statement_timeout")
        step("migration.file_applied")
        log.info("%s: applied in %.2f s (%d lock retries)", migration.file_name, time.monotonic() - started,
                 attempts - executions)

    def _run_part(self, conn: psycopg.Connection, migration: Migration, part: Part, applied_by: str) -> int:
        """Apply one part of a file that cannot run as one transaction and record it (in the part's own
        transaction when it has one); returns the executions it took."""
        attempts = 0
        started = time.monotonic()
        file_part = f"{migration.file_name} {part.describe()}"

        def record(cur) -> None:
            cur.execute(
                "INSERT INTO coldcopy_ops.schema_migration_parts (version, part, checksum, transactional, "
                "statements, lock_retries, duration_ms, applied_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (migration.version, part.index, part.checksum, part.transactional, part.statements, attempts - 1,
                 int((time.monotonic() - started) * 1000), applied_by))

        def run(lock_timeout_ms: int) -> None:
            nonlocal attempts
            attempts += 1
            if part.transactional:
                with conn.transaction(), conn.cursor() as cur:
                    self._set_timeouts(cur, lock_timeout_ms, local=True)
                    execution.execute(cur, part.sql, migration, transactional=True, part=part)
                    record(cur)
                return
            with conn.cursor() as cur:
                self._set_timeouts(cur, lock_timeout_ms, local=False)
                execution.execute(cur, part.sql, migration, transactional=False, part=part)

        if not part.transactional:
            execution.drop_invalid_index_left_by(conn, part.sql)
        with_lock_retries(run, self.lock_retry, what=file_part)
        if not part.transactional:
            step("migration.part_ran")  # done on the server, not yet recorded
            with conn.transaction(), conn.cursor() as cur:
                record(cur)
        step("migration.part_recorded")
        log.info("%s: applied in %.2f s", file_part, time.monotonic() - started)
        return attempts

    def _set_timeouts(self, cur, lock_timeout_ms: int, *, local: bool) -> None:
        cur.execute(
            "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
            (f"{lock_timeout_ms}ms", local, self.statement_timeout, local),
        )
