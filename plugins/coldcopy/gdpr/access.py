"""Access and portability: every row about a subject, encrypted, to the DPO; exports that expire."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from coldcopy import alerts
from coldcopy.crypto import gpg_symmetric
from coldcopy.gdpr.discovery import personal_data_map
from coldcopy.gdpr.keys import SubjectKeys
from coldcopy.gdpr.subjects import ERASED, EXPORT_PREFIX, EXPORT_URL_TTL, Subject
from coldcopy.object_store import Bucket

log = logging.getLogger(__name__)


class Access:
    """Access and portability: every row about a subject, encrypted, to the DPO; exports that expire."""

    def __init__(self, conn: psycopg.Connection, keys: SubjectKeys, dpo_conn_id: str) -> None:
        self.conn, self.keys, self.dpo_conn_id = conn, keys, dpo_conn_id

    def collect(self, subject: Subject) -> dict[str, list[dict]]:
        """Every row about the subject, per table (tables without any left out)."""
        found: dict[str, list[dict]] = {}
        for link in personal_data_map(self.conn):
            where = self.keys.where(link, subject)
            if where is None:
                continue
            rows = [r for (r,) in self.conn.execute(sql.SQL("SELECT to_jsonb(t) ") + where[0], where[1])]
            if rows:
                found.setdefault(link.table, [])
                known = {json.dumps(r, sort_keys=True) for r in found[link.table]}
                found[link.table].extend(r for r in rows if json.dumps(r, sort_keys=True) not in known)
        return found

    def export(self, request: dict, bucket: Bucket) -> dict:
        """The subject's data as one JSON document, OpenPGP-encrypted (AES256) with a passphrase of its own,
        uploaded under ``gdpr/exports/``, its 7-day link and passphrase delivered to the data protection officer
        through the ``coldcopy_dpo`` connection (never stored in the database, a log or XCom). The object is
        deleted after :data:`EXPORT_URL_TTL` (:meth:`delete_expired_exports`) and when the subject is erased.
        Returns where and how much (no secret)."""
        subject = self.keys.find(request["workspace_id"], email=request["email"])
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
        bucket.put(key, body, "application/pgp-encrypted")
        url = bucket.presigned_get(key, int(EXPORT_URL_TTL.total_seconds()))
        try:
            alerts.deliver(self.dpo_conn_id, f"GDPR {request['request_type']} export of request {request['id']} is "
                           f"ready: {rows} rows from {len(tables)} tables; send the link and, by another channel, "
                           f"the passphrase to the data subject. The link expires in {EXPORT_URL_TTL.days} days.",
                           {"request_id": str(request["id"]), "workspace_id": str(request["workspace_id"]),
                            "url": url, "passphrase": passphrase, "expires_in_days": EXPORT_URL_TTL.days})
        except Exception:
            bucket.delete(key)  # undelivered: nobody can use it, nobody should keep it
            raise
        return {"key": key, "rows": rows, "tables": sorted(tables)}

    def delete_expired_exports(self, bucket: Bucket, now: datetime | None = None) -> list[str]:
        """Delete every export older than :data:`EXPORT_URL_TTL` (its link has expired); returns the keys."""
        now = now or datetime.now(UTC)
        doomed = [o["Key"] for o in bucket.list_objects(f"{EXPORT_PREFIX}/")
                  if now - o["LastModified"] > EXPORT_URL_TTL]
        for key in doomed:
            bucket.delete(key)
            log.info("deleted expired GDPR export %s", key)
        return doomed

    def delete_subject_exports(self, subject: Subject, bucket: Bucket) -> list[str]:
        """Delete the exports made for ``subject``'s requests (at erasure: nothing of them may stay)."""
        requests = [str(r) for (r,) in self.conn.execute(
            "SELECT id FROM public.data_subject_requests WHERE workspace_id = %s AND (email = %s "
            "OR coldcopy_ops.subject_hash(workspace_id, email) = %s)",
            (subject.workspace_id, f"{ERASED}{subject.subject_hash}", subject.subject_hash))]
        keys = [f"{EXPORT_PREFIX}/{subject.workspace_id}/{r}.json.gpg" for r in requests]
        for key in keys:
            bucket.delete(key)  # S3: deleting a missing key succeeds
        return keys
