"""What a call in a migration runs. A call to a built-in without side effects is nothing to grade; a call to a
function the target already has is graded by that function's definition, read from the target's catalog; anything
else (a built-in with effects, a function the grader cannot see, C code) is *ungraded*."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# pg_catalog functions that change something outside the statement: sessions, settings, sequences, files, slots,
# large objects, the WAL, statistics
SIDE_EFFECTS = re.compile(
    r"^(pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_switch_wal|pg_promote|set_config"
    r"|setval|lo_|pg_read_|pg_ls_|pg_stat_reset|pg_(create|drop|copy)_\w*replication_slot|pg_replication_"
    r"|pg_logical_|pg_log_backend|pg_import_system_collations|pg_file_|dblink|pg_wal_replay|pg_backup_"
    r"|pg_create_restore_point|pg_start_backup|pg_stop_backup|pg_notify|pg_sleep"
    r"|query_to_xml|cursor_to_xml|ts_stat|ts_rewrite|database_to_xml|schema_to_xml)", re.I)  # these run SQL text
# known without a catalog (a file graded from its text alone): common built-ins without effects
OFFLINE = frozenset("""now count sum min max avg coalesce nullif greatest least format lower upper length trim
btrim ltrim rtrim substr substring replace concat concat_ws left right position split_part string_agg array_agg
array_length array_position cardinality unnest jsonb_build_object json_build_object jsonb_agg to_jsonb jsonb_set
date_trunc date_part extract make_interval to_char to_date to_timestamp age clock_timestamp statement_timestamp
transaction_timestamp gen_random_uuid md5 sha256 encode decode abs round ceil floor generate_series row_number
rank dense_rank lag lead first_value last_value bool_and bool_or every exists current_setting regexp_replace
regexp_match regexp_matches quote_ident quote_literal quote_nullable pg_typeof""".split())


@dataclass
class Functions:
    """``builtins``: names of pg_catalog's functions; ``defined``: ``schema.name`` → the definitions
    (``pg_get_functiondef``) and languages of the target's own functions of that name."""

    builtins: frozenset[str] = OFFLINE
    defined: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    operators: frozenset[str] = frozenset()  # operators whose function is the target's own SQL or PL/pgSQL
    unique_indexes: frozenset[str] = frozenset()  # schema.name of every unique index

    def harmless(self, schema: str | None, name: str) -> bool:
        return schema in (None, "pg_catalog") and name in self.builtins and not SIDE_EFFECTS.match(name)

    def definitions(self, schema: str | None, name: str) -> list[tuple[str, str]] | None:
        """The target's definitions of a called function (an unqualified name: ``public``, the migrations' path)."""
        return self.defined.get(f"{schema or 'public'}.{name}")

    @classmethod
    def from_conn(cls, conn) -> Functions:
        builtins = {r[0] for r in conn.execute(
            "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace")}
        defined: dict[str, list[tuple[str, str]]] = {}
        for schema, name, language, definition in conn.execute(
                "SELECT n.nspname, p.proname, l.lanname, CASE WHEN p.prokind IN ('f', 'p') AND l.lanname NOT IN "
                "('c', 'internal') THEN pg_catalog.pg_get_functiondef(p.oid) END "
                "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                "JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"):
            defined.setdefault(f"{schema}.{name}", []).append((language, definition or ""))
        operators = {r[0] for r in conn.execute(
            "SELECT DISTINCT o.oprname FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode "
            "JOIN pg_catalog.pg_language l ON l.oid = p.prolang WHERE l.lanname NOT IN ('c', 'internal')")}
        unique = {r[0] for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c "
            "ON c.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE i.indisunique")}
        return cls(frozenset(builtins), defined, frozenset(operators), frozenset(unique))
