"""The pepper of subject keys and the subject lookups (:mod:`coldcopy.gdpr`)."""

from __future__ import annotations

import hashlib
import logging

import psycopg
from psycopg import sql

from coldcopy import safe_names
from coldcopy.gdpr.discovery import Link
from coldcopy.gdpr.subjects import ERASED, LEGACY_ERASED, PEPPER_CONN_ID, GdprError, Subject
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

log = logging.getLogger(__name__)


class SubjectKeys:
    """The pepper of subject keys and the subject lookups (:mod:`coldcopy.gdpr`)."""

    def __init__(self, conn: psycopg.Connection, lock_retry: LockRetryPolicy) -> None:
        self.conn, self.lock_retry = conn, lock_retry

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
                    safe_names.relation(self.conn, table), *[sql.Identifier(column)] * 3),
                    (ERASED, len(LEGACY_ERASED) + 1, LEGACY_ERASED + "%"))
            self.conn.execute("UPDATE coldcopy_ops.erasure_ledger SET subject_hash = coldcopy_ops.keyed(subject_hash) "
                              "WHERE seq IS NULL")

        under_lock_timeout(self.conn, create, self.lock_retry, what="the subject key")

    def subject_hash(self, workspace_id: str, email: str) -> str:
        return self.conn.execute("SELECT coldcopy_ops.subject_hash(%s, %s)", (workspace_id, email)).fetchone()[0]

    def find(self, workspace_id: str, *, email: str | None = None, subject_hash: str | None = None,
             id_hashes: list[str] = (), schema: str = "public") -> Subject:
        """The subject's lead and message ids in the workspace, by address or by the ledger's one-way keys, in
        ``schema``: ``public``, or a support copy's (:mod:`coldcopy.support_copies`), which holds only the
        tables that had rows."""
        subject_hash = subject_hash or self.subject_hash(workspace_id, email)

        def ids(table: str, where: str, params: tuple) -> list:
            if not safe_names.exists(self.conn, f"{schema}.{table}"):
                return []
            query = sql.SQL("SELECT id FROM {} WHERE workspace_id = %s AND ({})").format(
                safe_names.relation(self.conn, f"{schema}.{table}"), sql.SQL(where))
            return [r for (r,) in self.conn.execute(query, (workspace_id, *params))]

        lead_ids = ids("leads", "coldcopy_ops.subject_hash(workspace_id, email) = %s OR coldcopy_ops.id_hash(id) = "
                       "ANY(%s)", (subject_hash, list(id_hashes)))
        message_ids = ids("email_messages", "lead_id = ANY(%s) OR coldcopy_ops.id_hash(id) = ANY(%s)",
                          (lead_ids, list(id_hashes)))
        return Subject(workspace_id, subject_hash, email, lead_ids, message_ids)

    def where(self, link: Link, subject: Subject) -> tuple[sql.Composable, tuple] | None:
        """``FROM <table> t WHERE …`` selecting the subject's rows of ``link``, and its parameters (``None``:
        the subject cannot have any there)."""
        table = safe_names.relation(self.conn, link.table)
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
            parent = self.where(link.parent, subject)
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
