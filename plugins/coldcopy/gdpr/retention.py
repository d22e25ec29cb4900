"""Retention policies: only the allowed tables; delete, anonymize or archive (encrypted, signed)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import manifests, safe_names
from coldcopy.crypto import get_bound, gpg_symmetric
from coldcopy.gdpr.subjects import AGE_COLUMNS, PERSONAL_COLUMNS, RETENTION_PREFIX, RETENTION_TABLES, GdprError
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import Bucket
from coldcopy.steps import step

log = logging.getLogger(__name__)

# An archive batch's name (``…/<UTC second>-<batch>-<8 hex>.jsonl.gz.gpg``): one this code wrote, recorded by an intent
_BATCH_KEY = re.compile(r"/\d{8}T\d{6}-\d{5}-[0-9a-f]{8}\.jsonl\.gz\.gpg$")
# an archive batch of that name that no intent records this long after it was written is a leftover
ORPHAN_AFTER = timedelta(hours=6)


class RetentionPolicies:
    """Retention policies: only the allowed tables; delete, anonymize or archive (encrypted, signed)."""

    def __init__(self, conn: psycopg.Connection, *, keyring: manifests.Keyring | None, passphrase: str | None,
                 lock_retry: LockRetryPolicy, batch: int) -> None:
        self.conn, self.keyring, self.passphrase, self.lock_retry, self.batch = (conn, keyring, passphrase,
                                                                                lock_retry, batch)

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
            schema, name = safe_names.relation_parts(self.conn, policy["table_name"]
                                                  if "." in policy["table_name"] else f"public.{policy['table_name']}",
                                                  kinds=("r", "p"))
        except safe_names.UnknownRelation as error:
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

    def apply_retention(self, policy: dict, bucket: Bucket | None = None) -> dict:
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
                if batches == 0:
                    self.sweep_unfinished(bucket)
                # each batch manages its transactions: its intent committed first, then upload and delete in one
                count = under_lock_timeout(
                    self.conn, lambda n=batches: self._archive_batch(table, expired, params, policy, n, bucket),
                    self.lock_retry, what=f"retention archive batch in {table.as_string(self.conn)}",
                    transaction=False)
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

    def sweep_unfinished(self, bucket: Bucket, *, now: datetime | None = None) -> list[str]:
        """Delete the archives of batches cut short, manifest first, then object (their rows are still in their
        table): those whose intent is still 'uploading' and not held by a live batch (its transaction holds the
        intent's row lock: ``SKIP LOCKED`` passes it, whoever may see it in pg_stat_activity); and, past
        :data:`ORPHAN_AFTER`, an archive named as this code names them that no intent records (a batch whose
        session died while its process kept uploading, after a sweep had taken its intent). Returns their keys."""
        with self.conn.transaction():
            keys = [k for (k,) in self.conn.execute(
                "SELECT r.object_key FROM coldcopy_ops.retention_archives r WHERE r.state = 'uploading' AND "
                "(r.started_at < now() - interval '1 day' OR NOT EXISTS (SELECT FROM pg_stat_activity a WHERE "
                "a.pid = r.pid AND a.backend_start IS NOT DISTINCT FROM r.backend_start)) FOR UPDATE SKIP LOCKED")]
            keys += self._unrecorded(bucket, now or datetime.now(UTC))
            for key in keys:
                bucket.delete(key.removesuffix(".jsonl.gz.gpg") + ".manifest.json")
                bucket.delete(key)
            self.conn.execute("DELETE FROM coldcopy_ops.retention_archives WHERE object_key = ANY(%s)", (keys,))
        if keys:
            log.warning("retention: %d archive(s) of batches cut short deleted (their rows are archived again): %s",
                        len(keys), ", ".join(keys[:5]))
        return keys

    def _unrecorded(self, bucket: Bucket, now: datetime) -> list[str]:
        objects = [o for o in bucket.list_objects(f"{RETENTION_PREFIX}/") if _BATCH_KEY.search(o["Key"])
                   and o["LastModified"] < now - ORPHAN_AFTER]
        if not objects:
            return []
        recorded = {k for (k,) in self.conn.execute(
            "SELECT object_key FROM coldcopy_ops.retention_archives WHERE object_key = ANY(%s)",
            ([o["Key"] for o in objects],))}
        return [o["Key"] for o in objects if o["Key"] not in recorded]

    def _archive_batch(self, table, expired, params, policy, number: int, bucket) -> int:
        """One transaction: lock the batch, upload it (JSON lines, gzip, OpenPGP AES256 like the backups:
        ``gpg --decrypt | gunzip`` opens it) with its signed manifest, read the object back and check it
        against the manifest, delete the rows. Any failure rolls the delete back: a row is gone only once its
        copy is in the bucket."""
        if not self.passphrase:
            raise GdprError(f"policy {policy['id']}: archiving needs the backup passphrase (coldcopy_backup_key)")
        stamp = self.conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS')").fetchone()[0]
        key = (f"{RETENTION_PREFIX}/{table.as_string(self.conn).replace(chr(34), '')}/{policy['workspace_id']}/"
               f"{stamp}-{number:05d}-{uuid.uuid4().hex[:8]}.jsonl.gz.gpg")
        # the intent, committed on its own before a byte is written: a run cut short from here on leaves an entry
        # whose session is gone, and the next run deletes what it wrote (sweep_unfinished)
        self.conn.execute("INSERT INTO coldcopy_ops.retention_archives (object_key, policy_id, pid, backend_start) "
                          "SELECT %s, %s, pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = "
                          "pg_backend_pid())", (key, policy["id"]))
        step("gdpr_retention.intent_recorded")
        try:
            return self._archive_rows(table, expired, params, policy, key, bucket)
        except BaseException:  # failed, not killed: what it wrote goes now (a kill leaves it to the next run)
            try:
                self.conn.rollback()
                self.conn.execute("UPDATE coldcopy_ops.retention_archives SET pid = 0 WHERE object_key = %s AND "
                                  "state = 'uploading'", (key,))
                self.sweep_unfinished(bucket)
            except Exception:  # noqa: BLE001 - the next run's sweep does it
                log.warning("retention: %s not deleted after its batch failed; the next run deletes it", key)
            raise

    def _archive_rows(self, table, expired, params, policy, key: str, bucket) -> int:
        with self.conn.transaction():
            # the batch's own intent, held until it commits: no sweep takes it from a live batch
            if not self.conn.execute("SELECT 1 FROM coldcopy_ops.retention_archives WHERE object_key = %s AND "
                                     "state = 'uploading' FOR UPDATE", (key,)).fetchone():
                raise GdprError(f"{key}: its intent was swept before the batch began; retried under another name")
            locked = self.conn.execute(sql.SQL("SELECT t.tableoid, t.ctid, to_jsonb(t) FROM {} t WHERE "
                                               "(tableoid, ctid) IN (").format(table) + expired
                                       + sql.SQL(") FOR UPDATE"), params).fetchall()
            if not locked:
                self.conn.execute("DELETE FROM coldcopy_ops.retention_archives WHERE object_key = %s", (key,))
                return 0
            rows = [r for _, _, r in locked]
            body = gpg_symmetric(gzip.compress("".join(json.dumps(r, default=str) + "\n" for r in rows).encode()),
                                 self.passphrase, "--compress-algo", "none")
            manifest = {"object_key": key, "byte_size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                        "rows": len(rows), "table": table.as_string(self.conn), "policy_id": str(policy["id"]),
                        "workspace_id": str(policy["workspace_id"]), "format": "json lines | gzip | OpenPGP AES256"}
            bucket.put(key, body, "application/pgp-encrypted")
            step("gdpr_retention.uploaded")
            bucket.put(key.removesuffix(".jsonl.gz.gpg") + ".manifest.json",
                       manifests.dump(manifest, self.keyring, type="retention_archive"), "application/json")
            step("gdpr_retention.manifest_written")
            get_bound(bucket, key, manifest)  # read back before the rows go
            self.conn.execute("UPDATE coldcopy_ops.retention_archives SET state = 'done', rows = %s, done_at = now() "
                              "WHERE object_key = %s", (len(rows), key))
            # exactly the rows locked and archived (the expired query again could name a row that moved meanwhile)
            deleted = self.conn.execute(sql.SQL("DELETE FROM {} WHERE (tableoid, ctid) IN (SELECT unnest(%s::oid[]), "
                                                "unnest(%s::tid[]))").format(table),
                                        ([o for o, _, _ in locked], [c for _, c, _ in locked])).rowcount
            if deleted != len(rows):
                raise GdprError(f"{key}: {deleted} row(s) deleted of the {len(rows)} archived; rolled back")
            step("gdpr_retention.rows_deleted")  # not yet committed
        step("gdpr_retention.batch_committed")
        return deleted
