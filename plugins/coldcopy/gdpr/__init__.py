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
from datetime import datetime

import psycopg

from coldcopy import manifests, ops_schema
from coldcopy.gdpr.access import Access
from coldcopy.gdpr.common import (
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
from coldcopy.gdpr.ledger import Ledger, LedgerSteps, entry_hash, ledger_entry
from coldcopy.gdpr.requests import Requests
from coldcopy.gdpr.retention import Retention
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



class Gdpr(SubjectKeys, Access, Erasure, LedgerSteps, Requests, Retention):
    """GDPR work on one (autocommit) connection, one mixin per step (discovery, keys, access, erasure, ledger,
    requests, retention: a module each in this package).

    :param lock_retry: lock_timeout and retries of every batch.
    :param keyring: signs and authenticates the ledger objects in the bucket.
    :param passphrase: the backup passphrase (retention archives are encrypted like the backups).
    :param pepper: the secret of subject keys (connection ``coldcopy_subject_pepper``).
    """

    def __init__(self, conn: psycopg.Connection, *, keyring: manifests.Keyring | None = None,
                 dpo_conn_id: str = DPO_CONN_ID, passphrase: str | None = None, pepper: str | None = None,
                 lock_retry: LockRetryPolicy = LockRetryPolicy(), batch: int = BATCH) -> None:
        self.conn = conn
        self.keyring, self.dpo_conn_id, self.passphrase = keyring, dpo_conn_id, passphrase
        self.lock_retry = lock_retry
        self.batch = batch
        ops_schema.ensure(conn, "gdpr", lock_retry)
        ops_schema.ensure(conn, "job_locks", lock_retry)  # the ledger's lock (coldcopy.job_locks)
        self.ensure_subject_key(pepper)


def reapply_after_restore(dsn: str, bucket: Bucket, keyring: manifests.Keyring,
                          since: datetime | None, pepper: str) -> tuple[dict, list[str]]:
    """Re-apply every valid erasure of the bucket's ledger erased at or after ``since`` to the restored database
    at ``dsn``, before anyone is handed it; returns rows touched per request and the ledger's problems (to alert
    on: a junk, missing or reordered entry never stops the valid ones from being applied)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        gdpr = Gdpr(conn, keyring=keyring, pepper=pepper)
        ledger = gdpr.ledger_from_bucket(bucket, since)
        done = gdpr.reapply(ledger.entries)
    for problem in ledger.problems:
        log.error("erasure ledger: %s", problem)
    log.info("re-applied %d erasure(s) newer than %s to the restored database", len(done), since)
    return done, ledger.problems
