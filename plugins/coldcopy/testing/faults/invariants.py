"""The one checker the campaign runs after every fault and its rerun (issue 45): what the job's data must still
be (:func:`reference` before, :func:`violations` after), what the bucket must hold, what the server must not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import manifests

FINGERPRINT = "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {} t"
TABLES = ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
          "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND c.relpersistence = 'p' "
          "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'coldcopy_ops') "
          "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2")


def rows(dsn: str) -> dict[str, tuple]:
    """Every table's row count and the sum of its rows' hashes (a partition on its own, not through its parent)."""
    with psycopg.connect(dsn) as conn:
        return {f"{s}.{t}": conn.execute(sql.SQL(FINGERPRINT).format(sql.Identifier(s, t))).fetchone()
                for s, t in conn.execute(TABLES).fetchall()}


def schema(dsn: str) -> dict:
    from coldcopy.migrations.drift import catalog

    with psycopg.connect(dsn) as conn:
        return {key: obj.props for key, obj in catalog.read(conn).items()}


def reference(invariant: str, dsn: str) -> dict:
    if invariant == "erasure":  # the person a pending erasure request names, and every table's rows
        with psycopg.connect(dsn) as conn:
            subject = conn.execute(
                "SELECT r.id::text, r.email, l.id::text FROM public.data_subject_requests r JOIN public.leads l ON "
                "l.workspace_id = r.workspace_id AND l.email = r.email WHERE r.request_type = 'erasure' AND "
                "r.status = 'verified'").fetchone()
        return {"rows": rows(dsn), "request": subject[0], "needles": list(subject[1:])}
    if invariant == "retention":  # the rows the policy archives, one by one (their hashes), and every table's rows
        with psycopg.connect(dsn) as conn:
            expired = [h for (h,) in conn.execute(
                "SELECT hashtextextended(to_jsonb(e)::text, 0) FROM public.email_events e JOIN "
                "public.data_retention_policies p ON p.workspace_id = e.workspace_id AND p.table_name = "
                "'email_events' WHERE e.occurred_at < now() - p.retain_for").fetchall()]
        return {"rows": rows(dsn), "expired": sorted(expired)}
    return schema(dsn) if invariant == "schema" else rows(dsn)


def erased(dsn: str, before: dict) -> list[str]:
    """The person is nowhere (their address, their lead's id, in any text, JSON or uuid column of any table),
    their request completed, the ledger's entry done."""
    found = []
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON "
            "c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', "
            "'m') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema', 'pg_toast') AND pg_catalog.format_type(a.atttypid, NULL) IN ('text', "
            "'character varying', 'jsonb', 'json', 'uuid', 'text[]', 'uuid[]', 'citext')").fetchall()
        for schema_name, table, column in columns:
            for needle in before["needles"]:
                if conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {}::text LIKE %s)").format(
                        sql.Identifier(schema_name, table), sql.Identifier(column)), (f"%{needle}%",)).fetchone()[0]:
                    found.append(f"erasure: the person is still in {schema_name}.{table}.{column}")
        status = conn.execute("SELECT status FROM public.data_subject_requests WHERE id = %s",
                              (before["request"],)).fetchone()
        ledger = conn.execute("SELECT state FROM coldcopy_ops.erasure_ledger WHERE request_id = %s",
                              (before["request"],)).fetchone()
    if status is None or status[0] != "completed":
        found.append(f"erasure: request {before['request']} is {status[0] if status else 'gone'}, not completed")
    if ledger is None or ledger[0] != "done":
        found.append(f"erasure: the ledger's entry is {ledger[0] if ledger else 'missing'}, not done")
    return found


def summaries(dsn: str) -> list[str]:
    """Every incremental summary equal to its definition (compared on one snapshot, nothing repaired)."""
    from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
    from coldcopy.refresh.incremental.summaries import SUMMARIES

    found = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in SUMMARIES:
            verified = SummaryMaintainer(conn, name).verify(repair=False)
            if not verified.equal:
                found.append(f"summary: {name} lacks {verified.missing} row(s) of its definition and holds "
                             f"{verified.extra} it does not")
    return found


