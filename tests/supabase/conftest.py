"""The Supabase-faithful tier: a cluster shaped like a hosted Supabase project (sql/testing/supabase_shape.sql),
every job run as its login ``postgres``, which is no superuser there."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.testing import servers


@pytest.fixture(scope="package")
def supabase():
    cluster = servers.SupabaseShapedCluster().start()
    with psycopg.connect(cluster.dsn) as conn:  # what the project logs in as
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="package")
def verify_cluster():
    """A verify server of its own (the drift check's expected schema): never this machine's shared server, where
    the roles copied from the Supabase-shaped live database (supabase_admin…) would make other tiers' checks
    take that server for Supabase."""
    cluster = servers.ThrowawayCluster().start()
    yield f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    cluster.stop()
