"""Each pending file graded by risk from its statements and the rehearsal's measurements
(coldcopy.migrations.risk)."""

from __future__ import annotations

import pytest

from coldcopy.migrations import discover_migrations, risk

CASES = {
    "ALTER TABLE public.leads DROP COLUMN company;": ("destructive", "drops column company"),
    "DROP TABLE public.notes;": ("destructive", "drops table public.notes"),
    "TRUNCATE public.leads;": ("destructive", "TRUNCATE"),
    "DELETE FROM public.leads;": ("destructive", "DELETE FROM public.leads without a WHERE"),
    "UPDATE public.leads SET status = 'x' WHERE id = '00000000-0000-0000-0000-000000000000';":
        ("destructive", "overwrites status of public.leads"),
    "ALTER TABLE public.leads ADD COLUMN tier text; UPDATE public.leads SET tier = 'x' WHERE tier IS NULL;":
        ("data-dependent", "backfills columns the file adds"),
    "ALTER TABLE public.leads ALTER COLUMN score TYPE smallint;": ("destructive", "changes the type of"),
    "DROP POLICY workspace_isolation ON public.leads;": ("destructive", "drops a policy not made again"),
    "ALTER TABLE public.leads NO FORCE ROW LEVEL SECURITY;": ("destructive", "NO FORCE ROW LEVEL SECURITY"),
    "CREATE INDEX leads_x ON public.leads (email);": ("blocking", "without CONCURRENTLY on public.leads"),
    "CREATE INDEX CONCURRENTLY leads_x ON public.leads (email);": ("safe", None),
    "ALTER TABLE public.leads ADD CONSTRAINT c CHECK (score > 0);": ("data-dependent", "adds CHECK to public.leads"),
    "ALTER TABLE public.leads ADD CONSTRAINT c CHECK (score > 0) NOT VALID;": ("data-dependent", "NOT VALID"),
    "ALTER TABLE public.leads ALTER COLUMN email SET NOT NULL;": ("data-dependent", "SET NOT NULL"),
    "ALTER TABLE public.leads ADD COLUMN x bigint NOT NULL;": ("data-dependent", "NOT NULL column"),
    "ALTER TABLE public.leads ADD COLUMN x bigint NOT NULL DEFAULT 0;": ("safe", None),
    "DROP VIEW IF EXISTS public.v; CREATE VIEW public.v AS SELECT 1;": ("safe", None),
}


@pytest.mark.parametrize("text", list(CASES))
def test_a_statement_is_graded(text):
    grade, reason = CASES[text]
    graded = risk.grade_text("390_x.sql", text, populated={"public.leads"})
    assert graded.grade == grade, graded.reasons
    assert reason is None or any(reason in r for r in graded.reasons), graded.reasons


def test_data_dependent_and_blocking_only_where_the_table_holds_rows():
    text = "CREATE INDEX n_x ON public.notes (a); ALTER TABLE public.notes ADD CONSTRAINT c CHECK (a > 0);"
    assert risk.grade_text("390_x.sql", text, populated={"public.leads"}).grade == "safe"
    assert risk.grade_text("390_x.sql", text, populated=None).grade == "blocking"  # not known: counted


SECURITY = {
    "GRANT SELECT ON public.leads TO anon;": "grants select to anon",
    "CREATE POLICY open ON public.leads FOR SELECT TO authenticated USING (true);": "creates policy open",
    "ALTER TABLE public.leads DISABLE ROW LEVEL SECURITY;": "DISABLE ROW LEVEL SECURITY",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;":
        "SECURITY DEFINER function without",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$ SELECT 1 $$;":
        "SECURITY DEFINER function without",
}


@pytest.mark.parametrize("text", list(SECURITY))
def test_a_security_relevant_file_needs_two_approvers(text):
    graded = risk.grade_text("390_x.sql", text, populated={"public.leads"})
    assert any(SECURITY[text] in s for s in graded.security), graded.security
    assert graded.approvals == 2


def test_a_safe_file_needs_one_and_a_fixed_search_path_is_not_security_relevant():
    text = ("CREATE FUNCTION app.f() RETURNS int LANGUAGE sql SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;\n-- coldcopy:author alice\n")
    graded = risk.grade_text("390_x.sql", text, populated=set())
    assert (graded.grade, graded.security, graded.approvals, graded.author) == ("safe", [], 1, "alice")


def test_the_rehearsals_measurements_make_a_file_blocking():
    graded = risk.grade_text("390_x.sql", "ALTER TABLE public.leads ADD COLUMN x bigint;", populated={"public.leads"})
    assert graded.grade == "safe"
    risk.add_rehearsal(graded, {"locks": [{"relation": "public.leads", "mode": "AccessExclusiveLock",
                                           "held_ms": 2500.0}], "rewritten": {}}, hot={"public.leads"})
    assert graded.grade == "blocking" and "AccessExclusiveLock held 2500 ms on public.leads" in graded.reasons[0]
    quick = risk.grade_text("390_x.sql", "SELECT 1;", populated=set())
    risk.add_rehearsal(quick, {"locks": [{"relation": "public.leads", "mode": "AccessExclusiveLock",
                                          "held_ms": 5.0}], "rewritten": {}}, hot={"public.leads"})
    assert quick.grade == "safe"


def test_squawk_is_heard_where_it_fits():
    assert any("ban-drop-column" in f for f in risk.squawk("ALTER TABLE public.leads DROP COLUMN company;"))
    assert not any("lock-timeout" in f for f in risk.squawk("ALTER TABLE public.leads DROP COLUMN company;"))


def test_every_shipped_file_is_graded_without_error():
    graded = {m.file_name: risk.grade_text(m.file_name, m.read(), populated=set()) for m in discover_migrations()}
    assert graded["110_gdpr_compliance.sql"].grade == "destructive"  # drops the tenant policy of the audit log
    assert graded["109_performance_optimizations.sql"].grade == "safe"
