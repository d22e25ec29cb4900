"""Issue 40's holes as a tenant login and as anon, each reproduced before its fix (migration 306 and the ops SQL's
``search_path = pg_catalog, pg_temp``), and the guards for their classes (coldcopy.testing.guards) run against
the migrated database."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from coldcopy import ops_schema
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.testing import generate_data, guards, local_env

pytestmark = pytest.mark.integration


def _apply(dsn: str, below: int | None = None) -> None:
    migrations = [m for m in discover_migrations() if below is None or m.version < below]
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(migrations, applied_by="pytest")


@pytest.fixture(scope="module")
def before_306(admin_dsn):
    """Generated data on the schema as it was before 306 (a database that applies 306 next), with Supabase's
    default privileges in public (on this database alone)."""
    name = f"cc_pre306_{uuid.uuid4().hex[:8]}"
    dsn = local_env.create_database(admin_dsn, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role in ("anon", "authenticated", "service_role"):
            conn.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
            conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON {kind} TO anon, authenticated, "
                         "service_role")
    _apply(dsn, below=306)
    generate_data.generate(dsn, scale=1)
    yield name
    local_env.drop_database(admin_dsn, name)


@pytest.fixture
def old_schema(new_database, before_306) -> str:
    return new_database(template=before_306)


def _dashboards_written_by(dsn: str, role: str) -> list[str]:
    """What ``role`` managed to write through the dashboards (each attempt in a savepoint)."""
    written = []
    with psycopg.connect(dsn) as conn:
        conn.execute(f"SET ROLE {role}")
        for view in ("dashboard_campaign_analytics", "dashboard_daily_workspace_activity"):
            try:
                with conn.transaction():
                    if view == "dashboard_campaign_analytics":
                        conn.execute(f"INSERT INTO public.{view} (workspace_id, campaign_id, name, status, sent) "
                                     "VALUES (gen_random_uuid(), gen_random_uuid(), 'forged', 'active', 1)")
                    else:
                        conn.execute(f"INSERT INTO public.{view} (workspace_id, day, event_type, events) "
                                     "VALUES (gen_random_uuid(), current_date, 'complained', 25000)")
                written.append(view)
            except psycopg.errors.InsufficientPrivilege:
                pass
        conn.rollback()
    return written


def test_anon_cannot_write_the_dashboards_with_supabases_default_privileges(old_schema):
    """Before 306: 305's dashboards are views over plain tables (auto-updatable) and the default privileges
    gave anon ALL on them: anon inserted forged figures into any workspace's dashboards."""
    dsn = old_schema
    assert _dashboards_written_by(dsn, "anon") == ["dashboard_campaign_analytics",
                                                   "dashboard_daily_workspace_activity"]  # the hole, reproduced
    _apply(dsn)
    assert _dashboards_written_by(dsn, "anon") == []
    assert _dashboards_written_by(dsn, "authenticated") == []
    with psycopg.connect(dsn) as conn:
        assert guards.writable_public_views(conn) == []


def _tenant_powers(dsn: str) -> list[str]:
    """What a member of authenticated managed to do beyond its rows (each attempt in a savepoint)."""
    done = []
    attempts = {
        "trigger": "CREATE TRIGGER zz_owner AFTER INSERT ON public.leads FOR EACH ROW "
                   "EXECUTE FUNCTION app.add_workspace_owner()",
        "truncate": "TRUNCATE public.email_events",
        "setval": "SELECT setval('public.gdpr_audit_log_id_seq', 9223372036854775807)",
    }
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE authenticated")
        for name, statement in attempts.items():
            try:
                with conn.transaction():
                    conn.execute(statement)
                done.append(name)
            except psycopg.errors.InsufficientPrivilege:
                pass
        conn.rollback()
    return done


def test_a_tenant_login_cannot_hang_triggers_truncate_or_exhaust_sequences(old_schema):
    """Before (found attacking 306's first text): Supabase's default privileges gave authenticated TRIGGER,
    TRUNCATE and sequence UPDATE: a tenant hung app.add_workspace_owner() on leads and became owner of another
    workspace, hung a pg_temp function that ran as the next writer (postgres), truncated email_events past RLS,
    and setval() exhausted the audit log's sequence for every workspace."""
    assert _tenant_powers(old_schema) == ["trigger", "truncate", "setval"]  # the holes, reproduced
    _apply(old_schema)
    assert _tenant_powers(old_schema) == []
    with psycopg.connect(old_schema) as conn:
        assert guards.api_role_powers(conn) == [] and guards.callable_trigger_functions(conn) == []
        conn.execute("CREATE TABLE public.made_after_306 (id bigserial PRIMARY KEY)")  # the defaults, revoked too
        assert guards.api_role_powers(conn) == []
        conn.rollback()


