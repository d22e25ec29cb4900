"""A database's schema as its catalog holds it (:func:`read`): one :class:`SchemaObject` per schema, table,
column, constraint, index, view, trigger, policy, function, sequence, grant to an API role and extension, named so
that the same object has the same name in two databases (``sql/drift/catalog.sql``).

What is left out, and why (docs/migrations.md, *Schema drift*):

* the platform's schemas (:data:`PLATFORM_SCHEMAS`, and every ``pg_*``, ``supabase_*``, ``graphql*``): Supabase
  owns and upgrades them; and the project's own bookkeeping, ``coldcopy_ops``, which the jobs write;
* partitions of a partitioned table and what hangs off them: partition rotation makes and drops them, and their
  indexes, constraints and triggers are the parent's (the parent is compared);
* triggers calling a function of a left-out schema: the refresh jobs install change capture on the application's
  tables by design (``coldcopy_ops.ivm_capture_*``, ``coldcopy_track_changes``);
* an extension's own tables and functions (the extension is compared, by name); an extension only live has, in a
  left-out schema, is the platform's (Supabase installs pgcrypto, uuid-ossp, pg_stat_statements in
  ``extensions``) and not reported.

Only catalogs are read: the cost follows the number of objects, not of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from coldcopy import SQL_DIR

PLATFORM_SCHEMAS = ("auth", "storage", "realtime", "_realtime", "extensions", "vault", "pgbouncer", "pgsodium",
                    "pgsodium_masks", "net", "cron", "_analytics", "graphql", "graphql_public", "pgtle",
                    "information_schema")
OWN_SCHEMAS = ("coldcopy_ops", "coldcopy_load")  # the jobs' bookkeeping; the load bench's sample
EXCLUDED_SCHEMAS = PLATFORM_SCHEMAS + OWN_SCHEMAS
QUERY = SQL_DIR / "drift" / "catalog.sql"


@dataclass(frozen=True)
class SchemaObject:
    kind: str  # schema, table, column, constraint, index, view, trigger, policy, function, grant, …
    name: str
    props: dict = field(default_factory=dict, hash=False, compare=False)  # what two databases must agree on
    create_sql: str = field(default="", hash=False, compare=False)
    drop_sql: str = field(default="", hash=False, compare=False)
    home: str | None = field(default=None, hash=False, compare=False)  # an extension's schema

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    @property
    def table(self) -> str | None:
        """The table (or view) this object belongs to, schema-qualified as the catalog quotes it."""
        if self.kind in ("table", "view", "materialized view", "foreign table", "sequence"):
            return self.name
        if self.kind in ("column", "constraint", "trigger", "policy"):
            return self.name.rsplit(".", 1)[0]
        if self.kind == "grant" and " on " in self.name and not self.name.split(" on ", 1)[1].startswith(
                ("function ", "schema ")):
            return self.name.split(" on ", 1)[1]
        return None


def read(conn: psycopg.Connection, excluded: tuple[str, ...] = EXCLUDED_SCHEMAS) -> dict[tuple[str, str], SchemaObject]:
    """Every object of the database ``conn`` reaches but those of ``excluded`` schemas, by ``(kind, name)``."""
    rows = conn.execute(QUERY.read_text(), {"excluded": list(excluded)}).fetchall()
    return {(kind, name): SchemaObject(kind, name, props or {}, create or "", drop or "", home)
            for kind, name, props, create, drop, home in rows}
