"""Dress rehearsal of pending migrations on a restored copy: what each file will do to production.

Each pending file is applied to the scratch database the same way production will apply it (the migration
runner: lock timeouts, one transaction or statement by statement), while a second session samples
``pg_locks`` of the runner's backend every few milliseconds. Per file: its duration; each relation's strongest
lock and how long the file held it (sampled, not derived from the statements' lock levels: a statement's level
says what it asks for, not how long a rewrite keeps it); the tables rewritten (their ``relfilenode`` changed)
and their rows; bytes of WAL; and which of those locks the application's hot tables would queue behind (a
lock conflicting with ROW EXCLUSIVE, what every INSERT/UPDATE/DELETE takes; ACCESS EXCLUSIVE stops reads
too). See docs/migrations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from coldcopy import safe_names

log = logging.getLogger(__name__)

APPLICATION_NAME = "coldcopy-rehearsal"
# Lock modes, weakest first (https://www.postgresql.org/docs/current/explicit-locking.html)
MODES = ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
         "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]
BLOCKS_WRITES = set(MODES[4:])  # conflicts with RowExclusiveLock: the application's writes queue
BLOCKS_READS = {"AccessExclusiveLock"}  # conflicts with AccessShareLock: even SELECTs queue


@dataclass
class HeldLock:
    relation: str
    mode: str
    held_ms: float


@dataclass
class FileRehearsal:
    file: str
    duration_ms: float
    locks: list[HeldLock] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)  # table → its rows, rewritten
    wal_bytes: int = 0  # the rehearsal server's WAL while the file ran: others writing there add to it
    hot_blocked: list[str] = field(default_factory=list)  # hot tables the application would queue on
    error: str | None = None
    checksum: str = ""  # of the file rehearsed: only these bytes may be applied on the strength of it

    @property
    def strongest(self) -> str | None:
        return max((lock.mode for lock in self.locks), key=MODES.index, default=None)

    def as_dict(self) -> dict:
        return {**asdict(self), "strongest": self.strongest}

    def summary(self) -> str:
        """``0042_x.sql 1.8 s, ACCESS EXCLUSIVE on public.leads (hot)``: one file for the result line."""
        from coldcopy.humanize import duration

        if self.error:
            return f"{self.file} failed: {self.error[:120]}"
        locked = f", {self.strongest}" if self.strongest else ""
        return f"{self.file} {duration(self.duration_ms / 1000)}{locked}" + (
            f" on hot {', '.join(self.hot_blocked)}" if self.hot_blocked else "")


class LockSampler:
    """Samples the granted relation locks of the sessions named :data:`APPLICATION_NAME` every ``every_s``."""

    def __init__(self, dsn: str, every_s: float = 0.005) -> None:
        self.dsn, self.every_s = dsn, every_s
        self.seen: dict[tuple[str, str], list[float]] = {}  # (relation, mode) → [first, last] monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            query = ("SELECT format('%%I.%%I', n.nspname, c.relname), l.mode FROM pg_locks l "
                     "JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_class c ON c.oid = l.relation "
                     "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.application_name = %s "
                     "AND l.locktype = 'relation' AND l.granted "
                     "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            while not self._stop.is_set():
                now = time.monotonic()
                for relation, mode in conn.execute(query, (APPLICATION_NAME,)).fetchall():
                    self.seen.setdefault((relation, mode), [now, now])[1] = now
                self._stop.wait(self.every_s)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def strongest_per_relation(self) -> list[HeldLock]:
        best: dict[str, HeldLock] = {}
        for (relation, mode), (first, last) in self.seen.items():
            held = round((last - first) * 1000 + self.every_s * 1000, 1)
            current = best.get(relation)
            if current is None or MODES.index(mode) > MODES.index(current.mode):
                best[relation] = HeldLock(relation, mode, held)
            elif mode == current.mode:
                current.held_ms = max(current.held_ms, held)
        return sorted(best.values(), key=lambda h: (-MODES.index(h.mode), h.relation))


def _relfilenodes(conn) -> dict[str, int]:
    return dict(conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname), c.relfilenode FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%'").fetchall())


def hot_tables(conn, top: int = 20) -> set[str] | None:
    """Tables the ``pg_stat_statements`` top statements (by total time) of ``conn``'s database name; None without
    the extension: not known (which is not "none", the approver is told so: :data:`HOT_UNKNOWN`)."""
    if not conn.execute("SELECT to_regclass('pg_stat_statements') IS NOT NULL").fetchone()[0]:
        return None
    tables = {name.split(".")[-1].strip('"'): name for (name,) in conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' AND NOT c.relispartition")}
    queries = [q for (q,) in conn.execute(
        "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
        "current_database()) ORDER BY total_exec_time DESC LIMIT %s", (top,))]
    return {full for short, full in tables.items()
            for q in queries if f" {short} " in f" {q.lower().replace(',', ' ').replace('.', ' ')} "}


def rehearse(scratch_dsn: str, migrations, *, hot: set[str] | None = frozenset(),
             lock_retry=None) -> list[FileRehearsal]:
    """Apply ``migrations`` (the pending ones, in order) to ``scratch_dsn`` and measure each; stops at the first
    that fails (its error recorded)."""
    from coldcopy.migrations.runner import MigrationRunner

    def connect() -> psycopg.Connection:
        return psycopg.connect(scratch_dsn, application_name=APPLICATION_NAME)

    runner = MigrationRunner(connect, **({"lock_retry": lock_retry} if lock_retry else {}))
    results = []
    with psycopg.connect(scratch_dsn, autocommit=True) as probe:
        for migration in migrations:
            before, wal_before = _relfilenodes(probe), probe.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            result = FileRehearsal(migration.file_name, 0.0, checksum=migration.checksum)
            started = time.monotonic()
            with LockSampler(scratch_dsn) as sampler:
                try:
                    runner.apply(migration, applied_by="rehearsal")
                except Exception as error:  # noqa: BLE001 - recorded: the approver must see it
                    result.error = str(error)[:500]
            result.duration_ms = round((time.monotonic() - started) * 1000, 1)
            result.locks = [lock for lock in sampler.strongest_per_relation()
                            if not lock.relation.startswith(("coldcopy_ops.", "pg_"))]
            after = _relfilenodes(probe)
            for relation, node in after.items():
                if relation in before and before[relation] != node:
                    result.rewritten[relation] = probe.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(safe_names.relation(probe, relation))).fetchone()[0]
            result.wal_bytes = int(probe.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (wal_before,)
                                                 ).fetchone()[0])
            result.hot_blocked = sorted({lock.relation for lock in result.locks
                                         if lock.relation in (hot or ()) and lock.mode in BLOCKS_WRITES})
            results.append(result)
            log.info("rehearsed %s: %.0f ms, strongest lock %s, rewrote %s, %d bytes of WAL%s", migration.file_name,
                     result.duration_ms, result.strongest, ", ".join(result.rewritten) or "nothing",
                     result.wal_bytes, f"; FAILED: {result.error}" if result.error else "")
            if result.error:
                break
    return results


def table(results: list[FileRehearsal], hot_known: bool = True) -> str:
    """The rehearsal as the approver reads it (Markdown); ``hot_known``: False without pg_stat_statements."""
    lines = ["| file | duration | locks (strongest first, held) | rewritten | WAL (server-wide) "
             "| application would queue on |",
             "|---|---|---|---|---|---|"]
    for r in results:
        locks = "; ".join(_lock_cell(lock, r.hot_blocked) for lock in r.locks[:6])
        rewritten = ", ".join(f"{t} ({n:,} rows)" for t, n in r.rewritten.items()) or "none"
        lines.append(f"| {r.file}{' — FAILED: ' + r.error if r.error else ''} | {r.duration_ms / 1000:.1f} s | "
                     f"{locks or 'none'} | {rewritten} | {r.wal_bytes / 2**20:.1f} MB | "
                     f"{', '.join(r.hot_blocked) or ('none' if hot_known else HOT_UNKNOWN)} |")
    return "\n".join(lines)


HOT_UNKNOWN = "unknown (pg_stat_statements is not installed)"


def _lock_cell(lock: HeldLock, hot_blocked: list[str]) -> str:
    """A lock as the approver reads it: ACCESS EXCLUSIVE in bold, and marked red on a hot table (the
    application's reads queue behind it)."""
    text = f"{lock.relation} {lock.mode} {lock.held_ms:.0f} ms"
    if lock.mode in BLOCKS_READS:
        text = f"**{text}**"
        if lock.relation in hot_blocked:
            text = f"🔴 {text} (hot table)"
    return text
