-- A database shaped like a hosted Supabase project, for the Supabase-faithful test tier (tests/supabase/).
-- Run by the bootstrap superuser supabase_admin (initdb -U supabase_admin) in the database "postgres", once.
-- Follows supabase/postgres migrations/db/ in the platform's order: roles and extensions first (init-scripts/
-- 00000000000000-initial-schema.sql), then the grants that follow them (the initial schema's, post-setup,
-- 10000000000000_demote-postgres.sql, 20230224042246_grant_extensions_perms_for_postgres.sql: every routine,
-- table and sequence of "extensions" to postgres WITH GRANT OPTION), then the platform's services (auth,
-- storage, realtime, the pooler's auth_query), then what a project commonly runs itself (its grants on
-- "extensions" to the API roles). Because those grants come after the extensions exist, they differ from the
-- extensions' initial privileges and pg_dump writes them (GRANT ALL ON FUNCTION extensions.pg_stat_statements(…)
-- TO postgres WITH GRANT OPTION), as in a real project's dumps. The login role "postgres" is no superuser, the
-- platform's schemas belong to the platform's roles, default privileges hand every new public object to the API
-- roles, and the API roles carry statement timeouts.
-- What supautils adds (privileged extensions and settings for postgres) is not here: without it postgres may
-- do less, never more, than on Supabase.

-- 1. Roles.
CREATE ROLE postgres LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
ALTER ROLE supabase_admin SET search_path TO "$user", public, auth, extensions;
ALTER ROLE postgres SET search_path TO "$user", public, extensions;

CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';
ALTER ROLE authenticator SET statement_timeout = '8s';
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE;
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE;
CREATE ROLE supabase_realtime_admin NOLOGIN NOINHERIT;
CREATE ROLE supabase_replication_admin LOGIN REPLICATION;
CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS;
GRANT pg_read_all_data TO supabase_read_only_user;

-- 2. Extensions, in their own schema, installed by the platform (supabase_admin).
CREATE SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions;

-- 3. The platform's grants, which follow the roles and extensions.
GRANT USAGE ON SCHEMA public TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
GRANT USAGE ON SCHEMA extensions TO postgres, anon, authenticated, service_role;
-- 10000000000000_demote-postgres.sql
GRANT ALL ON DATABASE postgres TO postgres;
GRANT CREATE ON SCHEMA public TO postgres;
GRANT ALL ON SCHEMA extensions TO postgres;
GRANT ALL ON ALL TABLES IN SCHEMA extensions TO postgres;
GRANT ALL ON ALL SEQUENCES IN SCHEMA extensions TO postgres;
GRANT ALL ON ALL ROUTINES IN SCHEMA extensions TO postgres;
-- 20230224042246_grant_extensions_perms_for_postgres.sql
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA extensions TO postgres WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON ALL ROUTINES IN SCHEMA extensions TO postgres WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA extensions TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA extensions GRANT ALL ON TABLES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA extensions GRANT ALL ON ROUTINES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA extensions GRANT ALL ON SEQUENCES TO postgres WITH GRANT OPTION;
-- 20230201083204_grant_auth_roles_to_postgres.sql, 20230306081037_grant_pg_monitor_to_postgres.sql, and since
GRANT pg_monitor, pg_read_all_data, pg_signal_backend TO postgres;
GRANT anon, authenticated, service_role TO postgres;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
GRANT ALL ON FUNCTION pg_catalog.pg_reload_conf() TO postgres WITH GRANT OPTION;
-- supautils lets postgres set these superuser-only settings (ansible/files/postgresql_config/supautils.conf.j2,
-- privileged_role_allowed_configs); PostgreSQL 15's own grant stands in for it here.
GRANT SET ON PARAMETER session_replication_role TO postgres;

-- 4. The platform's services.
-- The platform's event trigger (supabase/postgres 00000000000003-post-setup.sql), owned by supabase_admin.
CREATE FUNCTION extensions.grant_pg_cron_access() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() ev JOIN pg_namespace n ON ev.objid = n.oid
             WHERE n.nspname = 'cron') THEN
    GRANT USAGE ON SCHEMA cron TO postgres WITH GRANT OPTION;
  END IF;
