"""Relation names from outside (a bucket's manifest, XCom, a DAG param, a config row) made safe for SQL.

:func:`relation` accepts only the syntax of a (schema-qualified) PostgreSQL name, looks it up in the
catalog, and returns a :class:`psycopg.sql.Identifier` built from the catalog's own spelling. Nothing a
caller passes in is ever pasted into SQL text.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = re.compile(rf"^{_PART}(?:\.{_PART})?$")
TABLE_KINDS = ("r", "p", "m")  # table, partitioned table, materialized view
INDEX_KINDS = ("i", "I")


class UnknownRelation(ValueError):
    """The name is not a relation of the expected kind in this database (or not a name at all)."""


def exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether the relation ``name`` (``schema.table``, as ``to_regclass`` reads it) exists; any row factory."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS found", (name,)).fetchone()
    return bool(row["found"] if isinstance(row, dict) else row[0])


def relation(conn: psycopg.Connection, name: str, kinds: tuple[str, ...] = TABLE_KINDS) -> sql.Identifier:
    """``schema.name`` of the existing relation ``name`` refers to, as an Identifier.

    :raises UnknownRelation: ``name`` is not a plain (optionally quoted, schema-qualified) name, or no
        relation of one of ``kinds`` has it.
    """
    return sql.Identifier(*relation_parts(conn, name, kinds))


def relation_parts(conn: psycopg.Connection, name: str, kinds: tuple[str, ...] = TABLE_KINDS) -> tuple[str, str]:
    """``(schema, name)`` as the catalog spells them; see :func:`relation`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UnknownRelation(f"not a relation name: {name!r}")
    found = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s)", (name,)).fetchone()
    if found is None or found[2] not in kinds:
        raise UnknownRelation(f"no {'/'.join(kinds)} relation named {name!r} in database {conn.info.dbname!r}")
    return found[0], found[1]
