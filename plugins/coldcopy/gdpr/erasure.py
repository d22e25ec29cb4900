"""Erasure: every copy inside the database (the support copies too), children first, in batches under
lock_timeout."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from coldcopy import job_locks, safe_names, support_copies
from coldcopy.gdpr.access import Access
from coldcopy.gdpr.dashboards import DashboardRefresh
from coldcopy.gdpr.discovery import Link, detached_months, personal_data_map
from coldcopy.gdpr.keys import SubjectKeys
from coldcopy.gdpr.ledger import LedgerBook, entry_hash
from coldcopy.gdpr.subjects import ERASED, REFUSE_TRIGGER, GdprError, Subject
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import Bucket
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Erasure:
    """Erasure: every copy inside the database, children first, in batches under lock_timeout. Writes the ledger
    entry first (``ledger``), deletes the subject's exports (``access``), and re-applies the bucket's ledger to a
    restored database; the ledger never calls back."""

    def __init__(self, conn: psycopg.Connection, *, keys: SubjectKeys, ledger: LedgerBook, access: Access,
                 dashboards: DashboardRefresh, lock_retry: LockRetryPolicy, batch: int) -> None:
        self.conn, self.keys, self.ledger, self.access, self.dashboards = conn, keys, ledger, access, dashboards
        self.lock_retry, self.batch = lock_retry, batch
        self.resumed = False  # the last erase() finished an earlier, cut-short try (its tables are not known)

    def erase(self, subject: Subject, request_id: str, *, bucket: Bucket | None = None) -> dict[str, int]:
        """Erase everything about ``subject`` (see the module doc); returns rows touched per table.

        The ledger entry (one-way keys of the subject and of its lead and message ids) is written first, in
        its own transaction, and published to the bucket when ``bucket`` is given; only then does the first
        delete run. A job lock per subject (:mod:`coldcopy.job_locks`) keeps a zombie task's erasure of the same
        person out.
        """
        counts: dict[str, int] = {}
        erased_ids: list[str] = []
        id_hashes = [h for (h,) in self.conn.execute(
            "SELECT coldcopy_ops.id_hash(x) FROM unnest(%s::uuid[]) x", (subject.lead_ids + subject.message_ids,))]
        with self._subject_lock(subject):
            # An entry already there: an earlier try of this request was cut short (killed, the server restarted)
            # after the ledger said so, perhaps after rows were deleted: which tables it reached, nothing recorded.
            self.resumed = self.conn.execute("SELECT EXISTS (SELECT FROM coldcopy_ops.erasure_ledger WHERE "
                                             "request_id = %s)", (request_id,)).fetchone()[0]
            self.ledger.record_intent(request_id, subject, id_hashes)
            step("gdpr.intent_recorded")  # the ledger says it will be erased; nothing erased yet
            if bucket is not None:
                self.ledger.publish_ledger(request_id, bucket)
                step("gdpr.ledger_published")
                self.access.delete_subject_exports(subject, bucket)
            self.erase_rows(subject, request_id, counts, erased_ids)
            step("gdpr.rows_erased")
        self.ensure_refuse_trigger()
        return {t: n for t, n in counts.items() if n}

    @contextmanager
    def _subject_lock(self, subject: Subject) -> Iterator[None]:
        # A job lock (coldcopy.job_locks): no other login can take it and stall an erasure, unlike an advisory key.
        with job_locks.held(job_locks.connect_like(self.conn), f"coldcopy erasure:{subject.workspace_id}:"
                            f"{subject.subject_hash}", busy=lambda holder: GdprError(
                                "another session is erasing this subject right now (a zombie task?); retried later; "
                                f"held by {holder}")):
            yield

    def erase_rows(self, subject: Subject, request_id: str, counts: dict, erased_ids: list) -> None:
        months = set(detached_months(self.conn))
        links = personal_data_map(self.conn)
        for link in links:
            if link.table in ("public.suppression_list", "public.data_subject_requests"):
                continue  # keep the request and the suppression, by one-way key (below)
            where = self.keys.where(link, subject)
            if where is None:
                continue
            touched, ids = self._in_batches(link, *where)
            step("gdpr.table_erased")  # this table's rows of the subject gone, the next tables' not yet
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
        erased_ids += self._erase_support_copies(subject, request_id, links, counts)
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

    def _erase_support_copies(self, subject: Subject, request_id: str, links: list[Link], counts: dict) -> list[str]:
        """The subject's rows in every support copy of its workspace (:mod:`coldcopy.support_copies`): each table
        of the copy stands for its namesake in ``public``, every place of the personal data map is reached there
        too (its request and suppression rows with the address as well). The copy has no foreign keys and may
        hold leads deleted here since: the subject's leads and messages are found in the copy itself, by address
        and by the ledger's one-way keys of their ids. Returns their ids (the live audit trail's mentions of them
        are erased too)."""
        copies = [c for c in support_copies.active(self.conn) if c["workspace_id"] == str(subject.workspace_id)]
        found: set[str] = set()
        row = self.conn.execute("SELECT id_hashes FROM coldcopy_ops.erasure_ledger WHERE request_id = %s",
                                (request_id,)).fetchone()
        id_hashes = list(row[0]) if row else []
        links = [link for link in links if link.table.startswith("public.")]
        for copy in copies:
            there = self.keys.find(subject.workspace_id, subject_hash=subject.subject_hash, id_hashes=id_hashes,
                              schema=copy["schema"])
            local = dataclasses.replace(subject, lead_ids=[*subject.lead_ids, *there.lead_ids],
                                        message_ids=[*subject.message_ids, *there.message_ids])
            for link in links:
                moved = _in_schema(link, copy["schema"])
                if not all(safe_names.exists(self.conn, t) for t in _tables_of(moved)):
                    continue
                where = self.keys.where(moved, local)
                if where is not None and (touched := self._in_batches(moved, *where)[0]):
                    counts[moved.table] = counts.get(moved.table, 0) + touched
            audit = f"{copy['schema']}.gdpr_audit_log"
            if safe_names.exists(self.conn, audit):  # its trail names the erased rows' ids, as the live one did
                counts[f"{audit}.row_id"] = self.conn.execute(sql.SQL(
                    "UPDATE {} SET row_id = 'erased' WHERE workspace_id = %s AND row_id = ANY(%s)").format(
                    safe_names.relation(self.conn, audit)), (subject.workspace_id, [
                        str(i) for i in local.lead_ids + local.message_ids])).rowcount
            found.update(str(i) for i in local.lead_ids + local.message_ids)
            log.info("erasure %s reached support copy %s", request_id, copy["schema"])
        return sorted(found)

    def _in_batches(self, link: Link, where: sql.Composable, params: tuple) -> tuple[int, list[str]]:
        """Delete (or nullify) the matching rows ``self.batch`` at a time, each batch its own transaction."""
        table = safe_names.relation(self.conn, link.table)
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

    def reapply(self, entries: list[dict]) -> dict[str, dict]:
        """Re-apply ledger entries to this database (a restored backup); returns rows touched per request."""
        done = {}
        for entry in entries:
            if not self.conn.execute("SELECT EXISTS (SELECT 1 FROM public.workspaces WHERE id = %s)",
                                     (entry["workspace_id"],)).fetchone()[0]:
                continue
            subject = self.keys.find(entry["workspace_id"], subject_hash=entry["subject_hash"],
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
                self.erase_rows(subject, entry["request_id"], counts := {}, [])
            done[entry["request_id"]] = {t: n for t, n in counts.items() if n}
        if done:
            self.ensure_refuse_trigger()
            # The restored views and summaries still count the erased rows: recompute those reading what changed.
            touched = sorted({t.rsplit(".", 1)[0] if t.count(".") > 1 else t for c in done.values() for t in c})
            self.dashboards.refresh(self.dashboards.views_reading(touched), "gdpr:reapply")
        return done


def _in_schema(link: Link, schema: str) -> Link:
    """``link`` (and its parents) with each ``public`` table replaced by its namesake in ``schema``."""
    return dataclasses.replace(link, table=f"{schema}.{link.table.removeprefix('public.')}",
                               parent=link.parent and _in_schema(link.parent, schema))


def _tables_of(link: Link | None) -> list[str]:
    return [] if link is None else [link.table, *_tables_of(link.parent)]
