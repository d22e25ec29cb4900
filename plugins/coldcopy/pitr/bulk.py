"""Replay in bulk: the net effect of a run of changes, per table and primary key, applied with COPY.

Between two boundaries (a marker, a truncate, a commit of the replay's batch) only the final state of each
row matters — the target is private and its triggers are quiet — so the run collapses to, per table, the keys
deleted and the rows upserted (an update merged over the row it follows; a primary key that changed is the
old key deleted and the new one upserted). Deletes go first (``DELETE … USING`` a temporary table of keys),
then upserts (``COPY`` into a temporary table, ``INSERT … SELECT … ON CONFLICT (pk) DO UPDATE``). A unique
constraint other than the key can make the net effect collide where the ordered changes did not (two rows
swapping a value): the caller then rolls back to its savepoint and applies the run change by change. See
docs/pitr.md.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from psycopg import sql

# every lane's lock_timeout when there are several (a private target: nobody else takes its locks; autovacuum gives
# way after deadlock_timeout): a lock wait this long is lanes waiting on each other, a cycle PostgreSQL never sees
LOCK_TIMEOUT_S = 5


class LanesWaited(RuntimeError):
    """A lane waited :data:`LOCK_TIMEOUT_S` for a lock: on a private target, only another lane holds one."""


def _key_of(columns: list[str]):
    """A row's primary key as a tuple (a column it lacks is None)."""
    if len(columns) == 1:
        column = columns[0]
        return lambda row: (row.get(column),)
    return lambda row: tuple(row.get(k) for k in columns)


class NetEffect:
    """Final state per (table, key) of the changes added to it (a run: a new one after each hand-over)."""

    def __init__(self) -> None:
        self.tables: dict[str, tuple] = {}  # name → (_Table, {key: row dict | None (deleted)}, key function)
        self.changes: list[dict] = []  # the run itself, in order (the fallback applies these)

    def __len__(self) -> int:
        return len(self.changes)

    def add(self, table, change: dict) -> None:
        self.changes.append(change)
        entry = self.tables.get(table.name)
        if entry is None:
            entry = self.tables[table.name] = (table, {}, _key_of(table.key))
        _, rows, key = entry
        if change["op"] == "D":
            rows[key(change["old"])] = None
            return
        new = change["new"]
        at = key(new)
        old = change.get("old")
        if old and key(old) != at:
            rows[key(old)] = None
        before = rows.get(at)
        rows[at] = {**before, **new} if before is not None and change["op"] == "U" else dict(new)

    def split(self, lane_of, lanes: int) -> list[NetEffect]:
        """The run as ``lanes`` runs, table by table (``lane_of(name)``), each keeping its changes' order."""
        parts = [NetEffect() for _ in range(lanes)]
        for name, entry in self.tables.items():
            parts[lane_of(name)].tables[name] = entry
        for change in self.changes:
            parts[lane_of(change["table"])].changes.append(change)
        return parts

    def apply(self, conn) -> None:
        """Deletes first, then upserts, table by table (inside the caller's transaction)."""
        for table, rows, _ in self.tables.values():
            gone = [k for k, row in rows.items() if row is None]
            if gone:
                _delete_keys(conn, table, gone)
        for table, rows, _ in self.tables.values():
            shapes: dict[tuple, list[dict]] = {}
            for row in rows.values():
                if row is not None:
                    shapes.setdefault(tuple(row), []).append(row)
            for columns, group in shapes.items():
                _upsert_rows(conn, table, list(columns), group)


def _scratch(conn, table, columns: list[str]) -> sql.Identifier:
    scratch = sql.Identifier(f"coldcopy_replay_{len(columns)}")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(scratch))
    conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        scratch, sql.SQL(", ").join(map(sql.Identifier, columns)), table.ident))
    return scratch


def _copy(conn, scratch: sql.Identifier, columns: list[str], rows) -> None:
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            scratch, sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
        for row in rows:
            copy.write_row(row)


def _delete_keys(conn, table, keys: list[tuple]) -> None:
    scratch = _scratch(conn, table, table.key)
    _copy(conn, scratch, table.key, keys)
    conn.execute(sql.SQL("DELETE FROM {} t USING {} d WHERE {}").format(
        table.ident, scratch, sql.SQL(" AND ").join(
            sql.SQL("t.{0} = d.{0}").format(sql.Identifier(k)) for k in table.key)))


