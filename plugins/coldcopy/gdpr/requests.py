"""Data-subject requests: claimed, handled once, their deadlines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg

from coldcopy import job_locks
from coldcopy.gdpr.access import Access
from coldcopy.gdpr.dashboards import DashboardRefresh
from coldcopy.gdpr.erasure import Erasure
from coldcopy.gdpr.keys import SubjectKeys
from coldcopy.gdpr.subjects import ERASED, EXPORT_URL_TTL, HANDLED_TYPES, GdprError
from coldcopy.object_store import Bucket

log = logging.getLogger(__name__)


class Requests:
    """Data-subject requests: claimed, handled once, their deadlines."""

    def __init__(self, conn: psycopg.Connection, *, keys: SubjectKeys, access: Access, erasure: Erasure,
                 dashboards: DashboardRefresh) -> None:
        self.conn, self.keys, self.access, self.erasure, self.dashboards = conn, keys, access, erasure, dashboards

    def pending(self, limit: int = 100) -> list[str]:
        """Requests to process: ``verified`` (or ``in_progress`` left by a failed try), of a handled type."""
        return [str(r) for (r,) in self.conn.execute(
            "SELECT id FROM public.data_subject_requests WHERE status IN ('verified', 'in_progress') "
            "AND request_type = ANY(%s) ORDER BY due_at LIMIT %s", (list(HANDLED_TYPES), limit))]

    def handle(self, request_id: str, bucket: Bucket, run_id: str | None = None) -> dict:
        """Carry out one request; it ends ``completed`` with a note, or stays ``in_progress`` (raise)."""
        with self._claim(request_id) as request:
            return self._handle(request, bucket, run_id)

    @contextmanager
    def _claim(self, request_id: str) -> Iterator[tuple]:
        """The request, claimed: its row locked (``FOR UPDATE SKIP LOCKED``) while it is marked in progress, and
        a job lock (:mod:`coldcopy.job_locks`, which no other login can take) held until it is handled, so a zombie
        task and its retry never both run it."""
        with job_locks.held(job_locks.connect_like(self.conn), f"coldcopy gdpr request:{request_id}",
                            busy=lambda holder: GdprError(f"request {request_id}: another session is handling it "
                                                          f"right now (a zombie task?); held by {holder}")):
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

    def _handle(self, request: tuple, bucket: Bucket, run_id: str | None) -> dict:
        request_id = str(request[0])
        request = dict(zip(("id", "workspace_id", "email", "request_type"), request, strict=True))
        kind = HANDLED_TYPES.get(request["request_type"])
        if kind is None:
            raise GdprError(f"request {request_id}: request_type {request['request_type']!r} is not handled by a job "
                            f"(handled: {', '.join(HANDLED_TYPES)}); a person must act on it")
        if kind == "export":
            if request["email"].startswith(ERASED):
                raise GdprError(f"request {request_id}: the address was erased; nothing can be exported")
            result = self.access.export(request, bucket)
            note = (f"export of {result['rows']} rows from {len(result['tables'])} tables ready; link and passphrase "
                    f"delivered to the data protection officer (valid {EXPORT_URL_TTL.days} days)"
                    if result["rows"] else "nothing found: no data about this address in the workspace")
        else:
            email = request["email"]
            subject = (self.keys.find(request["workspace_id"], subject_hash=email.removeprefix(ERASED))
                       if email.startswith(ERASED) else self.keys.find(request["workspace_id"], email=email))
            counts = self.erasure.erase(subject, request_id, bucket=bucket)
            tables = sorted({t.rsplit(".", 1)[0] if t.count(".") > 1 else t for t in counts})
            if self.erasure.resumed:  # an earlier try deleted rows and died before refreshing what counted them:
                from coldcopy.gdpr.discovery import personal_data_map  # every view over the person's tables

                tables = sorted(set(tables) | {link.table for link in personal_data_map(self.conn)})
            views = self.dashboards.views_reading(tables)
            self.dashboards.refresh(views, run_id or f"gdpr:{request_id}")
            data_rows = sum(n for t, n in counts.items()
                            if t not in ("public.suppression_list", "public.data_subject_requests"))
            result = {"rows": counts, "views_refreshed": views}
            note = (f"erased {data_rows} rows in {len(counts)} tables; address suppressed; views refreshed: "
                    f"{', '.join(views) or 'none'}" if data_rows else
                    "nothing found: no data about this address in the workspace; address suppressed")
        self.conn.execute("UPDATE public.data_subject_requests SET status = 'completed', completed_at = now(), "
                          "notes = %s WHERE id = %s", (note, request_id))
        return {"request_id": request_id, "type": request["request_type"], "note": note, **result}

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
