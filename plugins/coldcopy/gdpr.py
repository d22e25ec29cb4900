"""GDPR: data-subject requests (access, portability, erasure) and retention policies.

**Where personal data is** (:func:`personal_data_map`), discovered from the catalog on every run so a new
table is not silently missed: ``public`` tables with a ``workspace_id`` and an ``email`` column (matched on the
address), every foreign key to ``leads`` (on the subject's lead ids) and to ``email_messages`` (on their
messages), plus what the catalog cannot tell (:data:`NO_FOREIGN_KEY`: ``email_events``, partitioned, keeps
``lead_id``/``message_id`` without foreign keys). ``users`` and ``email_accounts`` are the workspace's own
accounts, not the people it e-mails: out of scope (account deletion handles them).

**Erasure**, per table: rows are deleted, except where the foreign key is ``ON DELETE SET NULL`` (the row
belongs to someone else, e.g. a workflow run): the reference is nulled. ``data_subject_requests`` keeps the
request with the address replaced by its one-way key, ``suppression_list`` gets the key with reason
``gdpr_erasure`` (a trigger on ``leads`` then refuses the address in that workspace), and audit-trail rows
naming the erased rows get ``row_id = 'erased'``. Batches of :data:`BATCH` rows, each its own transaction
under ``lock_timeout`` with retries, children before parents.

**Backups and archives** are not rewritten: the erasure ledger (``coldcopy_ops.erasure_ledger``, mirrored,
signed, under ``gdpr/erasures/`` in the bucket) holds one-way keys of the subject and of the erased rows' ids,
and every way back into the database applies it — ``restore_from_spaces`` before handing the database over,
``partition_restore`` before attaching a month (whose next archive is then a fresh export without those
rows). Why not rewrite archives: each month is verified, signed evidence of what left the database; rewriting
every archived month on every erasure means downloading and re-verifying years of objects per request, racing
rotation, while the rows can only come back through these two doors, both of which apply the ledger.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import alerts, catalog, manifests, ops_schema
from coldcopy.crypto import check_binding, gpg_symmetric
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

log = logging.getLogger(__name__)

BATCH = 2000
EXPORT_PREFIX = "gdpr/exports"
LEDGER_PREFIX = "gdpr/erasures"
RETENTION_PREFIX = "gdpr/retention"
EXPORT_URL_TTL = timedelta(days=7)
ERASED = "hmac:"  # prefix of a keyed subject hash standing where an address was (suppression list, requests)
LEGACY_ERASED = "sha256:"  # the unkeyed hash used before; migrated on first use (Gdpr.ensure_subject_key)
DPO_CONN_ID = "coldcopy_dpo"  # where an export's link and passphrase go (http webhook or smtp)
PEPPER_CONN_ID = "coldcopy_subject_pepper"  # the secret keying subject hashes (its password)
HANDLED_TYPES = {"access": "export", "portability": "export", "erasure": "erase"}
OUT_OF_SCOPE = {"public.users", "public.email_accounts"}  # the workspace's own accounts, not its recipients
NO_FOREIGN_KEY = [("public.email_events", "lead_id", "lead"), ("public.email_events", "message_id", "message")]
REFUSE_TRIGGER = "coldcopy_refuse_erased_subject"
# What retention policies (a tenant-writable table) may touch. Never the audit trail, the requests, consent
# records, the suppression list or anything outside ``public``: a policy naming another table is skipped and
# reported, so a workspace member cannot have the privileged job delete the evidence of what was done.
RETENTION_TABLES = frozenset({
    "public.leads", "public.campaign_leads", "public.lead_scores", "public.email_events", "public.email_messages",
    "public.hubspot_sync_log", "public.salesforce_sync_log",
    "public.intent_signals", "public.linkedin_messages", "public.twitter_engagements", "public.channel_touchpoints",
    "public.workflow_runs", "public.reply_classifications", "public.smart_reply_suggestions",
    "public.deliverability_metrics", "public.meeting_requests", "public.linkedin_post_engagements",
    "public.lead_notes"})
AGE_COLUMNS = ("occurred_at", "created_at", "recorded_at", "sent_at")  # what "older than retain_for" is measured on
PERSONAL_COLUMNS = ("email", "first_name", "last_name", "phone", "linkedin_url", "ip_address", "user_agent",
                    "body_text", "subject", "company", "title", "website", "custom_fields", "metadata", "url")


class GdprError(RuntimeError):
    """A request or policy that cannot be carried out as asked; the message says why."""


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
                and conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]]
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


@dataclass
class Subject:
    workspace_id: str
    subject_hash: str
    email: str | None = None  # None when re-applying from the ledger (only one-way keys are kept)
    lead_ids: list = field(default_factory=list)
    message_ids: list = field(default_factory=list)

    def values(self, via: str) -> list:
        return {"lead": self.lead_ids, "message": self.message_ids}.get(via, [])


class Gdpr:
    """GDPR work on one (autocommit) connection.

    :param lock_retry: lock_timeout and retries of every batch.
    :param keyring: signs and authenticates the ledger objects in the bucket.
    """

    def __init__(self, conn: psycopg.Connection, *, keyring: manifests.Keyring | None = None,
                 dpo_conn_id: str = DPO_CONN_ID, passphrase: str | None = None, pepper: str | None = None,
                 lock_retry: LockRetryPolicy = LockRetryPolicy(), batch: int = BATCH) -> None:
        self.conn = conn
        self.keyring, self.dpo_conn_id, self.passphrase = keyring, dpo_conn_id, passphrase
        self.lock_retry = lock_retry
        self.batch = batch
        ops_schema.ensure(conn, "gdpr", lock_retry)
        self.ensure_subject_key(pepper)

    def ensure_subject_key(self, pepper: str | None) -> None:
        """Install the pepper of subject keys (the ``coldcopy_subject_pepper`` connection) in
        ``coldcopy_ops.subject_key`` once and, in the same transaction, migrate every unkeyed ``sha256:`` entry
        (suppression list, requests, ledger rows made before) to its keyed form: HMAC over the old hash, so no
        address is needed. The same pepper everywhere (live, restored copies, the bucket's ledger) is what lets
        a restore find the people to erase again: a database holding another one is refused."""
        if pepper is None:
            if not self.conn.execute("SELECT EXISTS (SELECT 1 FROM coldcopy_ops.subject_key)").fetchone()[0]:
                raise GdprError(f"no subject pepper: set the {PEPPER_CONN_ID} connection (openssl rand -hex 32)")
            return
        raw = hashlib.sha256(pepper.encode()).digest()  # any length of secret -> the 32-byte HMAC key
        key = raw + bytes(32)  # HMAC pads the key to sha256's 64-byte block
        inner, outer = bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)
        stored = self.conn.execute("SELECT inner_pad FROM coldcopy_ops.subject_key").fetchone()
        if stored is not None:
            if bytes(stored[0]) != inner:
                raise GdprError(f"the {PEPPER_CONN_ID} connection holds another pepper than this database's: "
                                "subject keys would not match (restore the original secret)")
            return

        def create() -> None:
            self.conn.execute("LOCK TABLE coldcopy_ops.subject_key IN EXCLUSIVE MODE")
            if self.conn.execute("SELECT EXISTS (SELECT 1 FROM coldcopy_ops.subject_key)").fetchone()[0]:
                return
            self.conn.execute("INSERT INTO coldcopy_ops.subject_key (inner_pad, outer_pad) VALUES (%s, %s)",
                              (inner, outer))
            for table, column in (("public.suppression_list", "email"), ("public.data_subject_requests", "email")):
                self.conn.execute(sql.SQL(
                    "UPDATE {} SET {} = %s || coldcopy_ops.keyed(substr({}, %s)) WHERE {} LIKE %s").format(
                    catalog.relation(self.conn, table), *[sql.Identifier(column)] * 3),
                    (ERASED, len(LEGACY_ERASED) + 1, LEGACY_ERASED + "%"))
            self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET subject_hash = coldcopy_ops.keyed(subject_hash) "
                              "WHERE seq IS NULL")

        under_lock_timeout(self.conn, create, self.lock_retry, what="the subject key")

    # -- the subject ------------------------------------------------------------------------------------

    def subject_hash(self, workspace_id: str, email: str) -> str:
        return self.conn.execute("SELECT coldcopy_ops.subject_hash(%s, %s)", (workspace_id, email)).fetchone()[0]

    def find(self, workspace_id: str, *, email: str | None = None, subject_hash: str | None = None,
             id_hashes: list[str] = ()) -> Subject:
        """The subject's lead and message ids in the workspace, by address or by the ledger's one-way keys."""
        subject_hash = subject_hash or self.subject_hash(workspace_id, email)
        lead_ids = [r for (r,) in self.conn.execute(
            "SELECT id FROM public.leads WHERE workspace_id = %s "
            "AND (coldcopy_ops.subject_hash(workspace_id, email) = %s OR coldcopy_ops.id_hash(id) = ANY(%s))",
            (workspace_id, subject_hash, list(id_hashes)))]
        message_ids = [r for (r,) in self.conn.execute(
            "SELECT id FROM public.email_messages WHERE workspace_id = %s AND (lead_id = ANY(%s) "
            "OR coldcopy_ops.id_hash(id) = ANY(%s))", (workspace_id, lead_ids, list(id_hashes)))]
        return Subject(workspace_id, subject_hash, email, lead_ids, message_ids)

    def _where(self, link: Link, subject: Subject) -> tuple[sql.Composable, tuple] | None:
        """``FROM <table> t WHERE …`` selecting the subject's rows of ``link``, and its parameters (``None``:
        the subject cannot have any there)."""
        table = catalog.relation(self.conn, link.table)
        column = sql.Identifier(link.column)
        if link.via in ("email", "address"):
            return (sql.SQL("FROM {} t WHERE t.workspace_id = %s "
                            "AND coldcopy_ops.subject_hash(t.workspace_id, t.{}) = %s").format(table, column),
                    (subject.workspace_id, subject.subject_hash))
        if link.via == "payload":
            return (sql.SQL("FROM {} t WHERE t.workspace_id = %s AND EXISTS (SELECT 1 FROM "
                            "jsonb_path_query(t.{}::jsonb, 'strict $.**') v WHERE jsonb_typeof(v) = 'string' "
                            "AND coldcopy_ops.subject_hash(t.workspace_id, v #>> '{{}}') = %s)").format(table, column),
                    (subject.workspace_id, subject.subject_hash))
        if link.via == "parent":
            parent = self._where(link.parent, subject)
            if parent is None:
                return None
            columns = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in link.columns)
            refs = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in link.ref_columns)
            return (sql.SQL("FROM {} t WHERE ({}) IN (SELECT {} ").format(table, columns, refs) + parent[0]
                    + sql.SQL(")"), parent[1])
        values = subject.values(link.via)
        if not values:
            return None
        return sql.SQL("FROM {} t WHERE t.workspace_id = %s AND t.{} = ANY(%s)").format(table, column), (
            subject.workspace_id, values)

    # -- access / portability ---------------------------------------------------------------------------

    def collect(self, subject: Subject) -> dict[str, list[dict]]:
        """Every row about the subject, per table (tables without any left out)."""
        found: dict[str, list[dict]] = {}
        for link in personal_data_map(self.conn):
            where = self._where(link, subject)
            if where is None:
                continue
            rows = [r for (r,) in self.conn.execute(sql.SQL("SELECT to_jsonb(t) ") + where[0], where[1])]
            if rows:
                found.setdefault(link.table, [])
                known = {json.dumps(r, sort_keys=True) for r in found[link.table]}
                found[link.table].extend(r for r in rows if json.dumps(r, sort_keys=True) not in known)
        return found

    def export(self, request: dict, client, bucket: str) -> dict:
        """The subject's data as one JSON document, OpenPGP-encrypted (AES256) with a passphrase of its own,
        uploaded under ``gdpr/exports/``, its 7-day link and passphrase delivered to the data protection officer
        through the ``coldcopy_dpo`` connection (never stored in the database, a log or XCom). The object is
        deleted after :data:`EXPORT_URL_TTL` (:meth:`delete_expired_exports`) and when the subject is erased.
        Returns where and how much (no secret)."""
        subject = self.find(request["workspace_id"], email=request["email"])
        tables = self.collect(subject)
        document = {"request_id": str(request["id"]), "workspace_id": str(request["workspace_id"]),
                    "email": request["email"], "generated_at": datetime.now().astimezone().isoformat(),
                    "request_type": request["request_type"], "tables": tables}
        passphrase = secrets.token_urlsafe(24)
        body = gpg_symmetric(json.dumps(document, default=str, indent=1).encode(), passphrase)
        key = f"{EXPORT_PREFIX}/{request['workspace_id']}/{request['id']}.json.gpg"
        rows = sum(len(r) for t, r in tables.items() if t != "public.data_subject_requests")  # not the request itself
        if not rows:
            return {"key": None, "rows": 0, "tables": []}
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/pgp-encrypted")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                            ExpiresIn=int(EXPORT_URL_TTL.total_seconds()))
        try:
            alerts.deliver(self.dpo_conn_id, f"GDPR {request['request_type']} export of request {request['id']} is "
                           f"ready: {rows} rows from {len(tables)} tables; send the link and, by another channel, "
                           f"the passphrase to the data subject. The link expires in {EXPORT_URL_TTL.days} days.",
                           {"request_id": str(request["id"]), "workspace_id": str(request["workspace_id"]),
                            "url": url, "passphrase": passphrase, "expires_in_days": EXPORT_URL_TTL.days})
        except Exception:
            client.delete_object(Bucket=bucket, Key=key)  # undelivered: nobody can use it, nobody should keep it
            raise
        return {"key": key, "rows": rows, "tables": sorted(tables)}

    def delete_expired_exports(self, client, bucket: str, now: datetime | None = None) -> list[str]:
        """Delete every export older than :data:`EXPORT_URL_TTL` (its link has expired); returns the keys."""
        now = now or datetime.now(UTC)
        doomed = [o["Key"] for o in list_objects(client, bucket, f"{EXPORT_PREFIX}/")
                  if now - o["LastModified"] > EXPORT_URL_TTL]
        for key in doomed:
            client.delete_object(Bucket=bucket, Key=key)
            log.info("deleted expired GDPR export %s", key)
        return doomed

    def delete_subject_exports(self, subject: Subject, client, bucket: str) -> list[str]:
        """Delete the exports made for ``subject``'s requests (at erasure: nothing of them may stay)."""
        requests = [str(r) for (r,) in self.conn.execute(
            "SELECT id FROM public.data_subject_requests WHERE workspace_id = %s AND (email = %s "
            "OR coldcopy_ops.subject_hash(workspace_id, email) = %s)",
            (subject.workspace_id, f"{ERASED}{subject.subject_hash}", subject.subject_hash))]
        keys = [f"{EXPORT_PREFIX}/{subject.workspace_id}/{r}.json.gpg" for r in requests]
        for key in keys:
            client.delete_object(Bucket=bucket, Key=key)  # S3: deleting a missing key succeeds
        return keys

    # -- erasure ----------------------------------------------------------------------------------------

    def erase(self, subject: Subject, request_id: str, *, client=None, bucket: str | None = None) -> dict[str, int]:
        """Erase everything about ``subject`` (see the module doc); returns rows touched per table.

        The ledger entry (one-way keys of the subject and of its lead and message ids) is written first, in
        its own transaction, and published to the bucket when ``client`` is given; only then does the first
        delete run. A session advisory lock per subject keeps a zombie task's erasure of the same person out.
        """
        counts: dict[str, int] = {}
        erased_ids: list[str] = []
        id_hashes = [h for (h,) in self.conn.execute(
            "SELECT coldcopy_ops.id_hash(x) FROM unnest(%s::uuid[]) x", (subject.lead_ids + subject.message_ids,))]
        with self._subject_lock(subject):
            self.record_intent(request_id, subject, id_hashes)
            if client is not None:
                self.publish_ledger(request_id, client, bucket)
                self.delete_subject_exports(subject, client, bucket)
            self._erase_rows(subject, request_id, counts, erased_ids)
        self.ensure_refuse_trigger()
        return {t: n for t, n in counts.items() if n}

    @contextmanager
    def _subject_lock(self, subject: Subject) -> Iterator[None]:
        key = f"coldcopy erasure:{subject.workspace_id}:{subject.subject_hash}"
        if not self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            raise GdprError("another session is erasing this subject right now (a zombie task?); retried later")
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def record_intent(self, request_id: str, subject: Subject, id_hashes: list[str]) -> None:
        """The ledger entry of an erasure about to start: next in the chain (sequence number, previous entry's
        hash), committed before any row is deleted. A retried erasure keeps its entry, adding ids found since."""

        def write() -> None:
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('coldcopy erasure ledger', 0))")
            row = self.conn.execute("SELECT seq, id_hashes FROM coldcopy_ops.erasure_ledger WHERE request_id = %s",
                                    (request_id,)).fetchone()
            if row is not None and row[0] is not None and set(id_hashes) <= set(row[1]):
                return
            if row is not None and row[0] is not None:  # more ids since: a new entry carries the union
                id_hashes[:] = sorted(set(row[1]) | set(id_hashes))
            seq, prev = self.conn.execute(
                "SELECT coalesce(max(seq), 0) + 1, (SELECT entry_hash FROM coldcopy_ops.erasure_ledger "
                "WHERE seq = (SELECT max(seq) FROM coldcopy_ops.erasure_ledger)) FROM coldcopy_ops.erasure_ledger"
            ).fetchone()
            erased_at = self.conn.execute("SELECT now()").fetchone()[0]
            entry = ledger_entry(seq, prev, request_id, subject.workspace_id, subject.subject_hash, id_hashes,
                                 erased_at)
            self.conn.execute(
                "INSERT INTO coldcopy_ops.erasure_ledger (request_id, workspace_id, subject_hash, id_hashes, "
                "erased_at, seq, prev_hash, entry_hash, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'intent') "
                "ON CONFLICT (request_id) DO UPDATE SET id_hashes = EXCLUDED.id_hashes, erased_at = "
                "EXCLUDED.erased_at, seq = EXCLUDED.seq, prev_hash = EXCLUDED.prev_hash, "
                "entry_hash = EXCLUDED.entry_hash, state = 'intent', published_key = NULL",
                (request_id, subject.workspace_id, subject.subject_hash, id_hashes, erased_at, seq, prev,
                 entry_hash(entry)))

        under_lock_timeout(self.conn, write, self.lock_retry, what=f"ledger entry of request {request_id}")

    def _erase_rows(self, subject: Subject, request_id: str, counts: dict, erased_ids: list) -> None:
        months = set(detached_months(self.conn))
        for link in personal_data_map(self.conn):
            if link.table in ("public.suppression_list", "public.data_subject_requests"):
                continue  # keep the request and the suppression, by one-way key (below)
            where = self._where(link, subject)
            if where is None:
                continue
            touched, ids = self._in_batches(link, *where)
            if touched and link.table in months:  # a detached month: its archive bookkeeping follows
                self.conn.execute(
                    "UPDATE coldcopy_ops.partition_archive SET row_count = row_count - %s, "
                    "erased_rows = coalesce(erased_rows, 0) + %s, updated_at = now() WHERE partition_name = %s",
                    (touched, touched, link.table.removeprefix("public.")))
            if touched:
                name = f"{link.table}.{link.column}" if link.on_erase == "nullify" else link.table
                counts[name] = counts.get(name, 0) + touched
                if link.on_erase == "delete":  # nulled rows belong to someone else: their audit trail stays
                    erased_ids += ids
        key = f"{ERASED}{subject.subject_hash}"

        def finish() -> None:
            done = self.conn.execute(
                "DELETE FROM public.suppression_list WHERE workspace_id = %s "
                "AND coldcopy_ops.subject_hash(workspace_id, email) = %s", (subject.workspace_id, subject.subject_hash))
            self.conn.execute(
                "INSERT INTO public.suppression_list (workspace_id, email, reason) VALUES (%s, %s, 'gdpr_erasure') "
                "ON CONFLICT (workspace_id, email) DO UPDATE SET reason = 'gdpr_erasure'", (subject.workspace_id, key))
            requests = self.conn.execute(
                "UPDATE public.data_subject_requests SET email = %s WHERE workspace_id = %s "
                "AND coldcopy_ops.subject_hash(workspace_id, email) = %s", (key, subject.workspace_id,
                                                                           subject.subject_hash))
            audit = self.conn.execute(
                "UPDATE public.gdpr_audit_log SET row_id = 'erased' WHERE workspace_id = %s AND row_id = ANY(%s)",
                (subject.workspace_id, erased_ids))  # the deleted leads' and messages' ids among them
            counts.update({"public.suppression_list": done.rowcount, "public.data_subject_requests": requests.rowcount,
                           "public.gdpr_audit_log.row_id": audit.rowcount})
            self.conn.execute(
                "INSERT INTO public.gdpr_audit_log (workspace_id, table_name, row_id, action, changed_columns) "
                "VALUES (%s, 'public.data_subject_requests', %s, 'DELETE', %s)",
                (subject.workspace_id, str(request_id), [f"{t}={n}" for t, n in sorted(counts.items()) if n]))
            self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET row_counts = %s, state = 'done' "
                              "WHERE request_id = %s", (psycopg.types.json.Jsonb(counts), request_id))

        under_lock_timeout(self.conn, finish, self.lock_retry, what=f"erasure record of request {request_id}")

    def _in_batches(self, link: Link, where: sql.Composable, params: tuple) -> tuple[int, list[str]]:
        """Delete (or nullify) the matching rows ``self.batch`` at a time, each batch its own transaction."""
        table = catalog.relation(self.conn, link.table)
        has_id = self.conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass "
                                   "AND attname = 'id' AND NOT attisdropped", (link.table,)).fetchone()[0]
        returning = sql.SQL(" RETURNING id::text") if has_id else sql.SQL(" RETURNING NULL")
        pick = sql.SQL("SELECT t.tableoid, t.ctid ") + where + sql.SQL(" LIMIT %s")
        if link.on_erase == "nullify":
            change = sql.SQL("UPDATE {} SET {} = NULL WHERE (tableoid, ctid) IN (").format(
                table, sql.Identifier(link.column)) + pick + sql.SQL(")") + returning
        else:
            change = (sql.SQL("DELETE FROM {} WHERE (tableoid, ctid) IN (").format(table) + pick + sql.SQL(")")
                      + returning)
        total, ids = 0, []
        while True:
            rows = under_lock_timeout(self.conn, lambda: self.conn.execute(change, (*params, self.batch)).fetchall(),
                                      self.lock_retry, what=f"erasure batch in {link.table}")
            total += len(rows)
            ids += [r for (r,) in rows if r]
            if len(rows) < self.batch:
                return total, ids

    def ensure_refuse_trigger(self) -> None:
        """Put the trigger that refuses erased addresses on ``leads``, once (CREATE TRIGGER locks the table)."""
        exists = "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.leads'::regclass AND tgname = %s)"
        if self.conn.execute(exists, (REFUSE_TRIGGER,)).fetchone()[0]:
            return

        def create() -> None:
            self.conn.execute("LOCK TABLE public.leads IN SHARE ROW EXCLUSIVE MODE")
            if not self.conn.execute(exists, (REFUSE_TRIGGER,)).fetchone()[0]:
                self.conn.execute(sql.SQL(
                    "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OF email, workspace_id ON public.leads "
                    "FOR EACH ROW EXECUTE FUNCTION coldcopy_ops.refuse_erased_subject()").format(
                    sql.Identifier(REFUSE_TRIGGER)))

        under_lock_timeout(self.conn, create, self.lock_retry, what="the erased-address guard on leads")

    def views_reading(self, tables: list[str]) -> list[str]:
        """Materialized views that read any of ``tables`` (directly), to refresh after an erasure."""
        relids = [self.conn.execute("SELECT to_regclass(%s)::oid", (t,)).fetchone()[0] for t in tables]
        return [v for (v,) in self.conn.execute("""
            SELECT DISTINCT format('%%I.%%I', n.nspname, c.relname) FROM pg_rewrite r
            JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
            WHERE c.relkind = 'm' AND d.refobjid = ANY(%s) ORDER BY 1""", ([r for r in relids if r],))]

    # -- requests ---------------------------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[str]:
        """Requests to process: ``verified`` (or ``in_progress`` left by a failed try), of a handled type."""
        return [str(r) for (r,) in self.conn.execute(
            "SELECT id FROM public.data_subject_requests WHERE status IN ('verified', 'in_progress') "
            "AND request_type = ANY(%s) ORDER BY due_at LIMIT %s", (list(HANDLED_TYPES), limit))]

    def handle(self, request_id: str, client, bucket: str, run_id: str | None = None) -> dict:
        """Carry out one request; it ends ``completed`` with a note, or stays ``in_progress`` (raise)."""
        with self._claim(request_id) as request:
            return self._handle(request, client, bucket, run_id)

    @contextmanager
    def _claim(self, request_id: str) -> Iterator[tuple]:
        """The request, claimed: its row locked (``FOR UPDATE SKIP LOCKED``) while it is marked in progress, and
        a session advisory lock held until it is handled, so a zombie task and its retry never both run it."""
        key = f"coldcopy gdpr request:{request_id}"
        if not self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            raise GdprError(f"request {request_id}: another session is handling it right now (a zombie task?)")
        try:
            with self.conn.transaction():
                request = self.conn.execute(
                    "UPDATE public.data_subject_requests r SET status = 'in_progress' FROM (SELECT id FROM "
                    "public.data_subject_requests WHERE id = %s AND status IN ('verified', 'in_progress') "
                    "FOR UPDATE SKIP LOCKED) c WHERE r.id = c.id RETURNING r.id, r.workspace_id, r.email, "
                    "r.request_type", (request_id,)).fetchone()
            if request is None:
                status = self.conn.execute("SELECT status FROM public.data_subject_requests WHERE id = %s",
                                           (request_id,)).fetchone()
                raise GdprError(f"request {request_id}: " + (
                    f"status {status[0]!r}, only verified requests are processed" if status else "no such request"))
            yield request
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def _handle(self, request: tuple, client, bucket: str, run_id: str | None) -> dict:
        request_id = str(request[0])
        request = dict(zip(("id", "workspace_id", "email", "request_type"), request, strict=True))
        kind = HANDLED_TYPES.get(request["request_type"])
        if kind is None:
            raise GdprError(f"request {request_id}: request_type {request['request_type']!r} is not handled by a job "
                            f"(handled: {', '.join(HANDLED_TYPES)}); a person must act on it")
        if kind == "export":
            if request["email"].startswith(ERASED):
                raise GdprError(f"request {request_id}: the address was erased; nothing can be exported")
            result = self.export(request, client, bucket)
            note = (f"export of {result['rows']} rows from {len(result['tables'])} tables ready; link and passphrase "
                    f"delivered to the data protection officer (valid {EXPORT_URL_TTL.days} days)"
                    if result["rows"] else "nothing found: no data about this address in the workspace")
        else:
            email = request["email"]
            subject = (self.find(request["workspace_id"], subject_hash=email.removeprefix(ERASED))
                       if email.startswith(ERASED) else self.find(request["workspace_id"], email=email))
            counts = self.erase(subject, request_id, client=client, bucket=bucket)
            views = self.views_reading(sorted({t.rsplit(".", 1)[0] if t.count(".") > 1 else t for t in counts}))
            self.refresh(views, run_id or f"gdpr:{request_id}")
            data_rows = sum(n for t, n in counts.items()
                            if t not in ("public.suppression_list", "public.data_subject_requests"))
            result = {"rows": counts, "views_refreshed": views}
            note = (f"erased {data_rows} rows in {len(counts)} tables; address suppressed; views refreshed: "
                    f"{', '.join(views) or 'none'}" if data_rows else
                    "nothing found: no data about this address in the workspace; address suppressed")
        self.conn.execute("UPDATE public.data_subject_requests SET status = 'completed', completed_at = now(), "
                          "notes = %s WHERE id = %s", (note, request_id))
        return {"request_id": request_id, "type": request["request_type"], "note": note, **result}

    def refresh(self, views: list[str], run_id: str) -> None:
        from coldcopy.refresh import MaterializedViewRefresher, RefreshRun

        for view in views:
            MaterializedViewRefresher(self.conn, view, lock_retry=self.lock_retry, force=True).run(
                RefreshRun(run_id=run_id, dag_id="gdpr_requests"))

    def record_failure(self, request_id: str, reason: str) -> None:
        self.conn.execute("UPDATE public.data_subject_requests SET notes = %s WHERE id = %s AND status = 'in_progress'",
                          (f"failed, will be retried: {reason}"[:2000], request_id))

    def due_soon(self, within: timedelta = timedelta(days=3)) -> list[dict]:
        """Open requests due within ``within`` not yet warned about today (recorded as warned)."""
        rows = self.conn.execute("""
            WITH due AS (
              SELECT id, workspace_id, request_type, status, due_at FROM public.data_subject_requests
              WHERE status NOT IN ('completed', 'rejected') AND due_at < now() + %s),
            fresh AS (
              INSERT INTO coldcopy_ops.gdpr_deadline_alerts (request_id, alerted_on)
              SELECT id, current_date FROM due ON CONFLICT DO NOTHING RETURNING request_id)
            SELECT due.* FROM due JOIN fresh ON fresh.request_id = due.id ORDER BY due.due_at""", (within,)).fetchall()
        return [dict(zip(("id", "workspace_id", "request_type", "status", "due_at"), r, strict=True)) for r in rows]

    # -- the ledger -------------------------------------------------------------------------------------

    def publish_ledger(self, request_id: str, client, bucket: str) -> str:
        """Mirror one ledger entry, signed, to ``gdpr/erasures/<seq>.json`` in the bucket; returns its key."""
        row = self.conn.execute(
            "SELECT seq, prev_hash, request_id::text, workspace_id::text, subject_hash, id_hashes, erased_at "
            "FROM coldcopy_ops.erasure_ledger WHERE request_id = %s", (request_id,)).fetchone()
        entry = ledger_entry(*row)
        key = f"{LEDGER_PREFIX}/{row[0]:012d}.json"
        client.put_object(Bucket=bucket, Key=key, Body=manifests.dump(entry, self.keyring, type="ledger"),
                          ContentType="application/json")
        self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET published_key = %s WHERE request_id = %s",
                          (key, request_id))
        return key

    def ledger_from_bucket(self, client, bucket: str, since: datetime | None = None) -> Ledger:
        """The bucket's ledger: every valid entry erased at or after ``since``, and what is wrong with the rest.

        A junk or forged object, a gap in the sequence, or an entry whose ``prev_hash`` is not its
        predecessor's hash is reported in :attr:`Ledger.problems` (the caller alerts), never fatal: every
        valid entry is still applied — a restore must not keep erased people because one object is bad.
        """
        ledger = Ledger()
        for key in list_keys(client, bucket, f"{LEDGER_PREFIX}/"):
            try:
                raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                entry = manifests.load(raw, self.keyring, where=f"s3://{bucket}/{key}", type="ledger")
                if key != f"{LEDGER_PREFIX}/{entry['seq']:012d}.json":
                    raise manifests.ManifestRejected(f"s3://{bucket}/{key}: entry {entry['seq']} stored under "
                                                     "another number")
            except (manifests.ManifestRejected, KeyError, TypeError, ValueError) as error:
                ledger.problems.append(str(error))
                continue
            ledger.entries.append(entry)
        ledger.entries.sort(key=lambda e: e["seq"])
        previous = None
        for entry in ledger.entries:
            expected = 1 if previous is None else previous["seq"] + 1
            if entry["seq"] != expected:
                ledger.problems.append(f"ledger entries {expected}..{entry['seq'] - 1} are missing from the bucket")
            elif previous is not None and entry["prev_hash"] != entry_hash(previous):
                ledger.problems.append(f"ledger entry {entry['seq']} does not follow entry {previous['seq']} "
                                       "(its prev_hash differs: reordered or replaced)")
            previous = entry
        if since is not None:
            ledger.entries = [e for e in ledger.entries if datetime.fromisoformat(e["erased_at"]) >= since]
        return ledger

    def check_ledger(self, client, bucket: str) -> list[str]:
        """Cross-check the database's ledger with the bucket's: an entry the bucket lacks is published again
        (the database's copy is the original), and every disagreement is returned for an alert."""
        for request_id, workspace_id, subject_hash, id_hashes in self.conn.execute(
                "SELECT request_id::text, workspace_id::text, subject_hash, id_hashes FROM coldcopy_ops.erasure_ledger "
                "WHERE seq IS NULL ORDER BY erased_at").fetchall():  # made before the chain: appended to it
            self.record_intent(request_id, Subject(workspace_id, subject_hash), list(id_hashes))
            self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET state = 'done' WHERE request_id = %s",
                              (request_id,))
        bucket_ledger = self.ledger_from_bucket(client, bucket)
        problems = list(bucket_ledger.problems)
        in_bucket = {e["seq"]: entry_hash(e) for e in bucket_ledger.entries}
        for seq, request_id, hashed in self.conn.execute(
                "SELECT seq, request_id::text, entry_hash FROM coldcopy_ops.erasure_ledger WHERE seq IS NOT NULL "
                "ORDER BY seq").fetchall():
            if seq not in in_bucket:
                self.publish_ledger(request_id, client, bucket)
                problems.append(f"ledger entry {seq} was missing from the bucket; published again")
            elif in_bucket[seq] != hashed:
                problems.append(f"ledger entry {seq} in the bucket differs from the database's")
        return problems

    def reapply(self, entries: list[dict]) -> dict[str, dict]:
        """Re-apply ledger entries to this database (a restored backup); returns rows touched per request."""
        done = {}
        for entry in entries:
            if not self.conn.execute("SELECT EXISTS (SELECT 1 FROM public.workspaces WHERE id = %s)",
                                     (entry["workspace_id"],)).fetchone()[0]:
                continue
            subject = self.find(entry["workspace_id"], subject_hash=entry["subject_hash"],
                                id_hashes=entry["id_hashes"])
            # The bucket's entry is the record: it replaces whatever the restored database had for the request.
            self.conn.execute("DELETE FROM coldcopy_ops.erasure_ledger WHERE request_id = %s OR seq = %s",
                              (entry["request_id"], entry["seq"]))
            self.conn.execute(
                "INSERT INTO coldcopy_ops.erasure_ledger (request_id, workspace_id, subject_hash, id_hashes, "
                "erased_at, seq, prev_hash, entry_hash, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'intent')",
                (entry["request_id"], entry["workspace_id"], entry["subject_hash"], entry["id_hashes"],
                 entry["erased_at"], entry["seq"], entry["prev_hash"], entry_hash(entry)))
            with self._subject_lock(subject):
                self._erase_rows(subject, entry["request_id"], counts := {}, [])
            done[entry["request_id"]] = {t: n for t, n in counts.items() if n}
        if done:
            self.ensure_refuse_trigger()
        return done

    # -- retention --------------------------------------------------------------------------------------

    def policy(self, policy_id: str) -> dict:
        row = self.conn.execute(
            "SELECT id, workspace_id, table_name, retain_for, action, clock_timestamp() "
            "FROM public.data_retention_policies WHERE id = %s", (policy_id,)).fetchone()
        if row is None:
            raise GdprError(f"no retention policy {policy_id}")
        return dict(zip(("id", "workspace_id", "table_name", "retain_for", "action", "started_at"), row, strict=True))

    def log_retention(self, policy: dict, outcome: str, *, rows: int = 0, batches: int = 0,
                      detail: str | None = None) -> None:
        """Record what a policy did (and stamp it applied when it ran)."""
        self.conn.execute(
            "INSERT INTO coldcopy_ops.retention_log (policy_id, workspace_id, table_name, action, outcome, rows, "
            "batches, detail, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (policy["id"], policy["workspace_id"], policy["table_name"], policy["action"], outcome, rows, batches,
             detail, policy["started_at"]))
        if outcome == "done":
            self.conn.execute("UPDATE public.data_retention_policies SET last_applied_at = now() WHERE id = %s",
                              (policy["id"],))

    def retention_target(self, policy: dict) -> tuple[sql.Identifier, str]:
        """The policy's table (checked in the catalog: a public tenant table) and the column rows age by."""
        try:
            schema, name = catalog.relation_parts(self.conn, policy["table_name"]
                                                  if "." in policy["table_name"] else f"public.{policy['table_name']}",
                                                  kinds=("r", "p"))
        except catalog.UnknownRelation as error:
            raise GdprError(f"policy {policy['id']}: {error}") from error
        columns = {c for (c,) in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (f'"{schema}"."{name}"',))}
        if f"{schema}.{name}" not in RETENTION_TABLES:
            raise GdprError(f"policy {policy['id']}: {schema}.{name} is not a table retention may touch "
                            f"(allowed: {', '.join(sorted(RETENTION_TABLES))})")
        if schema != "public" or "workspace_id" not in columns:
            raise GdprError(f"policy {policy['id']}: {schema}.{name} is not a tenant table (no workspace_id)")
        age = next((c for c in AGE_COLUMNS if c in columns), None)
        if age is None:
            raise GdprError(f"policy {policy['id']}: {schema}.{name} has none of {', '.join(AGE_COLUMNS)} to age by")
        return sql.Identifier(schema, name), age

    def apply_retention(self, policy: dict, client=None, bucket: str | None = None) -> dict:
        """Delete, anonymize or archive (then delete) the policy's expired rows of its workspace, in batches."""
        table, age = self.retention_target(policy)
        expired = sql.SQL("SELECT t.tableoid, t.ctid FROM {} t WHERE t.workspace_id = %s AND t.{} < now() - %s "
                          "LIMIT %s").format(table, sql.Identifier(age))
        params = (policy["workspace_id"], policy["retain_for"], self.batch)
        action = policy["action"]
        if action == "anonymize":
            assignments = self._anonymizing(table)
            if assignments is None:
                raise GdprError(f"policy {policy['id']}: {table.as_string(self.conn)} has no personal column to "
                                "anonymize")
            expired = sql.SQL("SELECT t.tableoid, t.ctid FROM {} t WHERE t.workspace_id = %s AND t.{} < now() - %s "
                              "AND NOT ({}) LIMIT %s").format(table, sql.Identifier(age), assignments[1])
        rows = batches = 0
        while True:
            if action == "delete":
                statement = sql.SQL("DELETE FROM {} WHERE (tableoid, ctid) IN (").format(table) + expired + sql.SQL(")")
                count = under_lock_timeout(self.conn, lambda s=statement: self.conn.execute(s, params).rowcount,
                                           self.lock_retry, what=f"retention batch in {table.as_string(self.conn)}")
            elif action == "anonymize":
                statement = (sql.SQL("UPDATE {} SET ").format(table) + assignments[0]
                             + sql.SQL(" WHERE (tableoid, ctid) IN (") + expired + sql.SQL(")"))
                count = under_lock_timeout(self.conn, lambda s=statement: self.conn.execute(s, params).rowcount,
                                           self.lock_retry, what=f"retention batch in {table.as_string(self.conn)}")
            elif action == "archive":
                count = under_lock_timeout(
                    self.conn, lambda n=batches: self._archive_batch(table, expired, params, policy, n, client, bucket),
                    self.lock_retry, what=f"retention archive batch in {table.as_string(self.conn)}")
            else:
                raise GdprError(f"policy {policy['id']}: unknown action {action!r}")
            rows += count
            batches += 1 if count else 0
            if count < self.batch:
                return {"rows": rows, "batches": batches}

    def _anonymizing(self, table: sql.Identifier) -> tuple[sql.Composable, sql.Composable] | None:
        """``SET`` list blanking the table's personal columns (nullable → NULL, a NOT NULL address → its key)
        and the condition that a row is already anonymized."""
        columns = self.conn.execute(
            "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped AND attname = ANY(%s) ORDER BY attnum",
            (table.as_string(self.conn), list(PERSONAL_COLUMNS))).fetchall()
        sets, done = [], []
        for name, not_null in columns:
            column = sql.Identifier(name)
            if name == "email" and not_null:
                sets.append(sql.SQL("{} = 'hmac:' || coldcopy_ops.subject_hash(workspace_id, {})").format(column,
                                                                                                        column))
                done.append(sql.SQL("{} LIKE 'hmac:%%'").format(column))
            elif not not_null:
                sets.append(sql.SQL("{} = NULL").format(column))
                done.append(sql.SQL("{} IS NULL").format(column))
        if not sets:
            return None
        return sql.SQL(", ").join(sets), sql.SQL(" AND ").join(done)

    def _archive_batch(self, table, expired, params, policy, number: int, client, bucket) -> int:
        """One transaction: lock the batch, upload it (JSON lines, gzip, OpenPGP AES256 like the backups:
        ``gpg --decrypt | gunzip`` opens it) with its signed manifest, read the object back and check it
        against the manifest, delete the rows. Any failure rolls the delete back: a row is gone only once its
        copy is in the bucket."""
        if not self.passphrase:
            raise GdprError(f"policy {policy['id']}: archiving needs the backup passphrase (coldcopy_backup_key)")
        with self.conn.transaction():
            rows = self.conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE (tableoid, ctid) IN (").format(table)
                                     + expired + sql.SQL(") FOR UPDATE"), params).fetchall()
            if not rows:
                return 0
            body = gpg_symmetric(gzip.compress("".join(json.dumps(r, default=str) + "\n" for (r,) in rows).encode()),
                                 self.passphrase, "--compress-algo", "none")
            stamp = self.conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS')").fetchone()[0]
            key = (f"{RETENTION_PREFIX}/{table.as_string(self.conn).replace(chr(34), '')}/{policy['workspace_id']}/"
                   f"{stamp}-{number:05d}.jsonl.gz.gpg")
            manifest = {"object_key": key, "byte_size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                        "rows": len(rows), "table": table.as_string(self.conn), "policy_id": str(policy["id"]),
                        "workspace_id": str(policy["workspace_id"]), "format": "json lines | gzip | OpenPGP AES256"}
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/pgp-encrypted")
            client.put_object(Bucket=bucket, Key=key.removesuffix(".jsonl.gz.gpg") + ".manifest.json",
                              Body=manifests.dump(manifest, self.keyring, type="retention_archive"))
            stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            check_binding(manifest, key, len(stored), hashlib.sha256(stored).hexdigest(), where=f"s3://{bucket}/{key}")
            return self.conn.execute(sql.SQL("DELETE FROM {} WHERE (tableoid, ctid) IN (").format(table)
                                     + expired + sql.SQL(")"), params).rowcount


