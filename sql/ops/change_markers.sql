-- The change archive's markers (coldcopy.pitr.markers), owned by ColdCopy DB Ops; applied by
-- coldcopy.ops_schema.ensure() when the change archive is set up, and published with the application tables.
-- A marker is a row inserted (and deleted again) in the transaction whose DDL it announces: logical decoding
-- carries the insert at its place in the commit order. Only this table's owner (and superusers) can write it,
-- where pg_logical_emit_message, which the markers were before, is executable by PUBLIC, even read-only: replay
-- trusts no message, only these rows.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.change_markers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  marker jsonb NOT NULL CHECK (jsonb_typeof(marker) = 'object')
);

REVOKE ALL ON coldcopy_ops.change_markers FROM PUBLIC;
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP  -- Supabase's API roles
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('REVOKE ALL ON coldcopy_ops.change_markers FROM %I', r);
    END IF;
  END LOOP;
END $$;
