"""Where personal data is: the catalog walked from leads and messages, detached months, the registry."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from coldcopy import safe_names
from coldcopy.gdpr.subjects import NO_FOREIGN_KEY, OUT_OF_SCOPE

# Personal data the catalog cannot tell apart (docs: "Where personal data is"). Every public column named like an
# address, a payload or a phone number, or of type json/jsonb, must be listed here (or be an ``email`` column of
# a tenant table, which the catalog rule covers): :func:`unregistered_columns` finds the ones that are not, the
# gdpr_requests DAG alerts on them and a test fails. Kinds:
#   address  a text column that may hold the subject's address: rows whose value hashes to the subject's key
#   payload  json whose string values may hold the address: rows with any such value are the subject's
#   row      personal, but its rows are reached through the subject's lead or message (deleted with them)
#   none     not about the people a workspace e-mails (sender accounts, configuration, the workspace's users)
PERSONAL_COLUMNS_REGISTRY: dict[tuple[str, str], str] = {
    ("public.enrichment_cache", "lookup_key"): "address",
    ("public.enrichment_cache", "payload"): "payload",
    ("public.intent_signals", "payload"): "payload",
    ("public.dashboard_cache", "payload"): "payload",
    ("public.email_events", "metadata"): "payload",
    ("public.email_events", "ip_address"): "row",
    ("public.leads", "custom_fields"): "row",
    ("public.leads", "phone"): "row",
    ("public.users", "email"): "none",
    ("public.email_accounts", "email"): "none",
    ("public.email_events", "email_account_id"): "none",
    ("public.email_messages", "email_account_id"): "none",
    ("public.deliverability_metrics", "email_account_id"): "none",
    ("public.warmup_schedules", "email_account_id"): "none",
    ("public.workspaces", "monthly_email_quota"): "none",
    ("public.workspaces", "settings"): "none",
    ("public.integrations", "settings"): "none",
    ("public.campaigns", "send_window"): "none",
    ("public.campaign_channel_steps", "config"): "none",
    ("public.workflow_actions", "config"): "none",
    ("public.workflows", "conditions"): "none",
}
MAX_DEPTH = 5  # foreign-key hops from a lead or message followed (the schema needs 2)


@dataclass(frozen=True)
class Link:
    """Rows of ``table`` about the subject: those whose ``column`` holds the subject's address (``via`` email or
    address), its lead ids (``lead``), message ids (``message``), a json ``payload`` holding the address, or —
    ``via`` parent — whose ``columns`` reference (``ref_columns``) rows of ``parent`` about the subject (a foreign
    key of any arity, followed transitively). ``on_erase``: ``delete`` or ``nullify``."""

    table: str
    column: str
    via: str
    on_erase: str = "delete"
    parent: Link | None = None
    columns: tuple[str, ...] = ()
    ref_columns: tuple[str, ...] = ()
    depth: int = 0


def _foreign_keys(conn: psycopg.Connection) -> list[tuple[str, tuple, str, tuple, str]]:
    """(child, child columns, parent, parent columns, on delete) of every foreign key between public tables."""
    return [(child, tuple(cols), parent, tuple(refs), rule) for child, cols, parent, refs, rule in conn.execute("""
        SELECT format('%I.%I', n.nspname, c.relname),
               array(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
               (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_class p JOIN pg_namespace pn
                  ON pn.oid = p.relnamespace WHERE p.oid = k.confrelid),
               array(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
               k.confdeltype
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE k.contype = 'f' AND k.conparentid = 0 AND NOT c.relispartition AND n.nspname = 'public'
        ORDER BY 1, 2""")]


def detached_months(conn: psycopg.Connection) -> list[str]:
    """email_events months detached by partition_maintenance and still in their grace period (plain tables)."""
    if not conn.execute("SELECT to_regclass('coldcopy_ops.partition_archive') IS NOT NULL").fetchone()[0]:
        return []
    return [f"public.{name}" for (name,) in conn.execute(
        "SELECT partition_name FROM coldcopy_ops.partition_archive WHERE state = 'detached' "
        "AND to_regclass('public.' || quote_ident(partition_name)) IS NOT NULL ORDER BY 1")]


def personal_data_map(conn: psycopg.Connection) -> list[Link]:
    """Every place holding a subject's rows, in erasure order (children before parents): tenant tables with
    an ``email`` column; every foreign key to ``leads`` and ``email_messages``, and from there every foreign key
    to those tables in turn (cascades: exported and deleted explicitly, so views over them are refreshed);
    email_events, which has no foreign keys, and its detached months; and :data:`PERSONAL_COLUMNS_REGISTRY`."""
    by_email = [Link(t, "email", "email") for (t,) in conn.execute("""
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'email'
                      AND NOT a.attisdropped)
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'workspace_id'
                      AND NOT a.attisdropped)
        ORDER BY 1""") if t not in OUT_OF_SCOPE]
    keys = _foreign_keys(conn)
    roots = {"public.leads": "lead", "public.email_messages": "message"}
    first = [Link(child, cols[0], roots[parent], "nullify" if rule == "n" else "delete", columns=cols, depth=1)
             for child, cols, parent, _, rule in keys if parent in roots and len(cols) == 1]
    deeper: list[Link] = []
    frontier = [link for link in first if link.on_erase == "delete"]
    while frontier:
        found = []
        for link in frontier:
            if link.depth >= MAX_DEPTH:
                continue
            for child, cols, parent, refs, rule in keys:
                if parent == link.table and parent not in roots and rule not in ("n", "d"):
                    found.append(Link(child, cols[0], "parent", "delete", parent=link, columns=cols,
                                      ref_columns=refs, depth=link.depth + 1))
        deeper += found
        frontier = found
    leads_root = Link("public.leads", "email", "email")
    deeper += [Link(child, cols[0], "parent", "delete", parent=leads_root, columns=cols, ref_columns=refs, depth=1)
               for child, cols, parent, refs, rule in keys
               if parent == "public.leads" and len(cols) > 1 and rule not in ("n", "d")]  # composite keys to leads
    found = {(link.table, link.column) for link in first}
    explicit = [Link(t, c, v, depth=1) for t, c, v in NO_FOREIGN_KEY if (t, c) not in found]
    months = [Link(t, c, v, depth=1) for t in detached_months(conn) for _, c, v in NO_FOREIGN_KEY]
    registry = [Link(t, c, kind) for (t, c), kind in PERSONAL_COLUMNS_REGISTRY.items() if kind in ("address", "payload")
                and safe_names.exists(conn, t)]
    message_children = [link for link in first if link.via == "message"]
    lead_children = [link for link in first if link.via == "lead" and link.table != "public.email_messages"]
    messages = [link for link in first if link.table == "public.email_messages"]
    email_tables = [link for link in by_email if link.table != "public.leads"]
    leads = [link for link in by_email if link.table == "public.leads"]
    return (sorted(deeper, key=lambda link: -link.depth) + message_children + explicit + months + lead_children
            + messages + registry + email_tables + leads)


def unregistered_columns(conn: psycopg.Connection) -> list[str]:
    """Public columns that look personal (an address, payload, phone, or json) but that neither the catalog
    rule (an ``email`` column of a tenant table) nor :data:`PERSONAL_COLUMNS_REGISTRY` accounts for."""
    covered = {(link.table, "email") for link in personal_data_map(conn) if link.via == "email"}
    return [f"{t}.{c}" for t, c in conn.execute("""
        SELECT format('%I.%I', n.nspname, c.relname), a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0
          AND NOT a.attisdropped AND (a.attname ~* '(mail|payload|lookup_key|address|phone)'
                                      OR format_type(a.atttypid, NULL) IN ('json', 'jsonb'))
          AND c.relname NOT IN ('data_subject_requests', 'suppression_list')
        ORDER BY 1, 2""") if (t, c) not in PERSONAL_COLUMNS_REGISTRY and (t, c) not in covered]
