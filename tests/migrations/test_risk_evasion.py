"""helper-14's attack on the risk grader (issue 44): statements graded *safe* (one approver) by a regex over
comment-stripped text, each a destructive, security-relevant or unreadable change. The grader now reads a file as
PostgreSQL's own parser does (pglast), follows the code it makes and calls, and grades what it cannot read as
*ungraded*: two approvers."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.migrations import risk

# each: the SQL, and a fragment of the reason (in reasons or security) that must be found; all need two people
EVASIONS = {
    "literal hides a drop": ("ALTER TABLE public.leads ADD COLUMN note text DEFAULT '--', DROP COLUMN email;",
                             "drops column email"),
    "block comment in a literal": ("ALTER TABLE public.leads ADD COLUMN n text DEFAULT '/*', DROP COLUMN email;",
                                   "drops column email"),
    "nested comment": ("/* outer /* inner */ still comment */ DROP TABLE public.notes;", "drops table"),
    "unquoted begin": ("begin; DROP TABLE public.notes; commit;", "drops table public.notes"),
    "DO with EXECUTE": ("DO $$ BEGIN EXECUTE 'DROP TABLE public.notes'; END $$;", "drops table public.notes"),
    "DO with a computed EXECUTE": ("DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE public.notes'; END $$;",
                                   "EXECUTE of SQL built at run time"),
    "DO with a static DELETE": ("DO $$ BEGIN DELETE FROM public.leads; END $$;", "DELETE FROM public.leads"),
    "EXPLAIN ANALYZE DELETE": ("EXPLAIN ANALYZE DELETE FROM public.leads;", "DELETE FROM public.leads"),
    "MERGE … DELETE": ("MERGE INTO public.leads l USING public.notes n ON l.id = n.id WHEN MATCHED THEN DELETE;",
                       "MERGE deletes rows"),
    "data-modifying WITH": ("WITH gone AS (DELETE FROM public.leads RETURNING id) SELECT count(*) FROM gone;",
                            "DELETE FROM public.leads"),
    "CALL": ("CALL public.wipe();", "calls public.wipe()"),
    "CASCADE drop remade": ("DROP VIEW public.v CASCADE; CREATE VIEW public.v WITH (security_invoker = true) AS "
                            "SELECT 1;", "CASCADE"),
    "default privileges": ("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon;",
                           "default privileges"),
    "ALTER ROLE": ("ALTER ROLE authenticated BYPASSRLS;", "a role's rights change"),
    "OWNER TO": ("ALTER TABLE public.leads OWNER TO anon;", "owned by anon"),
    "view past RLS": ("CREATE VIEW public.all_leads AS SELECT * FROM public.leads;", "without security_invoker"),
    "search_path only in the body": (
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
        "PERFORM 'SET search_path = pg_catalog, pg_temp'; RETURN 1; END $$;", "SECURITY DEFINER function without"),
    "RESET search_path": ("ALTER FUNCTION app.is_workspace_member(uuid) RESET search_path;", "search_path changed"),
    "UPDATE SET x = 'WHERE'": ("UPDATE public.leads SET status = 'WHERE';", "UPDATE public.leads without a WHERE"),
    "WHERE true": ("DELETE FROM public.leads WHERE true;", "without a WHERE that names a column"),
    "a function that deletes": ("CREATE FUNCTION public.g() RETURNS void LANGUAGE sql AS $$ DELETE FROM "
                                "public.leads $$; SELECT public.g();", "DELETE FROM public.leads"),
    "a trigger switched off": ("ALTER TABLE public.leads DISABLE TRIGGER ALL;", "disables trigger"),
    "a role switched": ("SET ROLE supabase_admin; DROP POLICY IF EXISTS x ON public.leads;", "SET ROLE"),
    "an unknown statement": ("CREATE RULE r AS ON INSERT TO public.leads DO INSTEAD DELETE FROM public.leads;",
                             "RuleStmt"),
    "does not parse": ("DROP TABLE public.notes; THIS IS NOT SQL;", "does not parse"),
    # helper-15's, against the parser-based grader
    "multibyte comment shifts the slice": (
        "/* " + "é" * 104 + " CREATE FUNCTION pg_temp.ok() RETURNS void LANGUAGE plpgsql AS $b$BEGIN END$b$; "
        "SELECT $q$ */\nCREATE FUNCTION public.evil() RETURNS void AS $a$ BEGIN DELETE FROM public.leads; END $a$ "
        "LANGUAGE plpgsql SET application_name = '$q$" + "x" * 103 + "';", "DELETE FROM public.leads"),
    "FOR … IN EXECUTE loop body": ("DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP DELETE FROM "
                                   "public.leads; END LOOP; END $$;", "DELETE FROM public.leads"),
    "EXECUTE … USING": ("DO $$ BEGIN EXECUTE 'SELECT $1' USING public.purge(); END $$;", "calls public.purge()"),
    "format %I as a grantee": ("DO $$ BEGIN EXECUTE format('GRANT SELECT ON public.leads TO %I', 'anon'); END $$;",
                               "grants select to coldcopy_dynamic_name"),
    "format %*s": ("DO $$ BEGIN EXECUTE format('SELECT ''%*s''', 1, 'x''; DELETE FROM public.leads; SELECT ''x'); "
                   "END $$;", "EXECUTE of SQL built at run time"),
    "CTAS with a DELETE": ("CREATE TABLE public.bk AS WITH d AS (DELETE FROM public.leads RETURNING *) "
                           "SELECT * FROM d;", "DELETE FROM public.leads"),
    "upsert overwrites": ("INSERT INTO public.leads (id) SELECT id FROM public.leads ON CONFLICT (id) DO UPDATE SET "
                          "email = NULL;", "overwrites email"),
    "MERGE … UPDATE": ("MERGE INTO public.leads l USING public.leads s ON l.id = s.id WHEN MATCHED THEN UPDATE SET "
                       "email = NULL;", "overwrites email"),
    "a WHERE that is always true": ("UPDATE public.leads SET email = NULL WHERE id IS NOT NULL;", "overwrites email"),
    "ENABLE REPLICA TRIGGER": ("ALTER TABLE public.leads ENABLE REPLICA TRIGGER audit;", "disables trigger"),
    "CREATE OR REPLACE TRIGGER": ("CREATE OR REPLACE TRIGGER audit AFTER INSERT ON public.leads FOR EACH ROW WHEN "
                                  "(false) EXECUTE FUNCTION public.audit();", "replaces trigger audit"),
    "a trigger moved to another schema": ("DROP TRIGGER audit ON public.leads; CREATE TRIGGER audit AFTER INSERT ON "
                                          "scratch.leads FOR EACH ROW EXECUTE FUNCTION public.audit();",
                                          "drops a trigger not made again"),
    "security_invoker = 0": ("ALTER VIEW public.v SET (security_invoker = 0);", "security_invoker loosened"),
    "security_invoker = no": ("ALTER VIEW public.v SET (security_invoker = no);", "security_invoker loosened"),
    "a second SET search_path wins": (
        "CREATE FUNCTION public.f() RETURNS void SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET "
        "search_path = public, pg_temp LANGUAGE sql AS 'SELECT 1';", "SECURITY DEFINER function without"),
    "schema owned by anon": ("CREATE SCHEMA api AUTHORIZATION anon;", "owned by anon"),
    "materialized view in public": ("CREATE MATERIALIZED VIEW public.leak AS SELECT * FROM public.leads;",
                                    "materialized view public.leak in an API schema"),
    "a public table left open": ("CREATE TABLE public.open_notes (id bigint);", "table public.open_notes"),
    "enum value renamed": ("ALTER TYPE public.st RENAME VALUE 'a' TO 'x';", "renames value"),
    "a DEFAULT calling code": ("CREATE TABLE private.t2 (id int, x text DEFAULT public.purge()); INSERT INTO "
                               "private.t2 (id) VALUES (1);", "calls public.purge()"),
    "a view calling code": ("CREATE VIEW private.w WITH (security_invoker = true) AS SELECT public.purge() AS x;",
                            "calls public.purge()"),
    "query_to_xml": ("SELECT query_to_xml('DELETE FROM public.leads RETURNING 1', true, false, '');",
                     "query_to_xml"),
    "sequence restarted": ("ALTER SEQUENCE public.leads_id_seq RESTART WITH 1;", "changes restart of"),
    # helper-16's, against the second round
    "SELECT … INTO public": ("SELECT * INTO public.leak FROM private.secrets;", "table public.leak"),
    "a partial REVOKE": ("CREATE TABLE public.leak AS SELECT * FROM private.secrets; REVOKE GRANT OPTION FOR ALL ON "
                         "public.leak FROM anon, authenticated;", "table public.leak"),
    "RLS enabled in code that never runs": (
        "CREATE TABLE public.leak (id int); DO $$ BEGIN IF false THEN ALTER TABLE public.leak ENABLE ROW LEVEL "
        "SECURITY; END IF; END $$;", "table public.leak"),
    "RLS enabled, then rolled back": ("CREATE TABLE public.leak (id int); SAVEPOINT s; ALTER TABLE public.leak "
                                      "ENABLE ROW LEVEL SECURITY; ROLLBACK TO SAVEPOINT s;", "undoes part of the file"),
    "quoted names are not folded": ('CREATE TABLE public."Leak" (id int); CREATE TABLE public.leak (id int); '
                                    "ALTER TABLE public.leak ENABLE ROW LEVEL SECURITY;", "table public.Leak"),
    "a definer RPC in public": ("CREATE FUNCTION public.all_secrets() RETURNS SETOF private.secrets LANGUAGE sql "
                                "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS 'SELECT * FROM "
                                "private.secrets';", "in an API schema"),
    "an existing RPC made definer": ("ALTER FUNCTION public.doc_count() SECURITY DEFINER SET search_path = "
                                     "pg_catalog, pg_temp;", "made SECURITY DEFINER"),
    "a private table attached under a public parent": (
        "ALTER TABLE public.feed ATTACH PARTITION private.secrets2 FOR VALUES FROM (100) TO (1000);",
        "attaches a partition"),
    "security_barrier off": ("ALTER VIEW public.my_docs SET (security_barrier = false);", "security_barrier"),
    "check_option reset": ("ALTER VIEW public.alice_docs RESET (check_option);", "check_option"),
    "ADD COLUMN IF NOT EXISTS is no backfill": ("ALTER TABLE public.leads ADD COLUMN IF NOT EXISTS email text; "
                                                "UPDATE public.leads SET email = NULL WHERE id > 0;",
                                                "overwrites email"),
    "standard_conforming_strings off": ("SET standard_conforming_strings = off;", "standard_conforming_strings"),
    "the same as a function's setting": (
        "CREATE FUNCTION app.h() RETURNS void LANGUAGE plpgsql SET standard_conforming_strings = off AS "
        "$f$ BEGIN NULL; END $f$;", "standard_conforming_strings"),
    "a parameter default calling code": ("CREATE FUNCTION app.f(a boolean DEFAULT public.purge()) RETURNS int "
                                         "LANGUAGE sql AS 'SELECT 1';", "calls public.purge()"),
    "search_path changed": ("SET search_path = ops, public; SELECT cleanup();", "SET search_path"),
    "SQL/JSON newer than PostgreSQL 15": ("SELECT json_value('x', 'y');", "SQL/JSON"),
    "ALTER INDEX … RENAME on a table": ("ALTER INDEX public.leads RENAME TO leads_old;", "renames index"),
    "a trigger dropped and made again": ("DROP TRIGGER audit ON public.leads; CREATE TRIGGER audit AFTER INSERT ON "
                                         "public.leads FOR EACH ROW WHEN (false) EXECUTE FUNCTION public.audit();",
                                         "replaces trigger audit"),
    "a new trigger on an existing table": ("CREATE TRIGGER swallow BEFORE INSERT ON public.leads FOR EACH ROW "
                                           "EXECUTE FUNCTION app.swallow();", "a new trigger swallow"),
    "REPLICA IDENTITY NOTHING": ("ALTER TABLE public.leads REPLICA IDENTITY NOTHING;", "REPLICA IDENTITY NOTHING"),
    "identity restarted": ("ALTER TABLE public.leads ALTER COLUMN id RESTART WITH 1;", "identity sequence"),
    "identity dropped": ("ALTER TABLE public.leads ALTER COLUMN id DROP IDENTITY;", "drops the identity"),
    "default dropped": ("ALTER TABLE public.leads ALTER COLUMN id DROP DEFAULT;", "drops the default"),
    "sequence capped": ("ALTER SEQUENCE public.leads_id_seq MAXVALUE 5;", "maxvalue"),
    "a constraint dropped": ("ALTER TABLE public.leads DROP CONSTRAINT leads_pkey;", "DROP CONSTRAINT leads_pkey"),
    "timeouts undone": ("SET lock_timeout = 0;", "lock_timeout"),
    "an extension's script": ("CREATE EXTENSION pgcrypto SCHEMA public;", "CreateExtensionStmt"),
    # helper-17's, against the third round
    "a temporary table takes the credit": ("CREATE TABLE public.leak AS SELECT * FROM private.secrets; CREATE TEMP "
                                           "TABLE leak () ON COMMIT DROP; ALTER TABLE leak ENABLE ROW LEVEL "
                                           "SECURITY;", "makes temporary leak"),
    "a primary key dropped, a CHECK of its name added": (
        "ALTER TABLE public.leads DROP CONSTRAINT leads_pkey; ALTER TABLE public.leads ADD CONSTRAINT leads_pkey "
        "CHECK (true) NOT VALID;", "DROP CONSTRAINT leads_pkey"),
    "an identity GENERATED ALWAYS on an existing column": (
        "ALTER TABLE public.orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;", "GENERATED ALWAYS"),
    "a function's own search_path": ("CREATE FUNCTION app.h() RETURNS void LANGUAGE sql SET search_path = ops, "
                                     "public AS 'SELECT 1';", "sets its own search_path"),
    "a function dropped, another signature made": (
        "DROP FUNCTION public.doc_count(); CREATE FUNCTION public.doc_count(x int) RETURNS bigint LANGUAGE sql AS "
        "'SELECT 0::bigint';", "drops a function not made again"),
}


@pytest.mark.parametrize("case", list(EVASIONS))
def test_an_evasion_needs_two_people(case):
    text, found = EVASIONS[case]
    graded = risk.grade_text("390_x.sql", text, populated={"public.leads", "public.notes"})
    assert graded.approvals == 2, (graded.grade, graded.reasons, graded.security)
    assert any(found in line for line in graded.reasons + graded.security), (graded.reasons, graded.security)


def test_a_call_into_an_existing_function_is_graded_by_its_definition(migrated_db):
    """The target's own functions are read from its catalog: a call into one that runs dynamic SQL (the shipped
    app.secure_tenant_table, which makes policies) needs two people; one into a harmless built-in does not."""
    with psycopg.connect(migrated_db) as conn:
        conn.execute("CREATE FUNCTION public.wipe() RETURNS void LANGUAGE sql AS $$ TRUNCATE public.leads $$")
        functions = risk.Functions.from_conn(conn)
    wipe = risk.grade_text("390_x.sql", "SELECT public.wipe();", populated=set(), functions=functions)
    assert wipe.grade == "destructive" and any("TRUNCATE public.leads" in r for r in wipe.reasons), wipe.reasons
    secure = risk.grade_text("390_x.sql", "SELECT app.secure_tenant_table('public.notes');", populated=set(),
                             functions=functions)
    assert secure.approvals == 2 and any("secure_tenant_table" in r for r in secure.reasons), secure.reasons
    harmless = risk.grade_text("390_x.sql", "SELECT pg_catalog.timezone('UTC', now()), count(*) FROM public.leads;",
                               populated=set(), functions=functions)
    assert (harmless.grade, harmless.approvals) == ("safe", 1), harmless.reasons
    effect = risk.grade_text("390_x.sql", "SELECT pg_terminate_backend(42);", populated=set(), functions=functions)
    assert effect.grade == "ungraded", effect.reasons


def test_what_the_target_resolves_a_name_to_is_what_is_graded(migrated_db):
    """helper-15: a built-in's name that a function of public overloads, an overload the file makes beside the
    target's, an operator backed by the target's function, a replaced function a policy calls — each graded by
    what PostgreSQL will run, read from the target's catalog."""
    with psycopg.connect(migrated_db) as conn:
        conn.execute("CREATE FUNCTION public.lower(n integer) RETURNS integer LANGUAGE plpgsql AS $$ BEGIN "
                     "DELETE FROM public.leads; RETURN n; END $$")
        conn.execute("CREATE FUNCTION public.archive_leads(days integer) RETURNS void LANGUAGE sql AS "
                     "$$ DELETE FROM public.leads $$")
        conn.execute("CREATE FUNCTION public.op_purge(a integer, b integer) RETURNS integer LANGUAGE sql AS "
                     "$$ DELETE FROM public.leads RETURNING 1 $$")
        conn.execute("CREATE OPERATOR public.### (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.op_purge)")
        conn.execute("CREATE UNIQUE INDEX leads_email_once ON public.leads (workspace_id, email)")
        functions = risk.Functions.from_conn(conn)
    cases = {"SELECT lower(1);": "DELETE FROM public.leads",
             "CREATE FUNCTION public.archive_leads(days text) RETURNS void LANGUAGE sql AS 'SELECT 1'; "
             "SELECT public.archive_leads(30);": "DELETE FROM public.leads",
             "SELECT 1 ### 2;": "operator ###",
             "SELECT 1 ### ANY (SELECT 2);": "operator ###",
             "DROP INDEX CONCURRENTLY public.leads_email_once;": "drops unique index",
             "CREATE FUNCTION public.lower(n text) RETURNS text LANGUAGE sql AS 'SELECT n';": "overloads public.lower",
             "CREATE OR REPLACE FUNCTION app.is_workspace_member(ws uuid) RETURNS boolean LANGUAGE sql STABLE AS "
             "'SELECT true';": "replaces app.is_workspace_member"}
    for text, found in cases.items():
        graded = risk.grade_text("390_x.sql", text, populated=set(), functions=functions)
        assert graded.approvals == 2 and any(found in line for line in graded.reasons + graded.security), \
            (text, graded.reasons, graded.security)


def test_what_is_read_stays_safe():
    """No false alarm for what a safe migration does: a table, a column with a default, an index built
    CONCURRENTLY, a policy-free comment, a DO block whose EXECUTE is format() of a literal with %I."""
    text = """
    CREATE TABLE public.notes2 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
    ALTER TABLE public.notes2 ENABLE ROW LEVEL SECURITY;
    ALTER TABLE public.leads ADD COLUMN score2 integer NOT NULL DEFAULT 0;
    CREATE INDEX CONCURRENTLY leads_score2 ON public.leads (score2);
    COMMENT ON COLUMN public.leads.score2 IS 'DROP TABLE public.leads -- a comment, not a statement';
    DO $$ BEGIN EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', 'notes2'); END $$;
    """
    graded = risk.grade_text("390_x.sql", text, populated={"public.leads"})
    assert (graded.grade, graded.security, graded.approvals) == ("safe", [], 1), (graded.reasons, graded.security)