def violations(invariant: str, dsn: str, before: dict, bucket, keyring, admin_dsn: str,
               since: datetime, passphrase: str = "") -> list[str]:
    found = []
    if invariant == "schema":
        after = schema(dsn)
        found += [f"schema: {k[0]} {k[1]} {'missing' if k not in after else 'extra' if k not in before else 'differs'}"
                  for k in sorted(set(before) | set(after), key=str) if before.get(k) != after.get(k)][:10]
    elif invariant == "erasure":
        found += erased(dsn, before)
    elif invariant == "summaries":  # the summaries change; every other table must not
        after = rows(dsn)
        found += [f"rows: {t} {before.get(t)} → {after.get(t)}" for t in sorted(set(before) | set(after))
                  if before.get(t) != after.get(t) and not t.startswith("analytics.")] + summaries(dsn)
    elif invariant == "restored":  # the target as the backup held it (the source, unchanged since), whole
        from coldcopy.testing.faults.jobs import restored_name

        target = psycopg.conninfo.make_conninfo(dsn, dbname=restored_name(dsn))
        try:
            after = rows(target)
        except psycopg.OperationalError:
            after = {}
            found.append(f"restored: {restored_name(dsn)} does not exist after the rerun")
        found += [f"restored: {t} {before.get(t)} → {after.get(t)}" for t in sorted(set(before) | set(after))
                  if after and before.get(t) != after.get(t)][:10]
    elif invariant == "retention":
        found += _retained(dsn, before, bucket, keyring, passphrase)
    elif invariant == "rows":
        after = rows(dsn)
        found += [f"rows: {t} {before.get(t)} → {after.get(t)}" for t in sorted(set(before) | set(after))
                  if before.get(t) != after.get(t)]
    else:
        found += _archived(dsn, before, bucket, keyring)
    found += _bucket(bucket, keyring) + _server(dsn, admin_dsn, since)
    return found


def _retained(dsn: str, before: dict, bucket, keyring, passphrase: str) -> list[str]:
    """Every expired row gone from email_events and in exactly one bound retention archive; no other row of any
    table changed (the email_events partitions: by exactly the expired rows)."""
    import gzip

    from coldcopy.crypto import get_bound, gpg_open

    found, archived = [], []
    for key in bucket.list_keys("gdpr/retention/"):
        if not key.endswith(".manifest.json"):
            continue
        try:
            manifest = manifests.load(bucket.get(key), keyring, where=key, type="retention_archive")
            body = get_bound(bucket, manifest["object_key"], manifest)
        except Exception as error:  # noqa: BLE001 - reported
            found.append(f"retention: {key} does not open: {error}"[:300])
            continue
        rows_ = gzip.decompress(gpg_open(body, passphrase)).decode().splitlines()
        with psycopg.connect(dsn) as conn:
            archived += [h for (h,) in conn.execute(
                "SELECT hashtextextended(r::jsonb::text, 0) FROM unnest(%s::text[]) r", (rows_,)).fetchall()]
    expired, seen = set(before["expired"]), {}
    for h in archived:
        seen[h] = seen.get(h, 0) + 1
    found += [f"retention: {len(expired - set(seen))} expired row(s) in no archive"] if expired - set(seen) else []
    found += [f"retention: {sum(1 for c in seen.values() if c > 1)} row(s) archived more than once"] \
        if any(c > 1 for c in seen.values()) else []
    after = rows(dsn)
    changed = {t for t in set(before["rows"]) | set(after) if before["rows"].get(t) != after.get(t)}
    found += [f"rows: {t} changed" for t in sorted(changed)  # the policy's last_applied_at is the job's to set
              if not t.startswith("public.email_events") and t != "public.data_retention_policies"]
    left = sum(after[t][0] for t in after if t.startswith("public.email_events_")) - \
        sum(before["rows"][t][0] for t in before["rows"] if t.startswith("public.email_events_"))
    if left != -len(expired):
        found.append(f"retention: email_events lost {-left} row(s), {len(expired)} expired")
    return found