@dataclass
class Ledger:
    """The bucket's erasure ledger: valid entries in sequence order, and what was wrong with the rest."""

    entries: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def ledger_entry(seq: int, prev_hash: str | None, request_id, workspace_id, subject_hash: str, id_hashes: list[str],
                 erased_at: datetime) -> dict:
    """One link of the erasure ledger's chain (only one-way keys: no personal data)."""
    return {"seq": seq, "prev_hash": prev_hash, "request_id": str(request_id), "workspace_id": str(workspace_id),
            "subject_hash": subject_hash, "id_hashes": sorted(id_hashes), "erased_at": erased_at.isoformat()}


def entry_hash(entry: dict) -> str:
    """The hash the next entry carries: of the entry's fields (not its signature or type)."""
    fields = {k: entry[k] for k in ("seq", "prev_hash", "request_id", "workspace_id", "subject_hash", "id_hashes",
                                    "erased_at")}
    fields["id_hashes"] = sorted(fields["id_hashes"])
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def list_objects(client, bucket: str, prefix: str) -> list[dict]:
    """Every object under ``prefix`` (all pages)."""
    paginator = client.get_paginator("list_objects_v2")
    return [o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


def list_keys(client, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in list_objects(client, bucket, prefix)]


def reapply_after_restore(dsn: str, client, bucket: str, keyring: manifests.Keyring,
                          since: datetime | None, pepper: str) -> tuple[dict, list[str]]:
    """Re-apply every valid erasure of the bucket's ledger erased at or after ``since`` to the restored database
    at ``dsn``, before anyone is handed it; returns rows touched per request and the ledger's problems (to alert
    on: a junk, missing or reordered entry never stops the valid ones from being applied)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        gdpr = Gdpr(conn, keyring=keyring, pepper=pepper)
        ledger = gdpr.ledger_from_bucket(client, bucket, since)
        done = gdpr.reapply(ledger.entries)
    for problem in ledger.problems:
        log.error("erasure ledger: %s", problem)
    log.info("re-applied %d erasure(s) newer than %s to the restored database", len(done), since)
    return done, ledger.problems


def subject_pepper(conn_id: str = PEPPER_CONN_ID) -> str:
    """The pepper of subject keys: the password of connection ``conn_id``."""
    from airflow.sdk import BaseHook

    password = BaseHook.get_connection(conn_id).password
    if not password or len(password) < 32:
        raise GdprError(f"connection {conn_id}: its password is the subject pepper, at least 32 characters "
                        "(openssl rand -hex 32)")
    return password


def drop_erased_rows(conn: psycopg.Connection, table: str) -> int:
    """Delete from ``table`` (an email_events month being restored, not yet attached) the rows of leads and
    messages erased since (the ledger's one-way keys of their ids); returns how many."""
    return conn.execute(sql.SQL(
        "WITH l AS (SELECT coalesce(array_agg(h), '{{}}') AS h FROM coldcopy_ops.erasure_ledger, unnest(id_hashes) h) "
        "DELETE FROM {} t USING l "
        "WHERE coldcopy_ops.id_hash(t.lead_id) = ANY(l.h) OR coldcopy_ops.id_hash(t.message_id) = ANY(l.h)"
    ).format(catalog.relation(conn, table))).rowcount
