-- 100 auth and workspaces: tenancy root, Supabase auth stand-in, and the RLS helpers every later file reuses.
--
-- On Supabase the auth schema, auth.uid() and the roles anon/authenticated/service_role already exist and
-- are left untouched. On plain PostgreSQL a minimal compatible stand-in is created: auth.uid() reads the
-- subject of the JWT claims that PostgREST puts in the request.jwt.claims setting.
-- No extension is needed (gen_random_uuid() is core since PostgreSQL 13); e-mail addresses are stored
-- lower-case, enforced by CHECK constraints, instead of relying on citext.

CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS app;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    EXECUTE $fn$
      CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE
      AS $body$
        SELECT nullif(
          coalesce(
            nullif(current_setting('request.jwt.claim.sub', true), ''),
            nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
          ), ''
        )::uuid
      $body$
    $fn$;
  END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA app TO authenticated, service_role;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

CREATE TABLE IF NOT EXISTS public.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL UNIQUE CHECK (email = lower(email)),
  full_name text,
  avatar_url text,
  timezone text NOT NULL DEFAULT 'UTC',
  last_sign_in_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  slug text NOT NULL UNIQUE,
  owner_id uuid NOT NULL REFERENCES public.users (id),
  plan text NOT NULL DEFAULT 'trial' CHECK (plan IN ('trial', 'starter', 'growth', 'scale', 'enterprise')),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'cancelled')),
  monthly_email_quota bigint NOT NULL DEFAULT 5000 CHECK (monthly_email_quota >= 0),
  settings jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspaces_owner_created_idx ON public.workspaces (owner_id, created_at DESC);
CREATE INDEX IF NOT EXISTS workspaces_status_plan_idx ON public.workspaces (status, plan);

CREATE TABLE IF NOT EXISTS public.workspace_members (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active', 'removed')),
  invited_by uuid REFERENCES public.users (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX IF NOT EXISTS workspace_members_user_workspace_idx ON public.workspace_members (user_id, workspace_id);
CREATE INDEX IF NOT EXISTS workspace_members_workspace_status_idx ON public.workspace_members (workspace_id, status);

CREATE TABLE IF NOT EXISTS public.workspace_invitations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member', 'viewer')),
  token_hash text NOT NULL UNIQUE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'expired', 'revoked')),
  invited_by uuid REFERENCES public.users (id),
  expires_at timestamptz NOT NULL DEFAULT now() + interval '7 days',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspace_invitations_workspace_status_idx ON public.workspace_invitations (workspace_id, status);
CREATE INDEX IF NOT EXISTS workspace_invitations_workspace_email_idx ON public.workspace_invitations (workspace_id, email);

CREATE TABLE IF NOT EXISTS public.api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  key_prefix text NOT NULL,
  key_hash text NOT NULL UNIQUE,
  scopes text[] NOT NULL DEFAULT '{}',
  created_by uuid REFERENCES public.users (id),
  last_used_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_keys_workspace_created_idx ON public.api_keys (workspace_id, created_at DESC);

-- Membership check used by every tenant policy. SECURITY DEFINER so that the policy on
-- workspace_members itself does not recurse; (SELECT auth.uid()) is evaluated once per statement.
CREATE OR REPLACE FUNCTION app.is_workspace_member(ws uuid)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.workspace_members m
    WHERE m.workspace_id = ws AND m.user_id = (SELECT auth.uid()) AND m.status = 'active'
  )
$$;

CREATE OR REPLACE FUNCTION app.is_workspace_admin(ws uuid)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.workspace_members m
    WHERE m.workspace_id = ws AND m.user_id = (SELECT auth.uid())
      AND m.status = 'active' AND m.role IN ('owner', 'admin')
  )
$$;

