-- GDPR jobs' objects, owned by ColdCopy DB Ops: the erasure ledger, deadline alerts sent, retention log,
-- and the guard that refuses to bring an erased person back.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

-- The secret pepper of subject keys, as HMAC-SHA256's two padded keys (key XOR ipad, key XOR opad, 64 bytes each),
-- so the key is computed with sha256() alone (no extension). Created once by the gdpr jobs (coldcopy.gdpr),
-- readable by nobody but its owner: without it, nobody with read access to the bucket or the tenant tables can
-- test candidate addresses against the suppression list or the erasure ledger.
CREATE TABLE IF NOT EXISTS coldcopy_ops.subject_key (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
  outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64),
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON coldcopy_ops.subject_key FROM PUBLIC;

-- HMAC-SHA256 under the pepper of a text (hex); NULL until the pepper exists.
CREATE OR REPLACE FUNCTION coldcopy_ops.keyed(value text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(k.outer_pad || pg_catalog.sha256(k.inner_pad || pg_catalog.convert_to(value, 'UTF8'))), 'hex') FROM coldcopy_ops.subject_key k $$;

-- The one-way key of a data subject: HMAC under the pepper of sha256('<workspace id>:<lower(email)>') (per
-- workspace, so the same address in two workspaces gives two unrelated keys). What the suppression list and
-- the ledger keep (as 'hmac:<key>'). Keyed over the old unkeyed hash, so entries made before were migrated
-- without the address.
CREATE OR REPLACE FUNCTION coldcopy_ops.subject_hash(workspace uuid, email text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coldcopy_ops.keyed(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(workspace::text || ':' || pg_catalog.lower(email), 'UTF8')), 'hex')) $$;

-- The one-way key of an erased row id (lead, message): applied to restored backups and archived months.
CREATE OR REPLACE FUNCTION coldcopy_ops.id_hash(id uuid)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(id::text, 'UTF8')), 'hex') $$;

-- Every erasure: no personal data, only one-way keys and counts. Mirrored, signed, under gdpr/erasures/ in the
-- bucket, so a restore re-applies every erasure newer than the backup even when this database is gone.
CREATE TABLE IF NOT EXISTS coldcopy_ops.erasure_ledger (
  request_id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL,
  subject_hash text NOT NULL,
  id_hashes text[] NOT NULL DEFAULT '{}',
  row_counts jsonb NOT NULL DEFAULT '{}',
  erased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS erasure_ledger_erased_at_idx ON coldcopy_ops.erasure_ledger (erased_at);
-- The ledger is a chain: entry n carries the hash of entry n-1, so a missing, reordered or replaced entry in
-- the bucket is detected. An entry is written (state 'intent') before the erasure's first delete, so a
-- partition restore or retention archive running meanwhile already leaves the subject's rows out.
ALTER TABLE coldcopy_ops.erasure_ledger ADD COLUMN IF NOT EXISTS seq bigint UNIQUE;
ALTER TABLE coldcopy_ops.erasure_ledger ADD COLUMN IF NOT EXISTS prev_hash text;
ALTER TABLE coldcopy_ops.erasure_ledger ADD COLUMN IF NOT EXISTS entry_hash text;
ALTER TABLE coldcopy_ops.erasure_ledger ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'done';
ALTER TABLE coldcopy_ops.erasure_ledger ADD COLUMN IF NOT EXISTS published_key text;

-- Once per request per day: the deadline warning for a request due within 3 days.
CREATE TABLE IF NOT EXISTS coldcopy_ops.gdpr_deadline_alerts (
  request_id uuid NOT NULL,
  alerted_on date NOT NULL,
  PRIMARY KEY (request_id, alerted_on)
);

CREATE TABLE IF NOT EXISTS coldcopy_ops.retention_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  policy_id uuid NOT NULL,
  workspace_id uuid NOT NULL,
  table_name text NOT NULL,
  action text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('done', 'skipped', 'failed')),
  rows bigint NOT NULL DEFAULT 0,
  batches integer NOT NULL DEFAULT 0,
  detail text,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now()
);

-- A lead whose address was erased in its workspace is refused (a re-import must not bring the person back).
CREATE OR REPLACE FUNCTION coldcopy_ops.refuse_erased_subject()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM public.suppression_list s
             WHERE s.workspace_id = NEW.workspace_id AND s.reason = 'gdpr_erasure'
               AND s.email = 'hmac:' || coldcopy_ops.subject_hash(NEW.workspace_id, NEW.email)) THEN
    RAISE EXCEPTION 'this address was erased on the data subject''s request (GDPR Art. 17) and is suppressed'
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

-- Nobody but the ops role calls these: the trigger fires without EXECUTE, and keyed() under the pepper is an
-- oracle of the erased people's keys for whoever may call it.
REVOKE ALL ON FUNCTION coldcopy_ops.refuse_erased_subject(), coldcopy_ops.keyed(text),
  coldcopy_ops.subject_hash(uuid, text) FROM PUBLIC;

-- Retention archives (coldcopy.gdpr.retention), each batch's object: recorded 'uploading' by its own statement
-- before a byte is written (with the session that writes it), 'done' in the transaction that deletes its rows. A
-- batch cut short leaves an entry 'uploading' whose session is gone: the next run deletes its object and manifest
-- (copies of rows still in the table, archived again), so no row is archived twice.
CREATE TABLE IF NOT EXISTS coldcopy_ops.retention_archives (
  object_key text PRIMARY KEY,
  policy_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'uploading' CHECK (state IN ('uploading', 'done')),
  rows integer,
  pid integer NOT NULL,
  backend_start timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz
);
REVOKE ALL ON coldcopy_ops.retention_archives FROM PUBLIC;
