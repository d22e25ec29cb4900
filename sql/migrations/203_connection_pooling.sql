-- 203 connection pooling: what PgBouncer's auth_query needs (see include/pgbouncer.ini).
-- coldcopy:reissues 6207aec834dbe63caadae0eaab05258a19d75fd3c2b3f40a70d846aeb5aafa52 (its text before 2026-12-03: the same
-- objects and privileges where it could apply; a database that applied that text has this one)
--
-- PgBouncer logs in as the pgbouncer role and looks up the password hash of the connecting user through
-- pgbouncer.get_auth(), a SECURITY DEFINER function owned by a superuser; nothing else can read pg_shadow.
-- The role gets no password here: set it out of band (ALTER ROLE pgbouncer PASSWORD ...), never in the repo.
-- On Supabase the schema and function already exist and are left as they are.

CREATE SCHEMA IF NOT EXISTS pgbouncer;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbouncer') THEN
    CREATE ROLE pgbouncer LOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'pgbouncer' AND p.proname = 'get_auth'
  ) THEN
    EXECUTE $fn$
      CREATE FUNCTION pgbouncer.get_auth(p_usename text)
      RETURNS TABLE (username text, password text)
      LANGUAGE sql STABLE SECURITY DEFINER
      SET search_path = ''
      AS $body$
        -- Superusers never log in through the pooler: their hashes are not handed out.
        SELECT s.usename::text, s.passwd::text
        FROM pg_catalog.pg_shadow s
        WHERE s.usename = p_usename AND NOT s.usesuper
      $body$
    $fn$;
  END IF;
END
$$;

-- The privileges, on what this login owns: on Supabase the schema and the function belong to the platform
-- (supabase_admin or pgbouncer), which already set them so; the project's postgres, no superuser there, may
-- not change them (before, REVOKE failed there with "permission denied for function get_auth").
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgbouncer' AND pg_has_role(nspowner, 'USAGE')) THEN
    REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
    GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_proc WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure
             AND pg_has_role(proowner, 'USAGE')) THEN
    REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer;
  END IF;
END
$$;