def _bounced(conn, campaign) -> int:
    return conn.execute("SELECT bounced FROM analytics.campaign_analytics_definition WHERE campaign_id = %s",
                        (campaign,)).fetchone()[0]


def _step_replied(conn, sequence) -> int:
    return conn.execute("SELECT replied FROM analytics.sequence_step_performance_definition WHERE sequence_id = %s",
                        (sequence,)).fetchone()[0]


def _forge_in_own_workspace(conn) -> tuple:
    """Workspace A writes, in its own workspace, events naming B's campaign and B's message."""
    b_ws, b_campaign, b_sequence, b_message = conn.execute(
        "SELECT m.workspace_id, m.campaign_id, m.sequence_id, m.id FROM email_messages m "
        "WHERE m.direction = 'outbound' AND m.sequence_id IS NOT NULL ORDER BY m.id LIMIT 1").fetchone()
    a_ws = conn.execute("SELECT id FROM workspaces WHERE id <> %s ORDER BY id LIMIT 1", (b_ws,)).fetchone()[0]
    before = _bounced(conn, b_campaign), _step_replied(conn, b_sequence)
    conn.execute("INSERT INTO email_events (workspace_id, campaign_id, message_id, event_type, occurred_at) "
                 "SELECT %s, %s, %s, t, now() FROM unnest(ARRAY['bounced', 'replied']) t, generate_series(1, 50)",
                 (a_ws, b_campaign, b_message))
    return before, (_bounced(conn, b_campaign), _step_replied(conn, b_sequence))


def test_a_tenant_cannot_move_another_workspaces_figures(old_schema):
    """Before 306 (201/301's joins by id alone): A's events naming B's campaign and message counted in B's."""
    dsn = old_schema
    with psycopg.connect(dsn) as conn:
        before, after = _forge_in_own_workspace(conn)
        assert after != before  # the hole, reproduced
        conn.rollback()
    _apply(dsn)
    with psycopg.connect(dsn) as conn:
        before, after = _forge_in_own_workspace(conn)
        assert after == before
        assert guards.cross_workspace_joins(conn) == []


