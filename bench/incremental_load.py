"""The capture's cost to the application (bench/incremental.py, part 2): the load bench's workload with the capture
triggers installed and dropped, alternating."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bench import common
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.testing import app_load, servers


def drop_capture(conn) -> None:
    for table in {t for s in SUMMARIES.values() for t in s.sources}:
        for (relname,) in conn.execute("SELECT t.relid::regclass::text FROM (SELECT %s::regclass AS relid UNION "
                                       "SELECT relid FROM pg_partition_tree(%s::regclass)) t", (table, table)):
            for trigger in capture.TRIGGERS:
                conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(trigger), sql.SQL(relname)))


def trigger_cost(server: str, scale: int, clients: int, rounds: int) -> dict:
    with (common.bench_database(server, scale, "ivm_load") as dsn, servers.LocalPgBouncer(server) as bouncer,
          psycopg.connect(dsn, autocommit=True) as conn):
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        for summary_name in SUMMARIES:  # the first build (not ``name``: the database the clients connect to)
            SummaryMaintainer(conn, summary_name).apply()
        password = app_load.prepare(dsn)
        app_load.run(bouncer, name, password, clients=clients, seconds=10)  # warm-up, untimed

        def phase(with_capture: bool) -> dict:
            if with_capture:
                for summary in SUMMARIES.values():
                    capture.ensure(conn, summary)
            else:
                drop_capture(conn)
            return app_load.run(bouncer, name, password, clients=clients, seconds=10).summary

        measured = common.alternating(rounds, {"with capture": lambda: phase(True),
                                               "without capture": lambda: phase(False)})
    return {kind: {"p99_ms": common.spread([r["p99_ms"] for r in rs], 1),
                   "p50_ms": common.spread([r["p50_ms"] for r in rs], 1),
                   "tps": common.spread([r["tps"] for r in rs], 0),
                   "errors": sum(r["errors"] for r in rs)} for kind, rs in measured.items()}