REVOKE ALL ON FUNCTION app.is_workspace_member(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION app.is_workspace_admin(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.is_workspace_member(uuid) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION app.is_workspace_admin(uuid) TO authenticated, service_role;

-- The one place tenant isolation is declared: enable and force RLS, isolate by workspace membership,
-- let service_role through, and grant the API roles table access (RLS then decides which rows).
CREATE OR REPLACE FUNCTION app.secure_tenant_table(tbl regclass)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  EXECUTE format('DROP POLICY IF EXISTS workspace_isolation ON %s', tbl);
  EXECUTE format(
    'CREATE POLICY workspace_isolation ON %s FOR ALL TO authenticated '
    'USING ((SELECT app.is_workspace_member(workspace_id))) '
    'WITH CHECK ((SELECT app.is_workspace_member(workspace_id)))', tbl);
  EXECUTE format('DROP POLICY IF EXISTS service_role_all ON %s', tbl);
  EXECUTE format('CREATE POLICY service_role_all ON %s FOR ALL TO service_role USING (true) WITH CHECK (true)', tbl);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO authenticated', tbl);
  EXECUTE format('GRANT ALL ON %s TO service_role', tbl);
END
$$;

CREATE OR REPLACE FUNCTION app.touch_updated_at()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- The creator of a workspace becomes its owner, so the first membership needs no privileged client.
CREATE OR REPLACE FUNCTION app.add_workspace_owner()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  INSERT INTO public.workspace_members (workspace_id, user_id, role, status)
  VALUES (NEW.id, NEW.owner_id, 'owner', 'active')
  ON CONFLICT (workspace_id, user_id) DO NOTHING;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS workspaces_add_owner ON public.workspaces;
CREATE TRIGGER workspaces_add_owner AFTER INSERT ON public.workspaces
  FOR EACH ROW EXECUTE FUNCTION app.add_workspace_owner();
DROP TRIGGER IF EXISTS workspaces_touch ON public.workspaces;
CREATE TRIGGER workspaces_touch BEFORE UPDATE ON public.workspaces
  FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
DROP TRIGGER IF EXISTS users_touch ON public.users;
CREATE TRIGGER users_touch BEFORE UPDATE ON public.users
  FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- users and workspaces carry no workspace_id column: their policies are written out here.
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS users_self_and_colleagues ON public.users;
CREATE POLICY users_self_and_colleagues ON public.users FOR SELECT TO authenticated
  USING (
    id = (SELECT auth.uid())
    OR EXISTS (
      SELECT 1 FROM public.workspace_members m
      WHERE m.user_id = users.id AND (SELECT app.is_workspace_member(m.workspace_id))
    )
  );
DROP POLICY IF EXISTS users_update_self ON public.users;
CREATE POLICY users_update_self ON public.users FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));
DROP POLICY IF EXISTS users_service_role ON public.users;
CREATE POLICY users_service_role ON public.users FOR ALL TO service_role USING (true) WITH CHECK (true);

ALTER TABLE public.workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workspaces FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspaces_member_read ON public.workspaces;
CREATE POLICY workspaces_member_read ON public.workspaces FOR SELECT TO authenticated
  USING ((SELECT app.is_workspace_member(id)));
DROP POLICY IF EXISTS workspaces_create_own ON public.workspaces;
CREATE POLICY workspaces_create_own ON public.workspaces FOR INSERT TO authenticated
  WITH CHECK (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS workspaces_admin_update ON public.workspaces;
CREATE POLICY workspaces_admin_update ON public.workspaces FOR UPDATE TO authenticated
  USING ((SELECT app.is_workspace_admin(id))) WITH CHECK ((SELECT app.is_workspace_admin(id)));
DROP POLICY IF EXISTS workspaces_service_role ON public.workspaces;
CREATE POLICY workspaces_service_role ON public.workspaces FOR ALL TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, UPDATE ON public.users TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.workspaces TO authenticated;
GRANT ALL ON public.users, public.workspaces TO service_role;

SELECT app.secure_tenant_table('public.workspace_members');
SELECT app.secure_tenant_table('public.workspace_invitations');
SELECT app.secure_tenant_table('public.api_keys');
