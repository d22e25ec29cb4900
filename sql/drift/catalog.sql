-- The schema as the catalog holds it, one row per object: kind, name (stable across databases: schema-qualified,
-- a column or policy under its table, a function with its argument types), what is compared (props), and the
-- SQL that creates and drops it (reported, never compared), and for an extension its schema (home). Catalog reads
-- only: no table is scanned.
-- %(excluded)s: schemas left out (the platform's, the project's own coldcopy_ops); partitions of a partitioned table
-- and what hangs off them (made by rotation) are left out, their parent compared; triggers calling a function of an
-- excluded schema belong to the jobs that install them (the refresh jobs' change capture).
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname <> ALL(%(excluded)s::text[]) AND nspname !~ '^(pg_|supabase_|graphql)' AND nspname <> 'information_schema'
), rel AS (
  SELECT c.oid, c.relname, c.relkind, c.relacl, c.relrowsecurity, c.relforcerowsecurity, n.nspname,
         format('%%I.%%I', n.nspname, c.relname) AS qname
  FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
  WHERE NOT c.relispartition AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')  -- an extension's own table
), api AS (
  SELECT unnest(ARRAY['anon', 'authenticated', 'service_role', 'PUBLIC']) AS grantee
)
SELECT 'schema'::text AS kind, n.nspname::text AS name, '{}'::jsonb AS props,
       format('CREATE SCHEMA %%I;', n.nspname) AS create_sql, format('DROP SCHEMA %%I;', n.nspname) AS drop_sql,
       NULL::text AS home
FROM ns n
UNION ALL
SELECT CASE r.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END, r.qname,
       CASE WHEN r.relkind IN ('v', 'm') THEN jsonb_build_object('definition', pg_get_viewdef(r.oid))
            WHEN r.relkind = 'S' THEN (SELECT jsonb_build_object('type', format_type(s.seqtypid, NULL),
                 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax, 'cycle', s.seqcycle)
                 FROM pg_sequence s WHERE s.seqrelid = r.oid)
            ELSE jsonb_build_object('partitioned', r.relkind = 'p', 'row_level_security', r.relrowsecurity,
                                    'forced', r.relforcerowsecurity) END,
       CASE WHEN r.relkind = 'v' THEN format('CREATE VIEW %%s AS %%s', r.qname, pg_get_viewdef(r.oid))
            WHEN r.relkind = 'm' THEN format('CREATE MATERIALIZED VIEW %%s AS %%s', r.qname, pg_get_viewdef(r.oid))
            WHEN r.relkind = 'S' THEN format('CREATE SEQUENCE %%s;', r.qname)
            ELSE format('CREATE TABLE %%s (…);  -- its columns and constraints below', r.qname) END,
       format('DROP %%s %%s;', CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
              WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.qname), NULL
FROM rel r
UNION ALL
SELECT 'column', r.qname || '.' || quote_ident(a.attname),
       jsonb_build_object('type', format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
                          'default', pg_get_expr(ad.adbin, ad.adrelid), 'identity', nullif(a.attidentity, ''),
                          'generated', nullif(a.attgenerated, '')),
       format('ALTER TABLE %%s ADD COLUMN %%I %%s%%s%%s;', r.qname, a.attname, format_type(a.atttypid, a.atttypmod),
              CASE WHEN ad.adbin IS NOT NULL AND a.attgenerated = '' THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
                   WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                   ELSE '' END,
              CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END),
       format('ALTER TABLE %%s DROP COLUMN %%I;', r.qname, a.attname), NULL
FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE r.relkind IN ('r', 'p', 'f')
UNION ALL
SELECT 'constraint', r.qname || '.' || quote_ident(co.conname),
       jsonb_build_object('definition', pg_get_constraintdef(co.oid), 'validated', co.convalidated),
       format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s;', r.qname, co.conname, pg_get_constraintdef(co.oid)),
       format('ALTER TABLE %%s DROP CONSTRAINT %%I;', r.qname, co.conname), NULL
FROM rel r JOIN pg_constraint co ON co.conrelid = r.oid
UNION ALL
SELECT 'index', format('%%I.%%I', r.nspname, i.relname),
       jsonb_build_object('definition', pg_get_indexdef(x.indexrelid), 'valid', x.indisvalid),
       pg_get_indexdef(x.indexrelid) || ';', format('DROP INDEX %%I.%%I;', r.nspname, i.relname), NULL