def _archived(dsn: str, before: dict, bucket, keyring) -> list[str]:
    """Every table as before, but a month of email_events may have left for a verified archive, whole."""
    from coldcopy.partitions import Partition
    from coldcopy.partitions.signed import SignedManifests

    after, found = rows(dsn), []
    with psycopg.connect(dsn) as conn:
        archived = {f"public.{name}": (state, count, start, end) for name, state, count, start, end in conn.execute(
            "SELECT partition_name, state, row_count, range_start, range_end FROM coldcopy_ops.partition_archive")}
    for table in sorted(set(before) | set(after)):
        if before.get(table) == after.get(table):
            continue
        if table in before and table not in after and table in archived:
            state, count, start, end = archived[table]
            try:
                manifest = SignedManifests(keyring).read(Partition(table.split(".")[1], start, end), bucket)
            except Exception as error:  # noqa: BLE001 - any failure to read it back is the violation
                found.append(f"archive: {table} dropped, its archive unreadable: {error}")
                continue
            if state != "dropped" or manifest["rows"] != before[table][0] or count != before[table][0]:
                found.append(f"archive: {table} gone ({state}), {before[table][0]} rows before, the archive holds "
                             f"{manifest['rows']}, the ledger {count}")
        elif table not in before and after.get(table, (0,))[0] == 0:
            continue  # a month premade, empty
        else:
            found.append(f"rows: {table} {before.get(table)} → {after.get(table)}")
    return found


def _bucket(bucket, keyring) -> list[str]:
    """Every backup or archive object bound to a signed manifest beside it, every manifest's object there, and no
    multipart upload left open."""
    found = []
    objects = {o["Key"]: o for o in bucket.list_objects("")}
    for key, entry in objects.items():
        if key.endswith(".dump.zst.gpg"):
            manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
        elif key.endswith(".csv.gz.gpg"):
            manifest_key = key.rsplit("/", 1)[0] + "/manifest.json"
        else:
            continue
        if manifest_key not in objects:
            found.append(f"bucket: {key} has no manifest")
            continue
        try:
            manifest = manifests.load(bucket.get(manifest_key), keyring, where=manifest_key,
                                      type="backup" if key.endswith(".dump.zst.gpg") else "archive")
        except manifests.ManifestRejected as error:
            found.append(f"bucket: {manifest_key}: {error}")
            continue
        if manifest.get("byte_size") != entry["Size"]:
            found.append(f"bucket: {key} is {entry['Size']} bytes, its manifest says {manifest.get('byte_size')}")
    for key in objects:
        if key.endswith(".manifest.json") and key.startswith("backups/") and \
                key.removesuffix(".manifest.json") + ".dump.zst.gpg" not in objects:
            found.append(f"bucket: {key} names a backup that is not there")
    uploads = bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    found += [f"bucket: an upload of {u['Key']} left open" for u in uploads]
    return found


def _server(dsn: str, admin_dsn: str, since: datetime) -> list[str]:
    """No INVALID index on the target; no scratch database (made since ``since``) open to PUBLIC while it exists,
    none the next job's sweep would not drop once its expiry passed (a day on): those are dropped here, as it
    would."""
    from coldcopy import scratch

    found = []
    with psycopg.connect(dsn) as conn:
        found += [f"server: INVALID index {name}" for (name,) in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_catalog.pg_index WHERE NOT indisvalid")]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        made = [e for e in scratch.leftovers(admin, now=datetime.now(UTC) + timedelta(days=1))
                if e["created_at"] is None or e["created_at"] >= since - timedelta(seconds=1)]
        found += [f"server: scratch {e['database']} open to PUBLIC" for e in made if e["public_connect"]]
        found += [f"server: scratch {e['database']} would outlive the next sweep" for e in made
                  if not (e["expired"] and e["droppable"])]
        for entry in made:
            scratch.drop(admin, entry["database"])
    return found
