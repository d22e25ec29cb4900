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

import logging
from datetime import datetime, timedelta

import psycopg

from coldcopy import manifests, ops_schema
from coldcopy.gdpr.access import Access
from coldcopy.gdpr.dashboards import DashboardsFor
from coldcopy.gdpr.discovery import (
    MAX_DEPTH,
    PERSONAL_COLUMNS_REGISTRY,
    Link,
    detached_months,
    personal_data_map,
    unregistered_columns,
)
from coldcopy.gdpr.erasure import Erasure
from coldcopy.gdpr.keys import SubjectKeys
from coldcopy.gdpr.ledger import Ledger, LedgerBook, entry_hash, ledger_entry
from coldcopy.gdpr.requests import Requests
from coldcopy.gdpr.retention import RetentionPolicies
from coldcopy.gdpr.subjects import (
    AGE_COLUMNS,
    BATCH,
    DPO_CONN_ID,
    ERASED,
    EXPORT_PREFIX,
    EXPORT_URL_TTL,
    HANDLED_TYPES,
    LEDGER_PREFIX,
    LEGACY_ERASED,
    NO_FOREIGN_KEY,
    OUT_OF_SCOPE,
    PEPPER_CONN_ID,
    PERSONAL_COLUMNS,
    REFUSE_TRIGGER,
    RETENTION_PREFIX,
    RETENTION_TABLES,
    GdprError,
    Subject,
    subject_pepper,
)
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.object_store import Bucket

log = logging.getLogger(__name__)

__all__ = [
    "AGE_COLUMNS", "BATCH", "detached_months", "DPO_CONN_ID", "entry_hash", "ERASED", "EXPORT_PREFIX",
    "EXPORT_URL_TTL", "Gdpr", "GdprError", "HANDLED_TYPES", "Ledger", "ledger_entry", "LEDGER_PREFIX",
    "LEGACY_ERASED", "Link", "MAX_DEPTH", "NO_FOREIGN_KEY", "OUT_OF_SCOPE", "PEPPER_CONN_ID", "PERSONAL_COLUMNS",
    "PERSONAL_COLUMNS_REGISTRY", "personal_data_map", "reapply_after_restore", "REFUSE_TRIGGER", "RETENTION_PREFIX",
    "RETENTION_TABLES", "Subject", "subject_pepper", "unregistered_columns",
]



class Gdpr:
    """GDPR work on one (autocommit) connection: a facade composing one object per step (keys, access, the
    dashboards an erasure reaches, the ledger, erasure, requests, retention: a module each in this package), each
    given what it needs in its constructor.

    :param dashboards: ``(conn, lock_retry)`` → the dashboards an erasure refreshes
        (:class:`coldcopy.refresh.erasures.Dashboards`).
    :param lock_retry: lock_timeout and retries of every batch.
    :param keyring: signs and authenticates the ledger objects in the bucket.
    :param passphrase: the backup passphrase (retention archives are encrypted like the backups).
    :param pepper: the secret of subject keys (connection ``coldcopy_subject_pepper``).
    """

    def __init__(self, conn: psycopg.Connection, *, dashboards: DashboardsFor,
                 keyring: manifests.Keyring | None = None,
                 dpo_conn_id: str = DPO_CONN_ID, passphrase: str | None = None, pepper: str | None = None,
                 lock_retry: LockRetryPolicy = LockRetryPolicy(), batch: int = BATCH) -> None:
        self.conn = conn
        self.keyring, self.dpo_conn_id, self.passphrase = keyring, dpo_conn_id, passphrase
        self.lock_retry = lock_retry
        ops_schema.ensure(conn, "gdpr", lock_retry)
        ops_schema.ensure(conn, "job_locks", lock_retry)  # the ledger's lock (coldcopy.job_locks)
        self.keys = SubjectKeys(conn, lock_retry)
        self.keys.ensure_subject_key(pepper)
        self.access = Access(conn, self.keys, dpo_conn_id)
        self.dashboards = dashboards(conn, lock_retry)
        self.ledger = LedgerBook(conn, keyring, lock_retry)
        self.erasure = Erasure(conn, keys=self.keys, ledger=self.ledger, access=self.access,
                               dashboards=self.dashboards, lock_retry=lock_retry, batch=batch)
        self.requests = Requests(conn, keys=self.keys, access=self.access, erasure=self.erasure,
                                 dashboards=self.dashboards)
        self.retention = RetentionPolicies(conn, keyring=keyring, passphrase=passphrase, lock_retry=lock_retry,
                                           batch=batch)

    @property
    def batch(self) -> int:
        return self.erasure.batch

    @batch.setter
    def batch(self, rows: int) -> None:
        self.erasure.batch = self.retention.batch = rows

    # Subjects
    def subject_hash(self, workspace_id: str, email: str) -> str:
        return self.keys.subject_hash(workspace_id, email)

    def find(self, workspace_id: str, **by) -> Subject:
        return self.keys.find(workspace_id, **by)

    # Requests
    def pending(self, limit: int = 100) -> list[str]:
        return self.requests.pending(limit)

    def handle(self, request_id: str, bucket: Bucket, run_id: str | None = None) -> dict:
        return self.requests.handle(request_id, bucket, run_id)

    def record_failure(self, request_id: str, reason: str) -> None:
        self.requests.record_failure(request_id, reason)

    def due_soon(self, within: timedelta = timedelta(days=3)) -> list[dict]:
        return self.requests.due_soon(within)

    # Access and erasure
    def delete_expired_exports(self, bucket: Bucket, now: datetime | None = None) -> list[str]:
        return self.access.delete_expired_exports(bucket, now)

    def erase(self, subject: Subject, request_id: str, *, bucket: Bucket | None = None) -> dict[str, int]:
        return self.erasure.erase(subject, request_id, bucket=bucket)

    def ensure_refuse_trigger(self) -> None:
        self.erasure.ensure_refuse_trigger()

    def reapply(self, entries: list[dict]) -> dict[str, dict]:
        return self.erasure.reapply(entries)

    # The ledger
    def ledger_from_bucket(self, bucket: Bucket, since: datetime | None = None) -> Ledger:
        return self.ledger.ledger_from_bucket(bucket, since)

    def check_ledger(self, bucket: Bucket) -> list[str]:
        return self.ledger.check_ledger(bucket)

    # Retention
    def policy(self, policy_id: str) -> dict:
        return self.retention.policy(policy_id)

    def apply_retention(self, policy: dict, bucket: Bucket | None = None) -> dict:
        return self.retention.apply_retention(policy, bucket)

    def log_retention(self, policy: dict, outcome: str, **details) -> None:
        self.retention.log_retention(policy, outcome, **details)


def reapply_after_restore(dsn: str, bucket: Bucket, keyring: manifests.Keyring,
                          since: datetime | None, pepper: str, dashboards: DashboardsFor) -> tuple[dict, list[str]]:
    """Re-apply every valid erasure of the bucket's ledger erased at or after ``since`` to the restored database
    at ``dsn``, before anyone is handed it; returns rows touched per request and the ledger's problems (to alert
    on: a junk, missing or reordered entry never stops the valid ones from being applied)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        gdpr = Gdpr(conn, keyring=keyring, pepper=pepper, dashboards=dashboards)
        ledger = gdpr.ledger_from_bucket(bucket, since)
        done = gdpr.reapply(ledger.entries)
    for problem in ledger.problems:
        log.error("erasure ledger: %s", problem)
    log.info("re-applied %d erasure(s) newer than %s to the restored database", len(done), since)
    return done, ledger.problems
