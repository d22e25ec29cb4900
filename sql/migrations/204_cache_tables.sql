-- 204 cache tables: UNLOGGED (no WAL, emptied after a crash, which a cache can afford) with an expiry.
-- app.purge_expired_cache() removes one batch of expired rows per table; maintenance calls it until it returns 0.

CREATE UNLOGGED TABLE IF NOT EXISTS public.dashboard_cache (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  cache_key text NOT NULL,
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL DEFAULT now() + interval '15 minutes',
  PRIMARY KEY (workspace_id, cache_key)
);
CREATE INDEX IF NOT EXISTS dashboard_cache_expires_idx ON public.dashboard_cache (expires_at);

CREATE UNLOGGED TABLE IF NOT EXISTS public.enrichment_cache (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lookup_key text NOT NULL,
  provider text NOT NULL DEFAULT 'internal',
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL DEFAULT now() + interval '7 days',
  PRIMARY KEY (workspace_id, provider, lookup_key)
);
CREATE INDEX IF NOT EXISTS enrichment_cache_expires_idx ON public.enrichment_cache (expires_at);

CREATE UNLOGGED TABLE IF NOT EXISTS public.api_rate_limits (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  bucket text NOT NULL,
  window_start timestamptz NOT NULL,
  request_count bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, bucket, window_start)
);
CREATE INDEX IF NOT EXISTS api_rate_limits_expires_idx ON public.api_rate_limits (expires_at);

-- Deletes up to batch_size expired rows from each cache table; returns how many rows it deleted in all.
CREATE OR REPLACE FUNCTION app.purge_expired_cache(batch_size integer DEFAULT 5000)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
  cache_table text;
  deleted bigint;
  total bigint := 0;
BEGIN
  FOREACH cache_table IN ARRAY ARRAY['dashboard_cache', 'enrichment_cache', 'api_rate_limits'] LOOP
    EXECUTE format(
      'DELETE FROM public.%1$I WHERE ctid = ANY (ARRAY(SELECT ctid FROM public.%1$I WHERE expires_at < now() '
      'LIMIT %2$s FOR UPDATE SKIP LOCKED))', cache_table, batch_size);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    total := total + deleted;
  END LOOP;
  RETURN total;
END
$$;

SELECT app.secure_tenant_table('public.dashboard_cache');
SELECT app.secure_tenant_table('public.enrichment_cache');
SELECT app.secure_tenant_table('public.api_rate_limits');
