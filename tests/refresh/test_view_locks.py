"""A plain REFRESH MATERIALIZED VIEW blocks the dashboards' readers; CONCURRENTLY (what the materialized views'
path of coldcopy.refresh.views runs) does not."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.incremental import probe_view


def test_plain_refresh_would_block_readers(generated_db):
    """Control for the test above: what CONCURRENTLY saves readers from."""
    probe_view(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as setup:
        workspaces = setup.execute("SELECT count(*) FROM workspaces").fetchone()[0]
    with psycopg.connect(generated_db) as refresher, psycopg.connect(generated_db, autocommit=True) as reader:
        refresher.execute("REFRESH MATERIALIZED VIEW analytics.usage_probe")  # open transaction
        reader.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            reader.execute("SELECT count(*) FROM analytics.usage_probe")
        refresher.rollback()
        refresher.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY analytics.usage_probe")
        assert reader.execute("SELECT count(*) FROM analytics.usage_probe").fetchone()[0] == workspaces
