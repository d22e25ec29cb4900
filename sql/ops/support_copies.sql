-- Support copies (coldcopy.support_copies): one workspace restored into a new schema of the live database, for
-- support to copy back from. Each is registered here in the transaction that creates it, so the erasure of a
-- person reaches it (coldcopy.gdpr.erasure) and gdpr_retention drops it once expired (14 days by default).
-- Applied by coldcopy.ops_schema.ensure() on first use.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.support_copies (
  schema_name text PRIMARY KEY,
  workspace_id uuid NOT NULL,
  source text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  dropped_at timestamptz,
  CHECK (expires_at > created_at)
);

REVOKE ALL ON coldcopy_ops.support_copies FROM PUBLIC;
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP  -- Supabase's API roles
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('REVOKE ALL ON coldcopy_ops.support_copies FROM %I', r);
    END IF;
  END LOOP;
END $$;
