"""The restored database against what it must hold: the base restore against its manifest, the replayed
result against the archive's :class:`~coldcopy.pitr.drills.expected.Expectation`. Names come from the restored
catalog (:mod:`coldcopy.safe_names`) and are composed only as identifiers."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.pitr.drills.expected import Expectation
from coldcopy.safe_names import relation_parts

SHOWN = 5  # mismatching keys named per table


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every application table: each leaf table counted, each partitioned table the sum of its leaves
    (:func:`leaf_rows` adds up the leaves alone)."""
    leaves = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname), c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1").fetchall()
    conn.execute("SET max_parallel_workers_per_gather = 0")
    counts = {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(*name_parts(conn, name)))).fetchone()[0] for name, _ in leaves}
    for root, members in conn.execute(
            "WITH RECURSIVE tree(root, oid) AS (SELECT c.oid, c.oid FROM pg_class c WHERE c.relkind = 'p' "
            "UNION ALL SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.oid) "
            "SELECT format('%I.%I', n.nspname, r.relname), array_agg(format('%I.%I', m.nspname, c.relname)) "
            "FROM tree t JOIN pg_class r ON r.oid = t.root JOIN pg_namespace n ON n.oid = r.relnamespace "
            "JOIN pg_class c ON c.oid = t.oid AND c.relkind = 'r' JOIN pg_namespace m ON m.oid = c.relnamespace "
            "GROUP BY 1").fetchall():
        counts[root] = sum(counts.get(m, 0) for m in members)
    conn.rollback()
    return counts


def leaf_rows(conn: psycopg.Connection, counts: dict[str, int]) -> int:
    """Rows of the database: its leaf tables' counts added up (a partitioned table's rows are its leaves')."""
    roots = {r for (r,) in conn.execute("SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
                                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'")}
    conn.rollback()
    return sum(n for t, n in counts.items() if t not in roots)


def name_parts(conn: psycopg.Connection, name: str) -> tuple[str, str]:
    return relation_parts(conn, name, ("r", "p"))


def against_manifest(counts: dict[str, int], manifest: dict) -> dict[str, tuple[int, int | None]]:
    """Tables whose restored rows differ from the backup manifest's (counted in the dump's own snapshot)."""
    return {t: (n, counts.get(t)) for t, n in manifest.get("row_counts", {}).items() if counts.get(t) != n}


def primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    schema, name = name_parts(conn, table)
    return [c for (c,) in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, n) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n",
        (sql.Identifier(schema, name).as_string(conn),)).fetchall()]


def against_archive(conn: psycopg.Connection, expectation: Expectation, base: dict[str, int]) -> dict:
    """Per table: the row count the archive implies against the restored one, and the sampled keys whose row
    differs from (or, deleted, is still in) the restored database. ``problems`` lists every difference."""
    problems: list[str] = []
    counted: dict[str, dict] = {}
    after = table_counts(conn)
    for table in sorted(set(expectation.deltas) | set(expectation.unchecked)):
        want = expectation.expected_count(table, base.get(table, 0))
        got = after.get(table)
        counted[table] = {"base": base.get(table), "expected": want, "restored": got,
                          **({"unchecked": expectation.unchecked[table]} if table in expectation.unchecked else {})}
        if want is not None and got != want:
            problems.append(f"{table}: {got} rows restored, the archive implies {want} "
                            f"({base.get(table)} in the base backup {expectation.deltas[table][1]:+d})")
    keys: dict[str, dict] = {}
    for table, rows in sorted(expectation.images.items()):
        if not rows:
            continue
        wrong = _differing(conn, table, expectation.primary_key(table), rows)
        keys[table] = {"sampled": len(rows), "differing": len(wrong)}
        if wrong:
            problems.append(f"{table}: {len(wrong)} of {len(rows)} sampled keys differ from the archive "
                            f"(e.g. {', '.join(map(str, wrong[:SHOWN]))})")
    conn.rollback()
    return {"counts": counted, "sampled": keys, "problems": problems, "rows": leaf_rows(conn, after),
            "sampled_keys": sum(k["sampled"] for k in keys.values())}


def _differing(conn: psycopg.Connection, table: str, pk: list[str], rows: dict[tuple, dict | None]) -> list:
    """The sampled keys of ``table`` whose restored row is not the archived image (or is there, deleted). The
    archived values (text, as pgoutput wrote them) are parsed by the column types (COPY into a temporary
    table shaped like the table), and both sides compared as the server prints them."""
    schema, name = name_parts(conn, table)
    target = sql.Identifier(schema, name)
    columns = {c for (c,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (target.as_string(conn),)).fetchall()}
    shapes: dict[tuple, list] = {}
    for key, image in rows.items():
        shape = tuple(pk) if image is None else tuple(pk) + tuple(sorted(c for c in image if c in columns and
                                                                         c not in pk))
        shapes.setdefault((image is None, shape), []).append((key, image))
    wrong = []
    for (deleted, shape), members in shapes.items():
        scratch = sql.Identifier("coldcopy_drill_expect")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(scratch))
        conn.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            scratch, sql.SQL(", ").join(map(sql.Identifier, shape)), target))
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                scratch, sql.SQL(", ").join(map(sql.Identifier, shape)))) as copy:
            for key, image in members:
                copy.write_row(list(key) if deleted else [*key, *(image[c] for c in shape[len(pk):])])
        on = sql.SQL(" AND ").join(sql.SQL("t.{0} = e.{0}").format(sql.Identifier(k)) for k in pk)
        keys = sql.SQL(", ").join(sql.SQL("e.{}::text").format(sql.Identifier(k)) for k in pk)
        if deleted:
            query = sql.SQL("SELECT {} FROM {} e JOIN {} t ON {}").format(keys, scratch, target, on)
        else:
            values = shape[len(pk):]
            differ = sql.SQL(" OR ").join(sql.SQL("t.{0}::text IS DISTINCT FROM e.{0}::text").format(
                sql.Identifier(c)) for c in values) if values else sql.SQL("false")
            query = sql.SQL("SELECT {} FROM {} e LEFT JOIN {} t ON {} WHERE t.{} IS NULL OR {}").format(
                keys, scratch, target, on, sql.Identifier(pk[0]), differ)
        wrong += [row[0] if len(row) == 1 else row for row in conn.execute(query).fetchall()]
    return wrong
