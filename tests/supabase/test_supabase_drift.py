"""Schema drift on the Supabase-faithful cluster (coldcopy.migrations.drift): the expected schema built from the
applied files on another server (a throwaway cluster), live read as the project's ``postgres`` login. Each
drift is made in a transaction that is rolled back, and live's catalog read inside it."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.migrations import discover_migrations
from coldcopy.migrations.drift import catalog, compare, expected, find
from coldcopy.migrations.runner import MigrationRunner

pytestmark = pytest.mark.supabase


@pytest.fixture(scope="module")
def project(supabase):
    MigrationRunner(lambda: psycopg.connect(supabase.dsn)).apply_all(discover_migrations(), applied_by="pytest")
    return supabase.dsn


@pytest.fixture(scope="module")
def built(project, verify_cluster):
    return expected.build(project, verify_cluster, discover_migrations())


def test_a_database_as_its_files_built_it_has_no_drift(project, verify_cluster):
    report = find(project, verify_cluster, discover_migrations())
    assert report.differences == [], report.summary()
    assert report.objects > 1000 and len(report.files) == len(discover_migrations())
    with psycopg.connect(verify_cluster, autocommit=True) as admin:  # its scratch database is gone
        assert not admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'coldcopy_drift_%'").fetchall()


DRIFTS = {  # what someone did in Studio or the SQL editor → (kind, name, change, breach?)
    "ALTER TABLE public.leads DROP COLUMN company": ("column", "public.leads.company", "missing", None),
    "CREATE INDEX leads_by_hand ON public.leads (lower(email))": ("index", "public.leads_by_hand", "extra", None),
    "ALTER POLICY workspace_isolation ON public.leads USING (true)":
        ("policy", "public.leads.workspace_isolation", "changed", "a policy changed: using"),
    "ALTER TABLE public.leads NO FORCE ROW LEVEL SECURITY":
        ("table", "public.leads", "changed", "row level security no longer forced"),
    "ALTER TABLE public.leads DISABLE ROW LEVEL SECURITY":
        ("table", "public.leads", "changed", "row level security disabled"),
    "GRANT SELECT ON analytics.campaign_analytics TO anon":  # 306 keeps anon off every dashboard
        ("grant", "anon on analytics.campaign_analytics", None, "granted SELECT to anon"),
    "CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT current_user $$":
        ("function", "public.whoami()", "extra", "a SECURITY DEFINER function without a fixed search_path"),
}


@pytest.mark.parametrize("statement", list(DRIFTS))
def test_each_drift_is_found_named_and_graded(project, built, statement):
    kind, name, change, breach = DRIFTS[statement]
    with psycopg.connect(project) as conn:
        conn.execute(statement)
        differences = compare(built.objects, catalog.read(conn))
        conn.rollback()
    found = [d for d in differences if (d.kind, d.name) == (kind, name)]
    assert found and found[0].change in ((change,) if change else ("changed", "extra")), [
        (d.kind, d.name, d.change) for d in differences]
    assert (found[0].security or None) == breach if breach is None else breach in found[0].security
    assert found[0].to_live() and found[0].to_expected()


def test_a_function_body_changed_is_found_and_the_sql_to_either_side_given(project, built):
    with psycopg.connect(project) as conn:
        conn.execute("CREATE OR REPLACE FUNCTION app.is_workspace_member(ws uuid) RETURNS boolean LANGUAGE sql "
                     "STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT true $$")
        found = [d for d in compare(built.objects, catalog.read(conn)) if d.kind == "function"]
        conn.rollback()
    assert [(d.name, d.change) for d in found] == [("app.is_workspace_member(ws uuid)", "changed")]
    assert "body" in found[0].fields and found[0].security == "a SECURITY DEFINER function changed"
    assert "SELECT true" in found[0].to_expected() and "SELECT true" not in found[0].to_live()