def test_the_dashboards_read_with_the_tenants_own_rights(generated_db):
    """security_invoker views over summaries with RLS forced: a member sees its workspaces' rows alone, a
    non-member none, even when a view's own filter is gone."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for name in SUMMARIES:
            from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
            SummaryMaintainer(conn, name).apply()
        member, ws = conn.execute("SELECT user_id, workspace_id FROM workspace_members ORDER BY 1 LIMIT 1").fetchone()
        total = conn.execute("SELECT count(DISTINCT workspace_id) FROM analytics.campaign_analytics").fetchone()[0]
        options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'public.dashboard_campaign_analytics'"
                               "::regclass").fetchone()[0]
        assert "security_invoker=true" in options
        forced = conn.execute("SELECT bool_and(relrowsecurity AND relforcerowsecurity) FROM pg_class WHERE oid = ANY("
                              "ARRAY['analytics.campaign_analytics', 'analytics.lead_engagement']::regclass[])")
        assert forced.fetchone()[0] is True
    with psycopg.connect(generated_db) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{member}"}}',))
        seen = conn.execute("SELECT array_agg(DISTINCT workspace_id) FROM public.dashboard_campaign_analytics")
        seen = seen.fetchone()[0]
        mine = conn.execute("SELECT array_agg(workspace_id) FROM workspace_members WHERE user_id = %s", (member,))
        assert total > 1 and set(seen) == set(mine.fetchone()[0]) and ws in seen
        direct = conn.execute("SELECT count(DISTINCT workspace_id) FROM analytics.campaign_analytics").fetchone()[0]
        assert direct == len(set(seen))  # the table itself is isolated, not only the view
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{uuid.uuid4()}"}}',))
        assert conn.execute("SELECT count(*) FROM public.dashboard_campaign_analytics").fetchone()[0] == 0


def _attack_as_tenant(dsn: str, admin_dsn: str, write: str) -> str | None:
    """A non-superuser login plants a ``pg_temp`` domain over the built-in types a definer function names,
    whose CHECK records ``current_user``; returns who its check ran as (None: it never ran)."""
    login = f"tenant_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN BYPASSRLS IN ROLE authenticated")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"GRANT SELECT, INSERT, UPDATE ON public.email_events, public.campaigns, public.leads "
                         f"TO {login}")
        with psycopg.connect(make_conninfo(dsn, user=login)) as conn:
            conn.execute("CREATE FUNCTION pg_temp.who() RETURNS boolean LANGUAGE sql AS "
                         "$$ SELECT set_config('attack.ran_as', current_user, false) IS NOT NULL $$")
            for type_ in ("date", "text", "jsonb"):
                conn.execute(f"CREATE DOMAIN pg_temp.{type_} AS pg_catalog.{type_} CHECK (pg_temp.who())")
            conn.commit()
            try:
                conn.execute(write)
                conn.commit()
            except psycopg.errors.CheckViolation:  # the domain refused a value: its check ran all the same
                conn.rollback()
            ran_as = conn.execute("SELECT current_setting('attack.ran_as', true)").fetchone()[0]
        return ran_as or None
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {login}")
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {login}")


@pytest.mark.parametrize("function, write, with_empty_path", [
    ("coldcopy_ops.ivm_capture_email_events()",
     "INSERT INTO public.email_events (workspace_id, event_type, occurred_at) SELECT workspace_id, 'sent', now() "
     "FROM public.campaigns LIMIT 1", None),
    ("coldcopy_ops.ivm_capture_ids()", "UPDATE public.campaigns SET name = name WHERE false", None),  # 0 rows fire it
    ("app.gdpr_audit()",
     "UPDATE public.leads SET first_name = first_name || '!' WHERE id = (SELECT id FROM public.leads LIMIT 1)",
     "owner"),
], ids=["capture_email_events", "capture_ids_zero_rows", "gdpr_audit"])
def test_a_tenant_login_never_runs_its_code_as_a_definer_functions_owner(generated_db, admin_dsn, function, write,
                                                                        with_empty_path):
    """Before: the capture functions (search_path '', ``::date``, ``text``) and app.gdpr_audit (110: ``jsonb``,
    ``text[]``) ran the caller's pg_temp domain's CHECK as their owner (reproduced: a login made itself SUPERUSER
    so). Proven here on app.gdpr_audit with the old empty path; the capture functions now also name every type
    by schema, so even an empty path would not reach pg_temp; the shipped path stops it in all three."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for name in SUMMARIES:
            capture.ensure(conn, SUMMARIES[name])
        owner = conn.execute(f"SELECT proowner::regrole::text FROM pg_proc WHERE oid = '{function}'::regprocedure")
        owner = owner.fetchone()[0]
        shipped = conn.execute(f"SELECT proconfig FROM pg_proc WHERE oid = '{function}'::regprocedure").fetchone()[0]
        assert shipped == ["search_path=pg_catalog, pg_temp"]
        conn.execute(f"ALTER FUNCTION {function} SET search_path = ''")
    ran_as = _attack_as_tenant(generated_db, admin_dsn, write)  # the hole, with the old path (where types are bare)
    assert ran_as == (owner if with_empty_path else None)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute(f"ALTER FUNCTION {function} SET search_path = pg_catalog, pg_temp")
    assert _attack_as_tenant(generated_db, admin_dsn, write) is None


def test_every_database_the_migrations_and_ops_schema_build_passes_the_guards(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for path in sorted(ops_schema.OPS_SQL_DIR.glob("*.sql")):
            ops_schema.ensure(conn, path.stem)
        assert guards.all_violations(conn) == {}


def test_the_guards_find_what_they_guard(empty_db):
    """Each guard fails on its hole: an empty search_path definer, a public view anon can write, a join of
    two tenant tables by id alone."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' "
                     "AS 'SELECT 1'")
        conn.execute("CREATE TABLE public.a (id int PRIMARY KEY, workspace_id int)")
        conn.execute("CREATE TABLE public.b (id int, a_id int, workspace_id int)")
        conn.execute("CREATE VIEW public.v AS SELECT a.id FROM public.a JOIN public.b ON b.a_id = a.id")
        conn.execute("GRANT INSERT ON public.v TO anon")
        assert guards.definer_paths(conn) == ["f(): search_path=\"\""]
        assert guards.writable_public_views(conn) == ["v: anon can INSERT"]
        assert guards.cross_workspace_joins(conn) == ["v: b.a_id = a.id without b.workspace_id = a.workspace_id"]
        conn.execute("CREATE FUNCTION public.g() RETURNS int LANGUAGE sql SECURITY DEFINER "
                     "SET search_path = pg_catalog AS 'SELECT 1'")  # pg_temp not named: searched FIRST
        assert "g(): search_path=pg_catalog" in guards.definer_paths(conn)
        conn.execute("CREATE SEQUENCE public.s")
        conn.execute("GRANT UPDATE ON public.s TO anon")
        conn.execute("GRANT TRIGGER ON public.a TO anon")
        assert guards.api_role_powers(conn) == ["a: anon can TRIGGER", "s: anon can UPDATE"]
        conn.execute("CREATE FUNCTION public.t() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
        assert "t(): anon can EXECUTE" in guards.callable_trigger_functions(conn)  # PUBLIC's default
