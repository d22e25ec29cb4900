"""Issue 40 on a Supabase-shaped database (the platform's default privileges, its non-superuser postgres): anon
cannot write the dashboards nor run code as the ops owner, and the guards of coldcopy.testing.guards hold on
what the migrations and the ops schema build there."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy import ops_schema
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.testing import guards

pytestmark = pytest.mark.supabase


@pytest.fixture(scope="module")
def project(supabase):
    """The project's database as its postgres login builds it (idempotent: the demo may have built it)."""
    MigrationRunner(lambda: psycopg.connect(supabase.dsn)).apply_all(discover_migrations(), applied_by="pytest")
    with psycopg.connect(supabase.dsn, autocommit=True) as conn:
        for path in sorted(ops_schema.OPS_SQL_DIR.glob("*.sql")):
            ops_schema.ensure(conn, path.stem)
        for name in SUMMARIES:
            capture.ensure(conn, SUMMARIES[name])
    return supabase.dsn


def test_the_guards_hold_on_supabase(project):
    with psycopg.connect(project) as conn:
        assert guards.all_violations(conn) == {}


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_the_api_roles_cannot_write_a_dashboard(project, role):
    """Before 306: anon (the public key, no JWT) inserted 25,000 "complained" events into any workspace's
    dashboard through Supabase's default ALL on the auto-updatable view."""
    with psycopg.connect(project) as conn:
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO public.dashboard_daily_workspace_activity (workspace_id, day, event_type, "
                         "events) VALUES (gen_random_uuid(), current_date, 'complained', 25000)")


def test_anon_runs_no_code_as_the_capture_functions_owner(project):
    """Before: ``UPDATE campaigns SET name = name WHERE false`` as anon (a statement trigger fires on zero rows)
    ran anon's pg_temp domain CHECK as the capture function's owner, postgres."""
    with psycopg.connect(project) as conn:
        conn.execute("SET ROLE anon")
        conn.execute("CREATE FUNCTION pg_temp.who() RETURNS boolean LANGUAGE sql AS "
                     "$$ SELECT set_config('attack.ran_as', current_user, false) IS NOT NULL $$")
        for type_ in ("date", "text"):
            conn.execute(f"CREATE DOMAIN pg_temp.{type_} AS pg_catalog.{type_} CHECK (pg_temp.who())")
        conn.commit()
        conn.execute("UPDATE public.campaigns SET name = name WHERE false")
        conn.commit()
        assert conn.execute("SELECT current_setting('attack.ran_as', true)").fetchone()[0] in (None, "")