def _upsert_rows(conn, table, columns: list[str], rows: list[dict]) -> None:
    scratch = _scratch(conn, table, columns)
    _copy(conn, scratch, columns, ([row[c] for c in columns] for row in rows))
    others = [c for c in columns if c not in table.key]
    action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)) if others \
        else sql.SQL("DO NOTHING")
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} ON CONFLICT ({}) {}").format(
        table.ident, names, names, scratch, sql.SQL(", ").join(map(sql.Identifier, table.key)), action))


class Lanes:
    """Runs applied on ``len(connections)`` connections at once, table by table: a table always on the same
    one (its first appearance picks it, round robin), so each table's runs stay in order. Tables are
    independent here: the replay's triggers and foreign keys are quiet, and every unique constraint is a
    table's own. ``apply(conn, run, commit)`` runs on each lane's :class:`Applier`. The first connection is
    the replay's own: :meth:`wait` returns with every lane idle and the others' work committed. With more than
    one, every connection gets a short ``lock_timeout``: a lane waiting for another's lock (while the replay
    waits for that lane) is :class:`LanesWaited` within seconds, not a hang until ``statement_timeout``."""

    def __init__(self, connections: list, apply) -> None:
        self.connections, self.apply = connections, apply
        self.appliers = [Applier() for _ in connections]
        self._lane: dict[str, int] = {}
        if len(connections) > 1:
            for conn in connections:
                conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
                conn.commit()

    @contextmanager
    def waits(self, lane: int):
        """A lock wait past the lanes' ``lock_timeout`` on ``lane`` raised as :class:`LanesWaited`."""
        try:
            yield
        except psycopg.errors.LockNotAvailable as error:
            raise LanesWaited(
                f"replay lane {lane} of {len(self.connections)} waited {LOCK_TIMEOUT_S} s for a lock: the replay's "
                "lanes waited on each other (a cycle between lanes; nothing else writes a private target); replay "
                f"with jobs = 1 ({str(error).strip()})") from error

    def _apply(self, lane: int, conn, run: NetEffect, commit: bool) -> None:
        with self.waits(lane):
            self.apply(conn, run, commit)

    def lane_of(self, table: str) -> int:
        if (lane := self._lane.get(table)) is None:
            lane = self._lane[table] = len(self._lane) % len(self.connections)
        return lane

    def submit(self, run: NetEffect, commit: bool) -> None:
        """Hand ``run`` over (``commit``: and commit every lane's transaction after it)."""
        parts = run.split(self.lane_of, len(self.connections)) if len(self.connections) > 1 else [run]
        for lane, (conn, applier, part) in enumerate(zip(self.connections, self.appliers, parts, strict=True)):
            if len(part) or commit:
                applier.submit(self._apply, lane, conn, part, commit)

    def wait(self) -> None:
        """Every lane idle (what a lane raised is raised here) and the other lanes' work committed: the first
        connection may then take locks their rows hold (a truncate, a partition detached)."""
        for applier in self.appliers:
            applier.wait()
        for conn in self.connections[1:]:
            conn.commit()

    def close(self) -> None:
        """Every lane stopped and its connection closed; then what a lane raised, if one did."""
        failures = []
        for applier in self.appliers:
            try:
                applier.close()
            except Exception as error:  # noqa: BLE001 - every lane is stopped before one failure is raised
                failures.append(error)
        for conn in self.connections[1:]:
            conn.close()
        if failures:
            raise failures[0]


class Applier:
    """Applies runs on one thread of its own, in the order handed over, while the caller collects the next run
    (PostgreSQL's work and the caller's decoding overlap). At most one run is in flight: :meth:`submit` and
    :meth:`wait` wait for it, and raise what it raised. Until :meth:`wait` returns, the caller leaves the
    connection alone."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="replay-apply")
        self._inflight: Future | None = None

    def submit(self, work, *args) -> None:
        self.wait()
        self._inflight = self._thread.submit(work, *args)

    def wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._thread.shutdown(wait=True)