END $$;
CREATE EVENT TRIGGER issue_pg_cron_access ON ddl_command_end WHEN TAG IN ('CREATE SCHEMA')
  EXECUTE FUNCTION extensions.grant_pg_cron_access();

-- Auth (GoTrue): supabase_auth_admin's.
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
SET ROLE supabase_auth_admin;
CREATE TABLE auth.users (
  instance_id uuid, id uuid NOT NULL PRIMARY KEY, aud varchar(255), role varchar(255), email varchar(255) UNIQUE,
  encrypted_password varchar(255), email_confirmed_at timestamptz, last_sign_in_at timestamptz,
  raw_app_meta_data jsonb, raw_user_meta_data jsonb, created_at timestamptz, updated_at timestamptz);
CREATE INDEX users_instance_id_idx ON auth.users (instance_id);
CREATE TABLE auth.refresh_tokens (
  instance_id uuid, id bigserial PRIMARY KEY, token varchar(255), user_id varchar(255), revoked bool,
  created_at timestamptz, updated_at timestamptz, CONSTRAINT refresh_tokens_token_unique UNIQUE (token));
CREATE UNIQUE INDEX refresh_tokens_token_key ON auth.refresh_tokens (token);
CREATE INDEX refresh_tokens_instance_id_user_id_idx ON auth.refresh_tokens (instance_id, user_id);
CREATE TABLE auth.identities (
  id uuid PRIMARY KEY, user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  provider text NOT NULL, identity_data jsonb NOT NULL, created_at timestamptz);
CREATE TABLE auth.audit_log_entries (instance_id uuid, id uuid PRIMARY KEY, payload json, created_at timestamptz);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text $$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
ALTER DEFAULT PRIVILEGES IN SCHEMA auth GRANT ALL ON TABLES TO postgres, service_role;
RESET ROLE;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, postgres;
GRANT ALL ON ALL TABLES IN SCHEMA auth TO postgres, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA auth TO postgres, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA auth TO postgres, anon, authenticated, service_role;

-- Storage: supabase_storage_admin's.
CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
SET ROLE supabase_storage_admin;
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL UNIQUE, owner uuid, public boolean DEFAULT false,
                              created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), bucket_id text REFERENCES storage.buckets (id), name text,
  owner uuid, metadata jsonb, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
RESET ROLE;
GRANT USAGE ON SCHEMA storage TO postgres, anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA storage TO postgres, service_role;

-- Realtime: the platform's publication and schema.
CREATE SCHEMA realtime AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA realtime TO postgres, anon, authenticated, service_role;
CREATE TABLE realtime.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0));
CREATE PUBLICATION supabase_realtime;

-- The pooler's auth_query (ansible/files/pgbouncer_config/pgbouncer_auth_schema.sql).
CREATE ROLE pgbouncer LOGIN;
REVOKE ALL PRIVILEGES ON SCHEMA public FROM pgbouncer;
CREATE SCHEMA pgbouncer AUTHORIZATION pgbouncer;
CREATE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE (username text, password text)
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  RETURN QUERY SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow WHERE usename = p_usename;
END $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer;

-- A few rows the platform's services wrote.
INSERT INTO auth.users (id, aud, role, email, created_at)
  SELECT gen_random_uuid(), 'authenticated', 'authenticated', 'platform-user-' || g || '@example.org', now()
  FROM generate_series(1, 3) g;
INSERT INTO auth.refresh_tokens (token, user_id, revoked, created_at)
  SELECT md5(g::text), (SELECT id::text FROM auth.users LIMIT 1), false, now() FROM generate_series(1, 50) g;
INSERT INTO storage.buckets (id, name) VALUES ('avatars', 'avatars');

-- 5. What a project commonly runs itself, as postgres (the SQL editor's login): its grants on the extensions'
-- routines to the API roles, through the grant option the platform gave it.
SET ROLE postgres;
GRANT ALL ON ALL FUNCTIONS IN SCHEMA extensions TO anon, authenticated, service_role;
RESET ROLE;
