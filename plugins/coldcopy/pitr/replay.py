"""Replaying archived transactions onto a restored base backup, in commit order, idempotently.

Each change is applied by primary key: an insert or update becomes ``INSERT … ON CONFLICT (pk) DO UPDATE``
of the columns it carries (an unchanged TOASTed value is not carried, so the stored one stays), a delete
``DELETE … WHERE pk``, a truncate ``TRUNCATE``. Replaying a transaction twice therefore changes nothing, and a
transaction the base backup's snapshot already saw is skipped by its xid (:class:`Snapshot`). Triggers stay
quiet (``session_replication_role = replica``, as PostgreSQL's own logical replication applies): the archive
already holds what they wrote. Markers (:mod:`coldcopy.markers`) apply the migration file or the
partition step at their place. Every name comes from the target's catalog. See docs/pitr.md.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import psycopg
from psycopg import sql

from coldcopy import markers
from coldcopy.pitr import target
from coldcopy.pitr.bulk import Lanes, NetEffect
from coldcopy.pitr.snapshot import Snapshot
from coldcopy.pitr.statements import Statements
from coldcopy.safe_names import UnknownRelation, relation_parts

log = logging.getLogger(__name__)

BATCH = 5000  # source transactions per target transaction (the target is private until the restore ends)
NET_EFFECT_MAX = 50_000  # changes collapsed at most into one bulk apply


class ReplayError(RuntimeError):
    """A change cannot be applied as archived (a table or column the target does not have, a changed file)."""


@dataclass
class _Table:
    name: str
    ident: sql.Identifier
    key: list[str]
    columns: set[str]


class Replayer:
    """Applies transactions (as :mod:`coldcopy.pitr.pgoutput` decoded them) to ``conn``'s database.

    :param snapshot: the base backup's snapshot (:class:`Snapshot`): transactions it saw are skipped.
    :param tables: only these ``schema.table`` names (a table-only restore); markers still apply.
    :param migrate: called with a migration marker (the caller applies the file on its own connection).
    :param connect: more connections to the same database, for ``lanes`` > 1: runs of different tables are
        then applied on ``lanes`` connections at once (:class:`~coldcopy.pitr.bulk.Lanes`; a private target).
    """

    def __init__(self, conn: psycopg.Connection, *, snapshot: Snapshot | None = None,
                 tables: set[str] | None = None, migrate=None, connect=None, lanes: int = 1) -> None:
        self.conn, self.snapshot, self.tables, self.migrate = conn, snapshot, tables, migrate
        self.applied: Counter = Counter()  # (table, op) → changes applied
        self.transactions = self.skipped = 0
        self.markers: list[dict] = []
        self.foreign: list[str] = []  # marker-like changes ColdCopy did not write (messages, malformed rows)
        self._tables: dict[str, _Table] = {}
        self._pending = 0
        self._quieted: list[sql.Identifier] = []  # tables whose user triggers this replay disabled
        self._statements = Statements()  # a change on its own: the statement of each shape, built once
        self._pipeline = self._cursor = None
        self._net = NetEffect()
        self.one_by_one = 0  # runs whose net effect collided and were applied change by change
        self.replica_role = target.quiet_session(conn)
        extra = [target.lane(connect) for _ in range(lanes - 1)] if self.replica_role and connect else []
        # the net effect of a run goes to PostgreSQL while the next run is collected
        self._lanes = Lanes([conn, *extra], self._apply_net)

    def apply(self, transaction: dict) -> None:
        if self.snapshot is not None and self.snapshot.visible(transaction["xid"]):
            self.skipped += 1
            return
        for change in transaction["changes"]:
            if change["op"] == "M" or change.get("table") == markers.TABLE:
                try:
                    if (marker := markers.parse(change)) is not None:
                        self._marker(marker)
                except markers.Foreign as error:  # never applied, never a crash: counted and reported
                    self.foreign.append(f"xid {transaction['xid']}: {error}")
                    log.warning("ignoring a foreign marker in xid %s: %s", transaction["xid"], error)
            elif change["op"] == "T":
                names = [t for t in change["tables"] if t != markers.TABLE and (self.tables is None or
                                                                               t in self.tables)]
                self._flush()
                if names:
                    with self._lanes.waits(0):
                        self.conn.execute(sql.SQL("TRUNCATE {}{}").format(
                            sql.SQL(", ").join(self._table(t).ident for t in names),
                            sql.SQL(" RESTART IDENTITY" if change["restart_identity"] else "")))
                    self._release()
                    self.applied.update((t, "T") for t in names)
            elif self.tables is None or change["table"] in self.tables:
                self._row(change)
        self.transactions += 1
        self._pending += 1
        if self._pending >= BATCH:
            if self.replica_role:  # in the background: the next run goes on
                self._hand_over(commit=True)
                self._pending = 0
            else:
                self.commit()

    def commit(self) -> None:
        self._flush()
        self._triggers_on()
        self.conn.commit()
        self._pending = 0

    def _triggers_on(self) -> None:
        """Enable again, in the transaction about to commit, the user triggers this replay disabled in it: a
        disabled trigger is never committed, so a replay that fails or is killed leaves none off (capture, GDPR
        audit). The next transaction looks its tables up, and quiets them, again."""
        for ident in self._quieted:
            self.conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(ident))
        for name in [n for n, t in self._tables.items() if t.ident in self._quieted]:
            del self._tables[name]
        self._quieted.clear()

    def close(self) -> None:
        """Wait for the runs in flight (raising what they raised); stop the lanes' threads and connections."""
        self._lanes.close()

    def _table(self, name: str) -> _Table:
        if name not in self._tables:
            self._flush()
            try:
                schema, table = relation_parts(self.conn, name, ("r", "p"))
            except UnknownRelation as error:
                raise ReplayError(f"the archive changes {name!r}, which the restored database does not have "
                                  "(a migration without its marker?)") from error
            oid = self.conn.execute("SELECT %s::regclass::oid", (sql.Identifier(schema, table).as_string(self.conn),)
                                    ).fetchone()[0]
            columns = {c for (c,) in self.conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,))}
            key = [c for (c,) in self.conn.execute(
                "SELECT a.attname FROM pg_index i JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n", (oid,))]
            if not key:
                raise ReplayError(f"{name} has no primary key in the restored database: replay needs one")
            ident = sql.Identifier(schema, table)
            if not self.replica_role and ident not in self._quieted:  # the owner may; the target is private
                self.conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(ident))
                self._quieted.append(ident)
            self._tables[name] = _Table(name, ident, key, columns)
        return self._tables[name]

    def _row(self, change: dict) -> None:
        name = change["table"]
        table = self._tables.get(name) or self._table(name)
        new = change.get("new")
        if new and not table.columns.issuperset(new):
            raise ReplayError(f"{table.ident.as_string(self.conn)} has no column "
                              f"{', '.join(sorted(set(new) - table.columns))} in the restored database")
        self.applied[(name, change["op"])] += 1
        if self.replica_role:  # triggers and foreign keys quiet: the net effect is the same, in bulk
            self._net.add(table, change)
            if len(self._net) >= NET_EFFECT_MAX:
                self._hand_over(commit=False)
            return
        self._exact(table, change)

    def _exact(self, table: _Table, change: dict) -> None:
        self._statements.exact(self.conn, table, change, self._queue)

    def _release(self) -> None:
        """With other lanes, the replay's own connection commits the truncate or partition step it just took a
        lock for: the table's own lane would wait for that lock while the replay waits for the lane. The table's
        changes stay in commit order (its lane's next run follows this commit); the private target is committed
        in parts already (each lane commits its own)."""
        if len(self._lanes.connections) > 1:
            self.conn.commit()

    def _hand_over(self, *, commit: bool) -> None:
        """The run collected so far (and the commit of the replay's batch) to the lanes' threads."""
        net, self._net = self._net, NetEffect()
        self._lanes.submit(net, commit)

    def _apply_net(self, conn: psycopg.Connection, net: NetEffect, commit: bool = False) -> None:
        """The run's net effect in bulk; on a collision a unique key other than the primary key sees only in
        the net effect, the same run change by change (:mod:`coldcopy.pitr.bulk`)."""
        if len(net):
            conn.execute("SAVEPOINT coldcopy_net")
            try:
                net.apply(conn)
                conn.execute("RELEASE SAVEPOINT coldcopy_net")
            except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation):
                conn.execute("ROLLBACK TO SAVEPOINT coldcopy_net")
                self.one_by_one += 1
                log.info("replay: %d changes applied one by one (their net effect collides)", len(net))
                with conn.pipeline():
                    for change in net.changes:
                        self._statements.exact(conn, net.tables[change["table"]][0], change, conn.execute)
        if commit:
            conn.commit()

    def _queue(self, statement: str, params: list) -> None:
        """Changes go to the server in libpq's pipeline mode: one by one and in order, without a round trip
        each; :meth:`_flush` waits for them (and raises the first error)."""
        if self._pipeline is None:
            self._pipeline = self.conn.pipeline()
            self._pipeline.__enter__()
            self._cursor = self.conn.cursor()
        self._cursor.execute(statement, params, prepare=True)

    def _flush(self) -> None:
        """Everything handed over or collected is applied when this returns (the other lanes' part committed,
        this connection's in its transaction)."""
        if len(self._net):
            self._hand_over(commit=False)
        self._lanes.wait()
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.__exit__(None, None, None)

    def _marker(self, marker: dict) -> None:
        self._flush()
        self.markers.append(marker)
        if marker["kind"] == "migration":
            self.commit()
            self.sync_sequences()  # a file's own inserts draw from them: not below the replayed rows
            if self.migrate is None:
                raise ReplayError(f"migration {marker['file']} in the archive, and no way to apply it")
            self.migrate(marker)
            self._tables.clear()
            self._statements.clear()
        elif marker["kind"] == "partition":
            with self._lanes.waits(0):
                self._partition(marker)
            self._release()
            self._tables.clear()
            self._statements.clear()

    def _partition(self, marker: dict) -> None:
        try:
            target.apply_partition_marker(self.conn, marker)
        except ValueError as error:
            raise ReplayError(str(error)) from error

    def finish(self) -> dict[str, int]:
        """Commit, then set every column-owned sequence from the data (``setval`` to its column's maximum)
        and enable again the triggers this replay disabled."""
        self.commit()
        moved = self.sync_sequences()
        self.commit()
        self.close()
        return moved

    def sync_sequences(self) -> dict[str, int]:
        """``setval`` every column-owned sequence to its column's maximum."""
        moved = target.sync_sequences(self.conn)
        self.commit()
        return moved