FROM rel r JOIN pg_index x ON x.indrelid = r.oid JOIN pg_class i ON i.oid = x.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = x.indexrelid AND co.conrelid = r.oid)
UNION ALL
SELECT 'trigger', r.qname || '.' || quote_ident(t.tgname),
       jsonb_build_object('definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled),
       pg_get_triggerdef(t.oid) || ';', format('DROP TRIGGER %%I ON %%s;', t.tgname, r.qname), NULL
FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE p.pronamespace IN (SELECT oid FROM ns) OR p.pronamespace = 'pg_catalog'::regnamespace
UNION ALL
SELECT 'policy', r.qname || '.' || quote_ident(po.polname),
       jsonb_build_object('command', po.polcmd, 'permissive', po.polpermissive,
                          'roles', (SELECT jsonb_agg(CASE g WHEN 0 THEN 'PUBLIC' ELSE g::regrole::text END ORDER BY 1)
                                    FROM unnest(po.polroles) g),
                          'using', pg_get_expr(po.polqual, po.polrelid),
                          'with_check', pg_get_expr(po.polwithcheck, po.polrelid)),
       format('CREATE POLICY %%I ON %%s AS %%s FOR %%s TO %%s%%s%%s;', po.polname, r.qname,
              CASE WHEN po.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
              CASE po.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                             WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
              (SELECT string_agg(CASE g WHEN 0 THEN 'PUBLIC' ELSE quote_ident(g::regrole::text) END, ', ')
               FROM unnest(po.polroles) g),
              ' USING (' || pg_get_expr(po.polqual, po.polrelid) || ')',
              ' WITH CHECK (' || pg_get_expr(po.polwithcheck, po.polrelid) || ')'),
       format('DROP POLICY %%I ON %%s;', po.polname, r.qname), NULL
FROM rel r JOIN pg_policy po ON po.polrelid = r.oid
UNION ALL
SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       jsonb_build_object('kind', p.prokind, 'returns', pg_get_function_result(p.oid), 'body', p.prosrc,
                          'language', l.lanname, 'security_definer', p.prosecdef, 'volatility', p.provolatile,
                          'config', to_jsonb(p.proconfig)),
       pg_get_functiondef(p.oid) || ';',
       format('DROP %%s %%I.%%I(%%s);', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, n.nspname,
              p.proname, pg_get_function_identity_arguments(p.oid)), NULL
FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE p.prokind IN ('f', 'p', 'w')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')  -- an extension's own function
UNION ALL
SELECT 'grant', format('%%s on %%s', a.grantee, r.qname),
       jsonb_build_object('privileges', a.privileges),
       format('GRANT %%s ON %%s TO %%s;', a.privileges, r.qname, a.grantee),
       format('REVOKE ALL ON %%s FROM %%s;', r.qname, a.grantee), NULL
FROM rel r CROSS JOIN LATERAL (
  SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END AS grantee,
         string_agg(e.privilege_type, ', ' ORDER BY e.privilege_type) AS privileges
  FROM aclexplode(r.relacl) e GROUP BY 1) a
WHERE a.grantee IN (SELECT grantee FROM api)
UNION ALL
SELECT 'grant', format('%%s on function %%I.%%I(%%s)', a.grantee, n.nspname, p.proname,
                       pg_get_function_identity_arguments(p.oid)),
       jsonb_build_object('privileges', 'EXECUTE'),
       format('GRANT EXECUTE ON FUNCTION %%I.%%I(%%s) TO %%s;', n.nspname, p.proname,
              pg_get_function_identity_arguments(p.oid), a.grantee),
       format('REVOKE EXECUTE ON FUNCTION %%I.%%I(%%s) FROM %%s;', n.nspname, p.proname,
              pg_get_function_identity_arguments(p.oid), a.grantee), NULL
FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace CROSS JOIN LATERAL (
  SELECT DISTINCT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END AS grantee
  FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) e WHERE e.privilege_type = 'EXECUTE') a
WHERE a.grantee IN (SELECT grantee FROM api) AND p.prokind IN ('f', 'p', 'w')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
UNION ALL
SELECT 'grant', format('%%s on schema %%I', a.grantee, n.nspname),
       jsonb_build_object('privileges', a.privileges),
       format('GRANT %%s ON SCHEMA %%I TO %%s;', a.privileges, n.nspname, a.grantee),
       format('REVOKE ALL ON SCHEMA %%I FROM %%s;', n.nspname, a.grantee), NULL
FROM ns n JOIN pg_namespace s ON s.oid = n.oid CROSS JOIN LATERAL (
  SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END AS grantee,
         string_agg(e.privilege_type, ', ' ORDER BY e.privilege_type) AS privileges
  FROM aclexplode(s.nspacl) e GROUP BY 1) a
WHERE a.grantee IN (SELECT grantee FROM api)
UNION ALL
SELECT 'extension', e.extname, '{}'::jsonb, format('CREATE EXTENSION IF NOT EXISTS %%I;', e.extname),
       format('DROP EXTENSION %%I;', e.extname), e.extnamespace::regnamespace::text
FROM pg_extension e WHERE e.extname <> 'plpgsql'
ORDER BY 1, 2
